/* nn.c — checked wrappers over the backends' fused model ops (nn.h): shapes, dtypes, devices, result
 * allocation, dispatch. Autograd hooks (src/autograd) attach to these functions. */
#include <math.h>
#include <string.h>

#include "autograd/autograd.h"
#include "backend/backend.h"
#include "backend/conv_ops.h"
#include "core/error.h"
#include "core/nn.h"
#include "core/ops.h"

static const sf_nn_ops *nn_of(const sf_tensor *t, const char *op) {
  const sf_backend *b = sf_backend_of(t);
  if (!b) return NULL;
  if (!b->nn) {
    char buf[32];
    sf_error("%s: the %s backend has no fused model ops (device %s)", op, b->name, sf_device_str(sf_device_of(t), buf, sizeof buf));
    return NULL;
  }
  return b->nn;
}

static int check_float(const sf_tensor *t, const char *op, const char *what) {
  if (!t) return sf_error("%s: %s is missing", op, what);
  if (t->dtype != SF_F32 && t->dtype != SF_BF16 && t->dtype != SF_F16)
    return sf_error("%s: %s must be f32/bf16/f16, got %s", op, what, sf_dtype_name(t->dtype));
  return 0;
}

static int check_same_device(const sf_tensor *a, const sf_tensor *b, const char *op, const char *what) {
  if (b && !sf_device_eq(sf_device_of(a), sf_device_of(b))) {
    char x[32], y[32];
    return sf_error("%s: %s is on %s but the input is on %s", op, what, sf_device_str(sf_device_of(b), y, sizeof y),
                    sf_device_str(sf_device_of(a), x, sizeof x));
  }
  return 0;
}

static int check_vec(const sf_tensor *x, const sf_tensor *w, int64_t D, const char *op, const char *what) {
  if (!w) return 0;
  char buf[64];
  if (check_float(w, op, what) || check_same_device(x, w, op, what)) return -1;
  if (sf_numel(w) != D || w->shape[w->ndim - 1] != D)
    return sf_error("%s: %s must have %lld elements (the last dim of the input), got shape %s", op, what, (long long)D,
                    sf_shape_str(w, buf, sizeof buf));
  return 0;
}

static sf_tensor *layer_norm_impl(sf_tensor *x, sf_tensor *w, sf_tensor *b, double eps) {
  if (check_float(x, "layer_norm", "input") || x->ndim < 1) return NULL;
  const int64_t D = x->shape[x->ndim - 1];
  if (check_vec(x, w, D, "layer_norm", "weight") || check_vec(x, b, D, "layer_norm", "bias")) return NULL;
  if ((w == NULL) != (b == NULL)) return sf_error("layer_norm: weight and bias must both be given or both be absent"), NULL;
  const sf_nn_ops *nn = nn_of(x, "layer_norm");
  if (!nn) return NULL;
  sf_tensor *xc = sf_contiguous(x), *wc = w ? sf_contiguous(w) : NULL, *bc = b ? sf_contiguous(b) : NULL;
  sf_tensor *out = xc ? sf_empty(x->ndim, x->shape, x->dtype, sf_device_of(x)) : NULL;
  if (out && nn->layer_norm(out, xc, wc, bc, eps, NULL, NULL)) sf_release(out), out = NULL;
  sf_release(xc), sf_release(wc), sf_release(bc);
  return out;
}

static sf_tensor *rms_norm_impl(sf_tensor *x, sf_tensor *w, double eps) {
  if (check_float(x, "rms_norm", "input") || x->ndim < 1) return NULL;
  const int64_t D = x->shape[x->ndim - 1];
  if (check_vec(x, w, D, "rms_norm", "weight")) return NULL;
  const sf_nn_ops *nn = nn_of(x, "rms_norm");
  if (!nn) return NULL;
  sf_tensor *xc = sf_contiguous(x), *wc = w ? sf_contiguous(w) : NULL;
  sf_tensor *out = xc ? sf_empty(x->ndim, x->shape, x->dtype, sf_device_of(x)) : NULL;
  if (out && nn->rms_norm(out, xc, wc, eps, NULL)) sf_release(out), out = NULL;
  sf_release(xc), sf_release(wc);
  return out;
}

/* a [G, D] view of t (unit stride on D, one uniform stride over the merged leading dims), copying only
 * when the leading dims cannot be merged */
static sf_tensor *rows2d(sf_tensor *t, int64_t G, int64_t D, const char *op, const char *what) {
  char buf[64];
  if (sf_numel(t) != G * D || t->shape[t->ndim - 1] != D) {
    sf_error("%s: %s must hold %lld frames x %lld channels, got shape %s", op, what, (long long)G, (long long)D,
             sf_shape_str(t, buf, sizeof buf));
    return NULL;
  }
  /* general check: walking leading dims from inner to outer, each stride = next stride * next size */
  int ok = D == 1 || t->stride[t->ndim - 1] == 1;
  int64_t expect = -1, inner = 0;
  for (int i = t->ndim - 2; i >= 0 && ok; i--) {
    if (t->shape[i] == 1) continue;
    if (expect < 0) inner = t->stride[i];
    else ok = t->stride[i] == expect;
    expect = t->stride[i] * t->shape[i];
  }
  if (expect < 0) inner = D;
  sf_tensor *src = ok ? sf_retain(t) : sf_contiguous(t);
  if (!src) return NULL;
  if (!ok) inner = D;
  int64_t shape[2] = {G, D}, stride[2] = {inner, 1};
  sf_tensor *v = sf_tensor_from_storage(src->storage, src->dtype, 2, shape, stride, src->offset);
  sf_release(src);
  return v;
}

/* x [B, L, D] (or [G, R, D]) against per-frame vectors [.., D] with G = numel/D groups */
static sf_tensor *frame_op(sf_tensor *x, sf_tensor *a, sf_tensor *b, sf_tensor *gate, int which) {
  const char *op = which ? "gated_add" : "modulate";
  char buf[64];
  if (check_float(x, op, "input")) return NULL;
  if (x->ndim != 3) return sf_error("%s: input must be [B, tokens, D], got %s", op, sf_shape_str(x, buf, sizeof buf)), NULL;
  const int64_t D = x->shape[2];
  sf_tensor *vec = which ? gate : a;
  if (check_float(vec, op, which ? "gate" : "shift") || check_same_device(x, vec, op, "modulation")) return NULL;
  if (!which && (check_float(b, op, "scale") || check_same_device(x, b, op, "scale"))) return NULL;
  if (which && (check_float(a, op, "y") || check_same_device(x, a, op, "y"))) return NULL;
  if (which && !sf_same_shape(x, a)) return sf_error("gated_add: y %s must match x %s", sf_shape_str(a, buf, sizeof buf), sf_shape_str(x, buf + 32, 32)), NULL;
  const int64_t G = sf_numel(vec) / (D ? D : 1);
  if (G <= 0 || (x->shape[0] * x->shape[1]) % G || G % x->shape[0])
    return sf_error("%s: %lld modulation rows do not divide the %lld x %lld tokens into frames", op, (long long)G,
                    (long long)x->shape[0], (long long)x->shape[1]), NULL;
  const sf_nn_ops *nn = nn_of(x, op);
  if (!nn) return NULL;
  sf_tensor *xc = sf_contiguous(x);
  int64_t s3[3] = {G, x->shape[0] * x->shape[1] / G, D};
  sf_tensor *xv = xc ? sf_view(xc, 3, s3) : NULL;
  sf_tensor *v1 = rows2d(vec, G, D, op, which ? "gate" : "shift");
  sf_tensor *v2 = NULL, *yc = NULL, *yv = NULL;
  if (!which) v2 = rows2d(b, G, D, op, "scale");
  else {
    yc = sf_contiguous(a);
    yv = yc ? sf_view(yc, 3, s3) : NULL;
  }
  sf_tensor *out = NULL, *ov = NULL;
  if (xv && v1 && (which ? yv != NULL : v2 != NULL)) {
    out = sf_empty(3, x->shape, x->dtype, sf_device_of(x));
    ov = out ? sf_view(out, 3, s3) : NULL;
    int rc = !ov ? -1 : which ? nn->gated_add(ov, xv, yv, v1) : nn->modulate(ov, xv, v1, v2);
    if (rc) sf_release(out), out = NULL;
  }
  sf_release(ov), sf_release(xv), sf_release(xc), sf_release(v1), sf_release(v2), sf_release(yc), sf_release(yv);
  return out;
}


static sf_tensor *rope3d_impl(sf_tensor *x, int64_t F, int64_t Hp, int64_t Wp, int64_t f0) {
  char buf[64];
  if (check_float(x, "rope3d", "input")) return NULL;
  if (x->ndim != 4) return sf_error("rope3d: input must be [B, L, heads, head_dim], got %s", sf_shape_str(x, buf, sizeof buf)), NULL;
  const int64_t d = x->shape[3];
  if (d % 2 || d < 6) return sf_error("rope3d: head_dim %lld must be even and >= 6", (long long)d), NULL;
  if (F * Hp * Wp != x->shape[1])
    return sf_error("rope3d: grid %lld x %lld x %lld does not match %lld tokens", (long long)F, (long long)Hp, (long long)Wp,
                    (long long)x->shape[1]), NULL;
  if (f0 < 0) return sf_error("rope3d: negative start frame %lld", (long long)f0), NULL;
  const sf_nn_ops *nn = nn_of(x, "rope3d");
  if (!nn) return NULL;
  sf_tensor *xc = x->stride[3] == 1 ? sf_retain(x) : sf_contiguous(x);
  sf_tensor *out = xc ? sf_empty(4, x->shape, x->dtype, sf_device_of(x)) : NULL;
  if (out && nn->rope3d(out, xc, F, Hp, Wp, f0)) sf_release(out), out = NULL;
  sf_release(xc);
  return out;
}

static int check_cap(const sf_tensor *q, const sf_tensor *t, int64_t a, int64_t b, int64_t c, const char *what) {
  if (!t) return 0;
  char buf[64];
  if (t->dtype != SF_F32 || !sf_is_contiguous(t) || t->ndim != 3 || t->shape[0] != a || t->shape[1] != b || t->shape[2] != c)
    return sf_error("attention: capture buffer %s must be contiguous f32 [%lld, %lld, %lld], got %s %s", what, (long long)a,
                    (long long)b, (long long)c, sf_dtype_name(t->dtype), sf_shape_str(t, buf, sizeof buf));
  return check_same_device(q, t, "attention", what);
}

static sf_tensor *attention_impl(sf_tensor *q, sf_tensor *k, sf_tensor *v, const sf_attn_desc *desc, sf_tensor **lse) {
  char b1[64], b2[64], b3[64];
  if (lse) *lse = NULL;
  if (check_float(q, "attention", "q") || check_float(k, "attention", "k") || check_float(v, "attention", "v")) return NULL;
  if (check_same_device(q, k, "attention", "k") || check_same_device(q, v, "attention", "v")) return NULL;
  if (q->ndim != 4 || k->ndim != 4 || v->ndim != 4 || k->shape[0] != q->shape[0] || v->shape[0] != q->shape[0] ||
      k->shape[2] != q->shape[2] || v->shape[2] != q->shape[2] || k->shape[3] != q->shape[3] || v->shape[3] != q->shape[3] ||
      k->shape[1] != v->shape[1])
    return sf_error("attention: q %s, k %s, v %s must be [B, L, heads, head_dim] with matching B, heads, head_dim and key lengths",
                    sf_shape_str(q, b1, sizeof b1), sf_shape_str(k, b2, sizeof b2), sf_shape_str(v, b3, sizeof b3)), NULL;
  if (k->dtype != q->dtype || v->dtype != q->dtype)
    return sf_error("attention: q, k, v dtypes differ (%s, %s, %s)", sf_dtype_name(q->dtype), sf_dtype_name(k->dtype),
                    sf_dtype_name(v->dtype)), NULL;
  const int64_t B = q->shape[0], Lq = q->shape[1], H = q->shape[2], d = q->shape[3], Lk = k->shape[1];
  sf_attn_desc dd;
  memset(&dd, 0, sizeof dd);
  if (desc) dd = *desc;
  if (!(dd.scale > 0)) dd.scale = 1.0 / sqrt((double)d);
  if (dd.q_group <= 0) dd.q_group = Lq;
  if (dd.k_group <= 0) dd.k_group = Lk;
  if (Lq % dd.q_group) return sf_error("attention: %lld queries are not a multiple of the group size %lld", (long long)Lq, (long long)dd.q_group), NULL;
  if (Lk % dd.k_group) return sf_error("attention: %lld keys are not a multiple of the capture group size %lld", (long long)Lk, (long long)dd.k_group), NULL;
  const int64_t nqg = Lq / dd.q_group, nkg = Lk / dd.k_group;
  if ((dd.kv_lo == NULL) != (dd.kv_hi == NULL)) return sf_error("attention: kv_lo and kv_hi must be given together"), NULL;
  for (int64_t g = 0; dd.kv_lo && g < nqg; g++)
    if (dd.kv_lo[g] < 0 || dd.kv_hi[g] > Lk || dd.kv_lo[g] > dd.kv_hi[g])
      return sf_error("attention: visible key range [%lld, %lld) of query group %lld is outside [0, %lld)", (long long)dd.kv_lo[g],
                      (long long)dd.kv_hi[g], (long long)g, (long long)Lk), NULL;
  if (check_cap(q, dd.cap_logits, H, nqg, nkg, "logits") || check_cap(q, dd.cap_probs, H, nqg, nkg, "probs")) return NULL;
  if (dd.tok_logits || dd.tok_probs) {
    if (dd.tq0 < 0 || dd.tq1 > Lq || dd.tq0 >= dd.tq1 || dd.tk0 < 0 || dd.tk1 > Lk || dd.tk0 >= dd.tk1)
      return sf_error("attention: token capture range q[%lld, %lld) k[%lld, %lld) is outside [0, %lld) x [0, %lld)", (long long)dd.tq0,
                      (long long)dd.tq1, (long long)dd.tk0, (long long)dd.tk1, (long long)Lq, (long long)Lk), NULL;
    if (check_cap(q, dd.tok_logits, H, dd.tq1 - dd.tq0, dd.tk1 - dd.tk0, "token logits") ||
        check_cap(q, dd.tok_probs, H, dd.tq1 - dd.tq0, dd.tk1 - dd.tk0, "token probs"))
      return NULL;
  }
  const sf_nn_ops *nn = nn_of(q, "attention");
  if (!nn) return NULL;
  sf_tensor *qc = q->stride[3] == 1 ? sf_retain(q) : sf_contiguous(q);
  sf_tensor *kc = k->stride[3] == 1 ? sf_retain(k) : sf_contiguous(k);
  sf_tensor *vc = v->stride[3] == 1 ? sf_retain(v) : sf_contiguous(v);
  sf_tensor *out = NULL, *l = NULL;
  if (qc && kc && vc) {
    int64_t ls[3] = {B, H, Lq};
    out = sf_empty(4, q->shape, q->dtype, sf_device_of(q));
    if (out && lse) l = sf_empty(3, ls, SF_F32, sf_device_of(q));
    if (out && (!lse || l) && nn->attention(out, qc, kc, vc, &dd, l) == 0) {
      if (lse) *lse = l, l = NULL;
    } else {
      sf_release(out), out = NULL;
    }
  }
  sf_release(l), sf_release(qc), sf_release(kc), sf_release(vc);
  return out;
}

/* ---- autograd: each public op runs its implementation with grad mode off, then records one node ---- */

#define SF_AG_OFF bool sf__g = sf_set_grad_enabled(false)
#define SF_AG_RUN(call) sf_ag_resume(sf__g, (call))

sf_tensor *sf_layer_norm(sf_tensor *x, sf_tensor *w, sf_tensor *b, double eps) {
  SF_AG_OFF; return sf_ag_layer_norm(SF_AG_RUN(layer_norm_impl(x, w, b, eps)), x, w, b, eps);
}
sf_tensor *sf_rms_norm(sf_tensor *x, sf_tensor *w, double eps) {
  SF_AG_OFF; return sf_ag_rms_norm(SF_AG_RUN(rms_norm_impl(x, w, eps)), x, w, eps);
}
sf_tensor *sf_modulate(sf_tensor *x, sf_tensor *shift, sf_tensor *scale) {
  SF_AG_OFF; return sf_ag_modulate(SF_AG_RUN(frame_op(x, shift, scale, NULL, 0)), x, shift, scale);
}
sf_tensor *sf_gated_add(sf_tensor *x, sf_tensor *y, sf_tensor *gate) {
  SF_AG_OFF; return sf_ag_gated_add(SF_AG_RUN(frame_op(x, y, NULL, gate, 1)), x, y, gate);
}
sf_tensor *sf_rope3d(sf_tensor *x, int64_t F, int64_t Hp, int64_t Wp, int64_t f0) {
  SF_AG_OFF; return sf_ag_rope3d(SF_AG_RUN(rope3d_impl(x, F, Hp, Wp, f0)), x, F, Hp, Wp, f0);
}
sf_tensor *sf_attention(sf_tensor *q, sf_tensor *k, sf_tensor *v, const sf_attn_desc *desc, sf_tensor **lse) {
  sf_tensor *in[3] = {q, k, v}, *l = NULL;
  bool rec = sf_ag_should_record(in, 3);
  sf_attn_desc dd;
  if (desc && sf_checkpoint_recomputing()) { /* a checkpoint recomputation must not capture twice */
    dd = *desc;
    dd.cap_logits = dd.cap_probs = dd.tok_logits = dd.tok_probs = NULL;
    desc = &dd;
  }
  if (lse) *lse = NULL;
  SF_AG_OFF;
  sf_tensor *out = SF_AG_RUN(attention_impl(q, k, v, desc, (lse || rec) ? &l : NULL));
  out = sf_ag_attention(out, q, k, v, desc, l);
  if (lse && out) *lse = l;
  else sf_release(l);
  return out;
}

/* ---- convolutions: the checked dispatch to the device's conv table (backend/conv_ops.h) ---- */

const sf_conv_ops *sf_conv_ops_for(const sf_tensor *x) {
  const sf_backend *be = sf_backend_of(x);
  if (!be) return NULL;
  if (be->conv) return be->conv;
  sf_error("conv: the %s backend has no convolution ops", be->name);
  return NULL;
}

sf_tensor *sf_conv3d(sf_tensor *x, sf_tensor *w, sf_tensor *b, const int stride[3], const int pad[3]) {
  if (!sf_device_eq(sf_device_of(x), sf_device_of(w)) || (b && !sf_device_eq(sf_device_of(x), sf_device_of(b)))) {
    sf_error("conv3d: input, weight and bias must be on one device");
    return NULL;
  }
  const sf_conv_ops *ops = sf_conv_ops_for(x);
  if (!ops) return NULL;
  bool g = sf_set_grad_enabled(false);
  return sf_ag_conv(sf_ag_resume(g, ops->conv3d(x, w, b, stride, pad)), 3, x, w, b, stride, pad);
}

sf_tensor *sf_conv2d(sf_tensor *x, sf_tensor *w, sf_tensor *b, const int stride[2], const int pad[2]) {
  if (!sf_device_eq(sf_device_of(x), sf_device_of(w)) || (b && !sf_device_eq(sf_device_of(x), sf_device_of(b)))) {
    sf_error("conv2d: input, weight and bias must be on one device");
    return NULL;
  }
  const sf_conv_ops *ops = sf_conv_ops_for(x);
  if (!ops) return NULL;
  bool g = sf_set_grad_enabled(false);
  return sf_ag_conv(sf_ag_resume(g, ops->conv2d(x, w, b, stride, pad)), 2, x, w, b, stride, pad);
}
