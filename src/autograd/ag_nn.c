/* ag_nn.c — recorders and backward functions of the fused model ops (core/nn.h): LayerNorm, RMSNorm,
 * modulation, gated residual, 3-D RoPE, attention. Norm/RoPE/attention backwards run the device's
 * `train` table (train_ops.h); modulation backwards are composed from core ops. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/ag_internal.h"
#include "backend/backend.h"
#include "backend/train_ops.h"
#include "core/error.h"

static const sf_train_ops *train_of(const sf_tensor *t, const char *op) {
  const sf_backend *b = sf_backend_of(t);
  if (!b) return NULL;
  if (!b->train) {
    char buf[32];
    sf_error("%s backward: device %s has no training ops", op, sf_device_str(sf_device_of(t), buf, sizeof buf));
    return NULL;
  }
  return b->train;
}

static sf_dtype grad_dt(sf_dtype dt) { return dt == SF_F64 ? SF_F64 : SF_F32; }

static sf_tensor *empty_as(const sf_tensor_meta *m, sf_dtype dt) { return sf_empty(m->ndim, m->shape, dt, m->device); }

static sf_tensor *vec_grad(const sf_tensor_meta *m, sf_dtype dt) { /* [D] buffer for a weight of shape m */
  int64_t n = 1;
  for (int i = 0; i < m->ndim; i++) n *= m->shape[i];
  return sf_empty(1, &n, dt, m->device);
}

static sf_tensor *as_meta_shape(sf_tensor *t, const sf_tensor_meta *m) { /* consumes t */
  if (!t) return NULL;
  sf_tensor *r = sf_reshape(t, m->ndim, m->shape);
  sf_release(t);
  return r;
}

/* ---- norms ---- */

static int bw_norm(sf_node *n, sf_tensor **go, sf_tensor **gi) {
  bool rms = n->ip[0] != 0;
  sf_tensor *x = n->saved[0], *w = n->saved[1];
  const sf_train_ops *tr = train_of(x, n->name);
  if (!tr) return -1;
  sf_tensor *dy = sf_contiguous(go[0]);
  sf_tensor *dx = sf_node_needs(n, 0) ? empty_as(&n->in[0], grad_dt(x->dtype)) : NULL;
  sf_tensor *dw = w && sf_node_needs(n, 1) ? vec_grad(&n->in[1], SF_F32) : NULL;
  sf_tensor *db = !rms && w && sf_node_needs(n, 2) ? vec_grad(&n->in[2], SF_F32) : NULL;
  sf_tensor *xc = sf_contiguous(x), *wc = w ? sf_contiguous(w) : NULL;
  int rc = (!dy || !xc || (w && !wc)) ? -1
           : rms ? tr->rms_norm_bwd(dx, dw, dy, xc, wc, n->p[0])
                 : tr->layer_norm_bwd(dx, dw, db, dy, xc, wc, n->p[0]);
  sf_release(dy); sf_release(xc); sf_release(wc);
  gi[0] = dx;
  if (w) gi[1] = as_meta_shape(dw, &n->in[1]);
  if (!rms && w) gi[2] = as_meta_shape(db, &n->in[2]);
  if (rc) return -1;
  for (int i = 0; i < n->n_in; i++)
    if (sf_node_needs(n, i) && !gi[i]) return -1;
  return 0;
}

sf_tensor *sf_ag_layer_norm(sf_tensor *out, sf_tensor *x, sf_tensor *w, sf_tensor *b, double eps) {
  if (!out) return out;
  sf_tensor *in[3] = {x, w, b};
  sf_node *n = sf_node_begin("layer_norm", bw_norm, in, 3);
  if (!n) return out;
  n->ip[0] = 0;
  n->p[0] = eps;
  sf_node_save(n, 0, x);
  if (w) sf_node_save(n, 1, w);
  return sf_node_finish1(n, out);
}

sf_tensor *sf_ag_rms_norm(sf_tensor *out, sf_tensor *x, sf_tensor *w, double eps) {
  if (!out) return out;
  sf_tensor *in[2] = {x, w};
  sf_node *n = sf_node_begin("rms_norm", bw_norm, in, 2);
  if (!n) return out;
  n->ip[0] = 1;
  n->p[0] = eps;
  sf_node_save(n, 0, x);
  if (w) sf_node_save(n, 1, w);
  return sf_node_finish1(n, out);
}

/* ---- modulation: x [B, L, D] viewed [G, R, D], per-frame vectors viewed [G, 1, D] ---- */

static sf_tensor *grouped(sf_tensor *t, int64_t G, int64_t R, int64_t D) { /* [G, R, D] (R = 1 for vectors) */
  int64_t s[3] = {G, R, D};
  return sf_reshape(t, 3, s);
}

static int bw_frame(sf_node *n, sf_tensor **go, sf_tensor **gi) {
  bool gated = n->ip[0] != 0;
  const sf_tensor_meta *xm = &n->in[0];
  const int64_t D = xm->shape[2], G = n->ip[1], R = xm->shape[0] * xm->shape[1] / G;
  sf_tensor *dy = grouped(go[0], G, R, D);
  if (!dy) return -1;
  int rc = 0;
  if (!gated) { /* out = x (1 + scale) + shift: inputs x, shift, scale; saved x, scale */
    sf_tensor *x = n->saved[0], *scale = n->saved[1];
    sf_tensor *sc = grouped(scale, G, 1, D);
    if (sf_node_needs(n, 0)) {
      sf_tensor *a = sc ? sf_binary_scalar(SF_BIN_ADD, sc, 1.0, false) : NULL;
      sf_tensor *dx = a ? sf_mul(dy, a) : NULL;
      gi[0] = as_meta_shape(dx, &n->in[0]);
      sf_release(a);
    }
    if (sf_node_needs(n, 1)) gi[1] = as_meta_shape(sf_reduce(SF_RED_SUM, dy, 1, false), &n->in[1]);
    if (sf_node_needs(n, 2)) {
      sf_tensor *xg = grouped(x, G, R, D);
      sf_tensor *p = xg ? sf_mul(dy, xg) : NULL;
      gi[2] = as_meta_shape(p ? sf_reduce(SF_RED_SUM, p, 1, false) : NULL, &n->in[2]);
      sf_release(xg); sf_release(p);
    }
    sf_release(sc);
  } else { /* out = x + y gate: inputs x, y, gate; saved y, gate */
    sf_tensor *y = n->saved[0], *gate = n->saved[1];
    if (sf_node_needs(n, 0)) gi[0] = sf_retain(go[0]);
    if (sf_node_needs(n, 1)) {
      sf_tensor *gg = grouped(gate, G, 1, D);
      gi[1] = as_meta_shape(gg ? sf_mul(dy, gg) : NULL, &n->in[1]);
      sf_release(gg);
    }
    if (sf_node_needs(n, 2)) {
      sf_tensor *yg = grouped(y, G, R, D);
      sf_tensor *p = yg ? sf_mul(dy, yg) : NULL;
      gi[2] = as_meta_shape(p ? sf_reduce(SF_RED_SUM, p, 1, false) : NULL, &n->in[2]);
      sf_release(yg); sf_release(p);
    }
  }
  sf_release(dy);
  for (int i = 0; i < n->n_in; i++)
    if (sf_node_needs(n, i) && !gi[i]) rc = -1;
  return rc;
}

static sf_tensor *record_frame(sf_tensor *out, sf_tensor *x, sf_tensor *a, sf_tensor *b, bool gated) {
  if (!out) return out;
  sf_tensor *in[3] = {x, a, b};
  sf_node *n = sf_node_begin(gated ? "gated_add" : "modulate", bw_frame, in, 3);
  if (!n) return out;
  n->ip[0] = gated;
  n->ip[1] = sf_numel(b) / x->shape[2]; /* G: rows of the per-frame vectors */
  if (gated) { sf_node_save(n, 0, a); sf_node_save(n, 1, b); }
  else { sf_node_save(n, 0, x); sf_node_save(n, 1, b); }
  return sf_node_finish1(n, out);
}

sf_tensor *sf_ag_modulate(sf_tensor *out, sf_tensor *x, sf_tensor *shift, sf_tensor *scale) {
  return record_frame(out, x, shift, scale, false);
}
sf_tensor *sf_ag_gated_add(sf_tensor *out, sf_tensor *x, sf_tensor *y, sf_tensor *gate) {
  return record_frame(out, x, y, gate, true);
}

/* ---- RoPE ---- */

static int bw_rope(sf_node *n, sf_tensor **go, sf_tensor **gi) {
  const sf_train_ops *tr = train_of(go[0], "rope3d");
  if (!tr) return -1;
  sf_tensor *dy = go[0]->stride[3] == 1 ? sf_retain(go[0]) : sf_contiguous(go[0]);
  sf_tensor *dx = dy ? empty_as(&n->in[0], grad_dt(n->in[0].dtype)) : NULL;
  int rc = dx ? tr->rope3d_bwd(dx, dy, n->ip[0], n->ip[1], n->ip[2], n->ip[3]) : -1;
  sf_release(dy);
  if (rc) { sf_release(dx); return -1; }
  gi[0] = dx;
  return 0;
}

sf_tensor *sf_ag_rope3d(sf_tensor *out, sf_tensor *x, int64_t F, int64_t Hp, int64_t Wp, int64_t f0) {
  if (!out) return out;
  sf_node *n = sf_node_begin("rope3d", bw_rope, &x, 1);
  if (!n) return out;
  n->ip[0] = F; n->ip[1] = Hp; n->ip[2] = Wp; n->ip[3] = f0;
  return sf_node_finish1(n, out);
}

/* ---- attention ---- */

typedef struct {
  sf_attn_desc desc;
  int64_t *lo, *hi;
} attn_ctx;

static void attn_ctx_free(void *p) {
  attn_ctx *c = p;
  if (!c) return;
  free(c->lo);
  free(c->hi);
  free(c);
}

static int bw_attention(sf_node *n, sf_tensor **go, sf_tensor **gi) {
  sf_tensor *q = n->saved[0], *k = n->saved[1], *v = n->saved[2], *o = n->saved[3], *lse = n->saved[4];
  attn_ctx *c = n->ctx;
  const sf_train_ops *tr = train_of(q, "attention");
  if (!tr) return -1;
  sf_tensor *dout = go[0]->stride[3] == 1 ? sf_retain(go[0]) : sf_contiguous(go[0]);
  sf_tensor *dq = sf_node_needs(n, 0) ? empty_as(&n->in[0], grad_dt(q->dtype)) : NULL;
  sf_tensor *dk = sf_node_needs(n, 1) ? empty_as(&n->in[1], grad_dt(k->dtype)) : NULL;
  sf_tensor *dv = sf_node_needs(n, 2) ? empty_as(&n->in[2], grad_dt(v->dtype)) : NULL;
  int rc = dout ? tr->attention_bwd(dq, dk, dv, dout, q, k, v, o, lse, &c->desc) : -1;
  sf_release(dout);
  gi[0] = dq; gi[1] = dk; gi[2] = dv;
  if (rc) return -1;
  for (int i = 0; i < 3; i++)
    if (sf_node_needs(n, i) && !gi[i]) return -1;
  return 0;
}

sf_tensor *sf_ag_attention(sf_tensor *out, sf_tensor *q, sf_tensor *k, sf_tensor *v, const struct sf_attn_desc *desc,
                           sf_tensor *lse) {
  if (!out) return out;
  sf_tensor *in[3] = {q, k, v};
  sf_node *n = sf_node_begin("attention", bw_attention, in, 3);
  if (!n) return out;
  if (!lse) { sf_node_abort(n); sf_release(out); sf_error("attention: recording needs the log-sum-exp"); return NULL; }
  if (!n->ctx) { /* a refilled checkpoint node keeps its context */
    attn_ctx *c = calloc(1, sizeof *c);
    if (!c) { sf_node_abort(n); sf_release(out); sf_error("attention: out of memory recording"); return NULL; }
    const int64_t d = q->shape[3], Lq = q->shape[1];
    c->desc.scale = desc && desc->scale > 0 ? desc->scale : 1.0 / sqrt((double)d);
    c->desc.q_group = desc && desc->q_group > 0 ? desc->q_group : Lq;
    if (desc && desc->kv_lo) {
      int64_t ng = Lq / c->desc.q_group;
      c->lo = malloc(sizeof(int64_t) * ng);
      c->hi = malloc(sizeof(int64_t) * ng);
      if (!c->lo || !c->hi) { attn_ctx_free(c); sf_node_abort(n); sf_release(out); sf_error("attention: out of memory"); return NULL; }
      memcpy(c->lo, desc->kv_lo, sizeof(int64_t) * ng);
      memcpy(c->hi, desc->kv_hi, sizeof(int64_t) * ng);
      c->desc.kv_lo = c->lo;
      c->desc.kv_hi = c->hi;
    }
    n->ctx = c;
    n->free_ctx = attn_ctx_free;
  }
  sf_node_save(n, 0, q);
  sf_node_save(n, 1, k);
  sf_node_save(n, 2, v);
  sf_node_save(n, 3, out);
  sf_node_save(n, 4, lse);
  return sf_node_finish1(n, out);
}
