/* wan_forward.c — the Wan DiT forward (spec 1.2-1.9, 3.2-3.4): patch embedding, time/text/image
 * embeddings, blocks with full / block-causal / KV-cache self-attention, cross-attention (T2V/I2V,
 * optional cache), head, unpatchify. Built from public ops so autograd can record it.
 *
 * Teacher forcing (opts->clean_x, CausalWanModel._forward_train with clean_x): the clean latents are
 * patch-embedded as F more frames before x's, with time embeddings of aug_t (zeros by default); both halves
 * get the same RoPE positions 0..F-1; the mask of _prepare_teacher_forcing_mask lets a clean query of block b
 * see clean keys [0, end of b) and a noisy query of block b see the clean blocks before b plus its own noisy
 * block. That second set is two key ranges, so the noisy half runs one attention call per block over the cat
 * of those ranges (same arithmetic as the masked kernel; extra memory for the cat keys). The head reads the
 * noisy half with x's time embedding.
 *
 * Precision (spec 1.10). Without autocast every activation has the weights' dtype: f32, or for bf16
 * weights Self-Forcing's bf16 regime. With autocast (s->ac = bf16/f16) it follows upstream Wan under
 * `amp.autocast(bf16)`: linears (patch, text, img, q/k/v/o, ffn) and attention in the low dtype; the
 * time MLP, modulation, norms (LayerNorm output rounded to its input's dtype, then f32), RMSNorm's
 * weight product, RoPE, the residual stream and the head in f32. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/autograd.h"
#include "core/error.h"
#include "core/scope.h"
#include "ops/nn.h"
#include "ops/ops.h"
#include "models/wan.h"
#include "models/wan_internal.h"

/* Ownership: each function owns its intermediates in an sf_scope (core/scope.h) and keeps its result; the
 * early frees (SF_DROP) are the ones peak memory needs, each with its reason (docs/architecture.md has the
 * measured peaks). */

enum { MODE_FULL = 0, MODE_BLOCK, MODE_KV };

typedef struct fwd {
  sf_wan_model *m;
  const sf_wan_fwd_opts *o;
  int mode;
  int64_t B, F, Hp, Wp, S, L, D, N, d, f0, Fe, n_img, n_ctx;
  sf_tensor *e0;        /* [B, Fe, 6, D] */
  sf_tensor *context;   /* [B, n_ctx, D] or NULL when every layer's cross cache is filled */
  int64_t *kv_lo, *kv_hi; /* block-causal visibility per query frame (tokens) */
  int64_t *q_ids;       /* absolute frame of each query frame */
  int64_t *self_k_ids;  /* full/block: key frame ids */
  int64_t *ctx_ids;     /* 0..n_ctx-1 */
  sf_dtype ac;          /* autocast dtype; SF_F32 = off */
  bool tf;              /* teacher forcing: the sequence is [clean | noisy], F and L count both halves */
  int64_t Fh;           /* teacher forcing: frames of one half */
} fwd;

void sf_wan_fwd_opts_init(sf_wan_fwd_opts *o) {
  memset(o, 0, sizeof *o);
  o->tag.chunk = -1;
  o->tag.step = -1;
  o->tag.timestep = NAN;
  o->autocast = -1;
}

static sf_tensor *view_n(sf_tensor *t, int n, int64_t a, int64_t b, int64_t c, int64_t d) {
  int64_t s[4] = {a, b, c, d};
  return sf_view(t, n, s);
}

#define AS_IS SF_NDTYPES /* "no cast": the model's own regime */

static bool autocast(const fwd *s) { return s->ac != SF_F32; }

/* t as dtype dt (new reference; no copy when it already is) */
static sf_tensor *as_dt(sf_tensor *t, sf_dtype dt) { return !t ? NULL : dt == AS_IS || t->dtype == dt ? sf_retain(t) : sf_cast(t, dt); }

/* an fp32 island under autocast (the value upstream computes in f32); a no-op otherwise */
static sf_tensor *island(const fwd *s, sf_tensor *t) { return as_dt(t, autocast(s) ? SF_F32 : AS_IS); }

/* t to the model's device and its input dtype: the weights' dtype, or f32 under autocast (new reference) */
static sf_tensor *to_model(const fwd *s, sf_tensor *t) {
  sf_scope S = SF_SCOPE_INIT;
  sf_tensor *a = SF_OWN(S, sf_to_device(t, s->m->device));
  return sf_scope_end_keep(&S, SF_OWN(S, sf_cast(a, autocast(s) ? SF_F32 : s->m->dtype)));
}

/* y + lora_scale * B(A(x)) when the linear `base` has adapters kept separate (PEFT's unmerged LoRA forward,
 * dropout 0), else y (new reference) */
static sf_tensor *lora_add(const sf_wan_model *m, sf_tensor *y, sf_tensor *x, const char *base, long long i, sf_dtype dt) {
  char an[160], bn[160], fa[128], fb[128];
  snprintf(fa, sizeof fa, "%s.lora_A.weight", base);
  snprintf(fb, sizeof fb, "%s.lora_B.weight", base);
  snprintf(an, sizeof an, fa, i);
  snprintf(bn, sizeof bn, fb, i);
  sf_tensor *A = sf_wan_param(m, an), *B = A ? sf_wan_param(m, bn) : NULL;
  if (!A || !B) return sf_retain(y);
  sf_scope S = SF_SCOPE_INIT;
  sf_tensor *Ac = SF_OWN(S, as_dt(A, dt));
  sf_tensor *Bc = SF_OWN(S, as_dt(B, dt));
  sf_tensor *h = SF_OWN(S, sf_linear(x, Ac, NULL));
  sf_tensor *d = SF_OWN(S, sf_linear(h, Bc, NULL));
  sf_tensor *ds = SF_OWN(S, sf_binary_scalar(SF_BIN_MUL, d, m->lora_scale, false));
  return sf_scope_end_keep(&S, SF_OWN(S, sf_add(y, ds)));
}

/* x W^T + b with x, W, b cast to dt first (AS_IS: as stored) */
static sf_tensor *lin_as(const sf_wan_model *m, sf_tensor *x, const char *base, long long i, sf_dtype dt) {
  char w[128], b[128];
  snprintf(w, sizeof w, "%s.weight", base);
  snprintf(b, sizeof b, "%s.bias", base);
  sf_tensor *W = sf_wan_paramf(m, w, i), *Bb = W ? sf_wan_paramf(m, b, i) : NULL;
  if (!Bb) return NULL;
  sf_scope S = SF_SCOPE_INIT;
  sf_tensor *xc = SF_OWN(S, as_dt(x, dt));
  sf_tensor *Wc = SF_OWN(S, as_dt(W, dt));
  sf_tensor *bc = SF_OWN(S, as_dt(Bb, dt));
  sf_tensor *y = SF_OWN(S, sf_linear(xc, Wc, bc));
  if (m->lora_rank > 0) y = SF_OWN(S, lora_add(m, y, xc, base, i, dt));
  return sf_scope_end_keep(&S, y);
}

/* an autocast linear (the low dtype under autocast) */
static sf_tensor *lin(const fwd *s, sf_tensor *x, const char *base, long long i) {
  return lin_as(s->m, x, base, i, autocast(s) ? s->ac : AS_IS);
}

/* a linear inside an fp32 island (time MLP, head) */
static sf_tensor *lin_f32(const fwd *s, sf_tensor *x, const char *base, long long i) {
  return lin_as(s->m, x, base, i, autocast(s) ? SF_F32 : AS_IS);
}

/* a parameter as an fp32-island operand (new reference) */
static sf_tensor *param_island(const fwd *s, const char *fmt, long long i) { return island(s, sf_wan_paramf(s->m, fmt, i)); }

static sf_tensor *unary(sf_unary_op op, sf_tensor *x) { return sf_unary(op, x, 0, 0); }

/* ---- embeddings ---- */

/* the [B, Fe, 6, D] modulation inputs e0; *e_out = the [B*Fe, D] embedding e the head reads (new references) */
static sf_tensor *time_embeddings(fwd *s, sf_tensor *t, sf_tensor **e_out) {
  const sf_wan_config *c = &s->m->cfg;
  const int64_t M = s->B * s->Fe, half = c->freq_dim / 2;
  int64_t shp[2] = {M, c->freq_dim};
  sf_scope S = SF_SCOPE_INIT;
  sf_tensor *t64 = SF_OWN(S, sf_cast(t, SF_F64));
  sf_tensor *tc = SF_OWN(S, sf_to_device(t64, sf_cpu()));
  tc = SF_OWN(S, sf_contiguous(tc));
  sf_tensor *sin_t = SF_OWN(S, sf_empty(2, shp, SF_F64, sf_cpu()));
  if (!S.failed) {
    const double *tv = sf_data_ptr(tc);
    double *sv = sf_data_ptr(sin_t);
    for (int64_t r = 0; r < M; r++)
      for (int64_t k = 0; k < half; k++) {
        double ang = tv[r] * pow(10000.0, -(double)k / (double)half);
        sv[r * c->freq_dim + k] = cos(ang);
        sv[r * c->freq_dim + half + k] = sin(ang);
      }
  }
  sf_tensor *sin_m = SF_OWN(S, to_model(s, sin_t));
  sf_tensor *h = SF_OWN(S, lin_f32(s, sin_m, "time_embedding.0", 0));
  sf_tensor *h2 = SF_OWN(S, unary(SF_UN_SILU, h));
  sf_tensor *e = SF_OWN(S, lin_f32(s, h2, "time_embedding.2", 0));
  sf_tensor *se = SF_OWN(S, unary(SF_UN_SILU, e));
  sf_tensor *e0 = SF_OWN(S, lin_f32(s, se, "time_projection.1", 0));
  sf_tensor *e0v = SF_OWN(S, view_n(e0, 4, s->B, s->Fe, 6, s->D));
  *e_out = S.failed ? NULL : sf_retain(e);
  return sf_scope_end_keep(&S, e0v);
}

/* affine LayerNorm; an fp32 island under autocast (norm3 upcasts, and autocast runs nn.LayerNorm in f32) */
static sf_tensor *layer_norm_p(const fwd *s, sf_tensor *x, const char *base, double eps) {
  char w[96], b[96];
  snprintf(w, sizeof w, "%s.weight", base);
  snprintf(b, sizeof b, "%s.bias", base);
  sf_scope S = SF_SCOPE_INIT;
  sf_tensor *W = SF_OWN(S, param_island(s, w, 0));
  sf_tensor *Bb = SF_OWN(S, param_island(s, b, 0));
  sf_tensor *xf = SF_OWN(S, island(s, x));
  return sf_scope_end_keep(&S, SF_OWN(S, sf_layer_norm(xf, W, Bb, eps)));
}

/* WanLayerNorm without affine: normalised in f32 and rounded to x's dtype; under autocast the caller's
 * `.float()` follows (spec 1.10) */
static sf_tensor *layer_norm_plain(const fwd *s, sf_tensor *x) {
  sf_scope S = SF_SCOPE_INIT;
  sf_tensor *n = SF_OWN(S, sf_layer_norm(x, NULL, NULL, s->m->cfg.eps));
  return sf_scope_end_keep(&S, SF_OWN(S, island(s, n)));
}

static sf_tensor *context_embedding(fwd *s, sf_tensor *ctx, sf_tensor *clip) {
  const sf_wan_config *c = &s->m->cfg;
  const int64_t Lt = ctx->shape[1];
  sf_scope S = SF_SCOPE_INIT;
  sf_tensor *pad = SF_OWN(S, to_model(s, ctx));
  /* zero rows up to text_len, as a recorded cat (the context's gradient flows, as PyTorch's padding copy) */
  if (Lt < c->text_len) {
    int64_t ps[3] = {s->B, c->text_len - Lt, c->text_dim};
    sf_tensor *parts[2] = {pad, SF_OWN(S, sf_zeros(3, ps, pad ? pad->dtype : SF_F32, s->m->device))};
    pad = SF_OWN(S, sf_cat(parts, 2, 1));
  }
  sf_tensor *a = SF_OWN(S, lin(s, pad, "text_embedding.0", 0));
  sf_tensor *g = SF_OWN(S, unary(SF_UN_GELU_TANH, a));
  sf_tensor *txt = SF_OWN(S, lin(s, g, "text_embedding.2", 0));
  if (s->n_img == 0) return sf_scope_end_keep(&S, txt);
  sf_tensor *cl = SF_OWN(S, to_model(s, clip));
  sf_tensor *i1 = SF_OWN(S, layer_norm_p(s, cl, "img_emb.proj.0", 1e-5));
  sf_tensor *i2 = SF_OWN(S, lin(s, i1, "img_emb.proj.1", 0));
  sf_tensor *i3 = SF_OWN(S, unary(SF_UN_GELU, i2));
  sf_tensor *i4 = SF_OWN(S, lin(s, i3, "img_emb.proj.3", 0));
  sf_tensor *img = SF_OWN(S, layer_norm_p(s, i4, "img_emb.proj.4", 1e-5));
  /* under autocast the image tokens are f32 and the text tokens low precision: cat promotes to f32
   * (exact; the k/v linears round both back) */
  sf_tensor *parts[2] = {img, SF_OWN(S, as_dt(txt, img ? img->dtype : AS_IS))};
  return sf_scope_end_keep(&S, SF_OWN(S, sf_cat(parts, 2, 1)));
}

/* ---- attention helpers ---- */

static sf_tensor *attend(fwd *s, int layer, bool cross, int img, sf_tensor *q, sf_tensor *k, sf_tensor *v,
                         const int64_t *k_ids, int64_t k_group, const int64_t *lo, const int64_t *hi) {
  sf_attn_desc desc;
  memset(&desc, 0, sizeof desc);
  desc.scale = 1.0 / sqrt((double)s->d);
  desc.q_group = s->S;
  desc.kv_lo = lo;
  desc.kv_hi = hi;
  sf_cap_call call = {layer, cross, img, s->B, s->N, s->F, k->shape[1] / k_group, s->S, k_group, s->q_ids, k_ids, lo, hi,
                      s->o->tag.chunk, &s->o->tag};
  /* a checkpoint recomputation in backward must not record captures a second time */
  int want = s->m->captures && !s->tf && !sf_checkpoint_recomputing() ? sf_wan_capture_begin(s->m, &call, &desc, s->m->device) : 0;
  if (want < 0) return NULL;
  /* under autocast attention runs in the low dtype (upstream casts q, k, v for flash-attn) */
  const sf_dtype adt = autocast(s) ? s->ac : AS_IS;
  sf_scope S = SF_SCOPE_INIT;
  sf_tensor *qc = SF_OWN(S, as_dt(q, adt));
  sf_tensor *kc = SF_OWN(S, as_dt(k, adt));
  sf_tensor *vc = SF_OWN(S, as_dt(v, adt));
  sf_tensor *o = sf_scope_end_keep(&S, SF_OWN(S, sf_attention(qc, kc, vc, &desc, NULL)));
  if (want > 0) {
    if (!o) {
      char saved[512];
      snprintf(saved, sizeof saved, "%s", sf_last_error());
      sf_wan_capture_end(s->m, &call, &desc);
      sf_error("%s", saved);
    } else if (sf_wan_capture_end(s->m, &call, &desc)) {
      sf_release(o);
      return NULL;
    }
  }
  return o;
}

/* the copies a cache plan asks for (the policy itself is sfwb/kv_policy.lua, or sf_wan_kv_default_plan) */

/* a value copy into the cache: the gradient path is wan_kv_grad.c's, never the copy's */
static int copy_values(sf_tensor *dst, sf_tensor *src) {
  bool prev = sf_set_grad_enabled(false);
  int rc = sf_copy_(dst, src);
  sf_set_grad_enabled(prev);
  return rc;
}

/* slots [src, src + n) move down to [dst, dst + n) (frames; the ranges may overlap) */
static int kv_roll(sf_wan_kv *kv, int i, int64_t S, int64_t dst, int64_t src, int64_t n) {
  for (int t = 0; t < 2 && n > 0; t++) {
    sf_tensor *buf = t ? kv->v[i] : kv->k[i];
    sf_scope C = SF_SCOPE_INIT; /* per buffer: the clone is a layer's cache */
    sf_tensor *a = SF_OWN(C, sf_narrow(buf, 1, src * S, n * S));
    sf_tensor *tmp = SF_OWN(C, sf_clone(a)); /* the ranges overlap */
    sf_tensor *b = SF_OWN(C, sf_narrow(buf, 1, dst * S, n * S));
    SF_CHECK(C, copy_values(b, tmp));
    if (sf_scope_close(&C)) return -1;
  }
  if (n > 0) memmove(kv->slot_frame[i] + dst, kv->slot_frame[i] + src, sizeof(int64_t) * (size_t)n);
  if (n > 0) sf_wan_kv_grad_move(kv, i, dst, src, n); /* a grad-mode roll moves the graph with the values */
  return 0;
}

/* frames [from, from + n) of this call's k, v into slots [at, at + n) */
static int kv_write(sf_wan_kv *kv, int i, const fwd *s, sf_tensor *k, sf_tensor *v, int64_t from, int64_t at, int64_t n) {
  const int64_t S = s->S;
  for (int t = 0; t < 2 && n > 0; t++) {
    sf_scope C = SF_SCOPE_INIT;
    sf_tensor *whole = t ? v : k;
    sf_tensor *src = SF_OWN(C, from == 0 && n * S == whole->shape[1] ? sf_retain(whole) : sf_narrow(whole, 1, from * S, n * S));
    sf_tensor *dst = SF_OWN(C, sf_narrow(t ? kv->v[i] : kv->k[i], 1, at * S, n * S));
    SF_CHECK(C, copy_values(dst, src));
    if (sf_scope_close(&C)) return -1;
  }
  if (n > 0 && sf_wan_kv_grad_write(kv, i, at, n, from, k, v)) return -1;
  for (int64_t f = 0; f < n; f++) kv->slot_frame[i][at + f] = s->f0 + from + f;
  return 0;
}

/* layer i's keys (which = 0) or values (1) over the plan's read ranges: views of the buffer, a cat of two
 * ranges, or with `graph` copies carrying the gradient path of PyTorch's in-place writes (wan_kv_grad.c) */
static sf_tensor *kv_read(const fwd *s, int i, int which, const sf_wan_kv_plan *p, bool graph) {
  sf_wan_kv *kv = s->o->kv;
  sf_tensor *buf = which ? kv->v[i] : kv->k[i];
  const int64_t S = s->S;
  if (!graph && p->n_read == 1) return sf_narrow(buf, 1, p->read_lo[0] * S, (p->read_hi[0] - p->read_lo[0]) * S);
  sf_scope C = SF_SCOPE_INIT;
  sf_tensor *parts[2];
  int np = 0;
  for (int q = 0; q < p->n_read; q++) {
    const int64_t lo = p->read_lo[q] * S, hi = p->read_hi[q] * S;
    if (hi > lo) parts[np++] = SF_OWN(C, graph ? sf_wan_kv_grad_read(kv, i, which, lo, hi) : sf_narrow(buf, 1, lo, hi - lo));
  }
  if (np == 0) {
    sf_scope_end(&C);
    return sf_error("wan kv cache: the plan of layer %d reads no frames", i), NULL;
  }
  return sf_scope_end_keep(&C, np == 1 ? parts[0] : SF_OWN(C, sf_cat(parts, np, 1)));
}

/* one layer's cache update by the call's plan; returns the keys and values attention reads (new references,
 * NULL after a failure) and their frame ids */
static int kv_update(fwd *s, int i, sf_tensor *k, sf_tensor *v, sf_tensor **kk, sf_tensor **vv, int64_t **k_ids) {
  sf_wan_kv *kv = s->o->kv;
  const int64_t S = s->S;
  sf_wan_kv_plan dflt;
  const sf_wan_kv_plan *p = s->o->kv_plan;
  *kk = *vv = NULL;
  if (!p) {
    if (sf_wan_kv_default_plan(kv, i, s->f0, s->F, &dflt) || sf_wan_kv_check_plan(kv, s->F, &dflt)) return -1;
    p = &dflt;
  }
  int64_t *sf = kv->slot_frame[i];
  if (p->roll_n > 0 && kv_roll(kv, i, S, p->roll_dst, p->roll_src, p->roll_n)) return -1;
  if (p->write_n > 0 && kv_write(kv, i, s, k, v, p->write_from, p->write_at, p->write_n)) return -1;
  if (p->advance) kv->global_end[i] = p->global_end * S, kv->local_end[i] = p->local_end * S;
  const int64_t lo = p->read_lo[p->n_read - 1], hi = p->read_hi[p->n_read - 1];
  const bool graph = sf_grad_enabled() && !kv->detach;
  if (!graph && sf_grad_enabled() && (k->requires_grad || v->requires_grad)) {
    /* detach_kv_cache (the clean variant): the cache holds values only, so attend over [detached past | this
     * chunk's k, v] (same values): the gradient reaches the current chunk's keys and values only; that needs
     * the whole chunk written at the end of one read range */
    if (p->n_read != 1 || p->write_from != 0 || p->write_n != s->F || p->write_at + p->write_n != hi || lo > p->write_at)
      return sf_error("wan kv cache: detach=true with autograd needs a plan that writes the whole chunk at the end of a single read range");
    for (int t = 0; t < 2; t++) {
      sf_scope C = SF_SCOPE_INIT;
      sf_tensor *parts[2] = {SF_OWN(C, sf_narrow(t ? kv->v[i] : kv->k[i], 1, lo * S, (p->write_at - lo) * S)), t ? v : k};
      *(t ? vv : kk) = sf_scope_end_keep(&C, SF_OWN(C, sf_cat(parts, 2, 1)));
    }
  } else {
    *kk = kv_read(s, i, 0, p, graph);
    *vv = *kk ? kv_read(s, i, 1, p, graph) : NULL;
  }
  if (!*kk || !*vv) {
    sf_release(*kk), sf_release(*vv);
    *kk = *vv = NULL;
    return -1;
  }
  if (p->n_read == 2) {
    const int64_t lo0 = p->read_lo[0], hi0 = p->read_hi[0];
    memcpy(kv->ids, sf + lo0, sizeof(int64_t) * (size_t)(hi0 - lo0));
    memcpy(kv->ids + (hi0 - lo0), sf + lo, sizeof(int64_t) * (size_t)(hi - lo));
    *k_ids = kv->ids;
  } else {
    *k_ids = sf + lo;
  }
  return 0;
}

static sf_tensor *qk_proj(fwd *s, sf_tensor *x, int i, const char *att, const char *which, const char *norm, bool rope) {
  char base[96], nb[96];
  snprintf(base, sizeof base, "blocks.%%lld.%s.%s", att, which);
  snprintf(nb, sizeof nb, "blocks.%%lld.%s.%s.weight", att, norm);
  const int64_t B = x->shape[0], L = x->shape[1];
  sf_scope S = SF_SCOPE_INIT;
  sf_tensor *a = SF_OWN(S, lin(s, x, base, i)), *n;
  sf_tensor *w = SF_OWN(S, sf_retain(sf_wan_paramf(s->m, nb, i)));
  if (autocast(s)) { /* normalised and rounded to the low dtype, then times the f32 weight -> f32 */
    sf_tensor *n0 = SF_OWN(S, sf_rms_norm(a, NULL, s->m->cfg.eps));
    sf_tensor *nf = SF_OWN(S, island(s, n0));
    sf_tensor *wf = SF_OWN(S, island(s, w));
    n = SF_OWN(S, sf_mul(nf, wf));
  } else {
    n = SF_OWN(S, sf_rms_norm(a, w, s->m->cfg.eps));
  }
  if (!rope) return sf_scope_end_keep(&S, SF_OWN(S, view_n(n, 4, B, L, s->N, s->d)));
  if (s->tf) { /* each half [B, L/2] gets positions 0..F/2-1: viewed as a batch of 2B */
    sf_tensor *v2 = SF_OWN(S, view_n(n, 4, 2 * B, L / 2, s->N, s->d));
    sf_tensor *r2 = SF_OWN(S, sf_rope3d(v2, s->Fh, s->Hp, s->Wp, s->f0));
    return sf_scope_end_keep(&S, SF_OWN(S, view_n(r2, 4, B, L, s->N, s->d)));
  }
  sf_tensor *v = SF_OWN(S, view_n(n, 4, B, L, s->N, s->d));
  return sf_scope_end_keep(&S, SF_OWN(S, sf_rope3d(v, s->F, s->Hp, s->Wp, s->f0)));
}

/* teacher-forcing self-attention over q, k, v [B, 2L, N, d] = [clean | noisy] (see the top of the file):
 * clean queries block-causally over the clean keys (s->kv_lo/hi, first Fh groups); the noisy queries of
 * block b over cat(clean keys of blocks < b, noisy keys of block b) */
static sf_tensor *tf_attention(fwd *s, sf_tensor *q, sf_tensor *k, sf_tensor *v) {
  const int64_t L = s->L / 2, bs = s->m->cfg.num_frame_per_block * s->S, nb = (L + bs - 1) / bs;
  const sf_dtype adt = autocast(s) ? s->ac : AS_IS;
  sf_tensor **parts = calloc((size_t)nb + 1, sizeof(sf_tensor *));
  if (!parts) return sf_error("wan forward: out of memory"), NULL;
  sf_attn_desc desc;
  memset(&desc, 0, sizeof desc);
  desc.scale = 1.0 / sqrt((double)s->d);
  sf_scope S = SF_SCOPE_INIT;
  sf_tensor *qa = SF_OWN(S, as_dt(q, adt)), *ka = SF_OWN(S, as_dt(k, adt)), *va = SF_OWN(S, as_dt(v, adt));
  sf_tensor *qh = SF_OWN(S, sf_narrow(qa, 1, 0, L)), *kh = SF_OWN(S, sf_narrow(ka, 1, 0, L)), *vh = SF_OWN(S, sf_narrow(va, 1, 0, L));
  desc.q_group = s->S, desc.kv_lo = s->kv_lo, desc.kv_hi = s->kv_hi;
  parts[0] = SF_OWN(S, sf_attention(qh, kh, vh, &desc, NULL));
  desc.q_group = 0, desc.kv_lo = desc.kv_hi = NULL;
  for (int64_t b = 0; b < nb && !S.failed; b++) {
    const int64_t r0 = L + b * bs, n = b * bs + bs <= L ? bs : L - b * bs;
    sf_scope C = SF_SCOPE_INIT; /* per block: the cat keys and values are copies */
    sf_tensor *qb = SF_OWN(C, sf_narrow(qa, 1, r0, n)), *kv[2];
    for (int t = 0; t < 2; t++) {
      sf_tensor *src = t ? va : ka;
      sf_tensor *two[2] = {b ? SF_OWN(C, sf_narrow(src, 1, 0, b * bs)) : NULL, SF_OWN(C, sf_narrow(src, 1, r0, n))};
      kv[t] = b == 0 ? two[1] : SF_OWN(C, sf_cat(two, 2, 1));
    }
    sf_tensor *o = sf_scope_end_keep(&C, SF_OWN(C, sf_attention(qb, kv[0], kv[1], &desc, NULL)));
    parts[b + 1] = SF_OWN(S, o);
  }
  sf_tensor *out = S.failed ? NULL : SF_OWN(S, sf_cat(parts, (int)nb + 1, 1));
  free(parts);
  return sf_scope_end_keep(&S, out);
}

static sf_tensor *self_attention(fwd *s, int i, sf_tensor *h) {
  sf_scope S = SF_SCOPE_INIT;
  sf_tensor *q = SF_OWN(S, qk_proj(s, h, i, "self_attn", "q", "norm_q", true));
  sf_tensor *k = SF_OWN(S, qk_proj(s, h, i, "self_attn", "k", "norm_k", true));
  sf_tensor *v0 = SF_OWN(S, lin(s, h, "blocks.%lld.self_attn.v", i));
  sf_tensor *v = SF_OWN(S, view_n(v0, 4, s->B, s->L, s->N, s->d)), *o;
  if (s->tf) {
    o = SF_OWN(S, tf_attention(s, q, k, v));
  } else if (s->mode == MODE_KV) {
    sf_tensor *kk = NULL, *vv = NULL;
    int64_t *k_ids = NULL;
    SF_CHECK(S, kv_update(s, i, k, v, &kk, &vv, &k_ids));
    if (!S.failed) SF_OWN(S, kk), SF_OWN(S, vv);
    o = SF_OWN(S, attend(s, i, false, 0, q, kk, vv, k_ids, s->S, NULL, NULL));
  } else {
    const bool blk = s->mode == MODE_BLOCK;
    o = SF_OWN(S, attend(s, i, false, 0, q, k, v, s->self_k_ids, s->S, blk ? s->kv_lo : NULL, blk ? s->kv_hi : NULL));
  }
  sf_tensor *ov = SF_OWN(S, view_n(o, 3, s->B, s->L, s->D, 0));
  return sf_scope_end_keep(&S, SF_OWN(S, lin(s, ov, "blocks.%lld.self_attn.o", i)));
}

/* the text (or image: img, names with suffix "_img") keys and values of layer i from the context tokens
 * [t0, t0 + n) */
static int cross_kv(fwd *s, int i, bool img, int64_t t0, int64_t n, sf_tensor **k, sf_tensor **v) {
  char vn[64];
  snprintf(vn, sizeof vn, "blocks.%%lld.cross_attn.v%s", img ? "_img" : "");
  sf_scope S = SF_SCOPE_INIT;
  sf_tensor *ct = SF_OWN(S, sf_narrow(s->context, 1, t0, n));
  sf_tensor *kt = SF_OWN(S, qk_proj(s, ct, i, "cross_attn", img ? "k_img" : "k", img ? "norm_k_img" : "norm_k", false));
  sf_tensor *v0 = SF_OWN(S, lin(s, ct, vn, i));
  sf_tensor *vt = SF_OWN(S, view_n(v0, 4, s->B, n, s->N, s->d));
  *k = S.failed ? NULL : sf_retain(kt);
  *v = sf_scope_end_keep(&S, vt);
  if (!*v) sf_release(*k), *k = NULL;
  return *v ? 0 : -1;
}

static sf_tensor *cross_attention(fwd *s, int i, sf_tensor *x) {
  const sf_wan_config *c = &s->m->cfg;
  sf_wan_xcache *xc = s->o->xcache;
  sf_tensor *k = NULL, *v = NULL, *ki = NULL, *vi = NULL;
  char b[64];
  snprintf(b, sizeof b, "blocks.%d.norm3", i);
  sf_scope S = SF_SCOPE_INIT;
  sf_tensor *n3 = SF_OWN(S, layer_norm_p(s, x, b, c->eps));
  sf_tensor *q = SF_OWN(S, qk_proj(s, n3, i, "cross_attn", "q", "norm_q", false));
  if (xc && xc->is_init[i]) {
    k = SF_OWN(S, sf_retain(xc->k[i])), v = SF_OWN(S, sf_retain(xc->v[i]));
    if (s->n_img) ki = SF_OWN(S, sf_retain(xc->k_img[i])), vi = SF_OWN(S, sf_retain(xc->v_img[i]));
  } else {
    SF_CHECK(S, cross_kv(s, i, false, s->n_img, c->text_len, &k, &v));
    SF_OWN(S, k), SF_OWN(S, v);
    if (s->n_img) {
      SF_CHECK(S, cross_kv(s, i, true, 0, s->n_img, &ki, &vi));
      SF_OWN(S, ki), SF_OWN(S, vi);
    }
    if (xc && !S.failed) {
      sf_release(xc->k[i]), sf_release(xc->v[i]), sf_release(xc->k_img[i]), sf_release(xc->v_img[i]);
      xc->k[i] = sf_retain(k), xc->v[i] = sf_retain(v);
      xc->k_img[i] = ki ? sf_retain(ki) : NULL, xc->v_img[i] = vi ? sf_retain(vi) : NULL;
      xc->is_init[i] = true;
    }
  }
  if (!S.failed && k->shape[0] != s->B) {
    sf_error("wan cross-attention cache holds batch %lld but the input has batch %lld (reset the cache)", (long long)k->shape[0], (long long)s->B);
    return sf_scope_end(&S), NULL;
  }
  sf_tensor *o = SF_OWN(S, attend(s, i, true, 0, q, k, v, s->ctx_ids + s->n_img, 1, NULL, NULL));
  if (s->n_img) {
    sf_tensor *oi = SF_OWN(S, attend(s, i, true, 1, q, ki, vi, s->ctx_ids, 1, NULL, NULL));
    o = SF_OWN(S, sf_add(o, oi));
  }
  sf_tensor *ov = SF_OWN(S, view_n(o, 3, s->B, s->L, s->D, 0));
  return sf_scope_end_keep(&S, SF_OWN(S, lin(s, ov, "blocks.%lld.cross_attn.o", i)));
}

/* FFN over row chunks: the [tokens, ffn_dim] hidden activations are the largest tensors of a forward,
 * and rows are independent, so chunking bounds peak memory without changing the math. Chunks are of
 * equal height (1560 rows: 3 x 520, not 3 x 512 + a 24-row tail whose GEMMs ran at a fifth of the
 * speed). When autograd records outside a checkpoint region every chunk's hidden activations are saved
 * for backward anyway, so one chunk: full-height GEMMs in forward and backward, no cat. */
enum { FFN_CHUNK = 512 };

static sf_tensor *ffn(fwd *s, int i, sf_tensor *g) {
  const int64_t L = g->shape[1];
  const sf_tensor *w1 = sf_wan_paramf(s->m, "blocks.%lld.ffn.0.weight", i);
  const bool saved = sf_grad_enabled() && !sf_checkpoint_active() && (g->requires_grad || (w1 && w1->requires_grad));
  int64_t n = saved ? 1 : (L + FFN_CHUNK / 2) / FFN_CHUNK;
  if (n < 1) n = 1;
  const int64_t csz = (L + n - 1) / n;
  sf_tensor **parts = calloc((size_t)n, sizeof(sf_tensor *));
  if (!parts) return sf_error("wan forward: out of memory"), NULL;
  sf_scope S = SF_SCOPE_INIT;
  for (int64_t k = 0; k < n && !S.failed; k++) {
    const int64_t r0 = k * csz, len = r0 + csz <= L ? csz : L - r0;
    sf_scope C = SF_SCOPE_INIT; /* per chunk: the chunk's hidden activations go at its end */
    sf_tensor *gc = SF_OWN(C, sf_narrow(g, 1, r0, len));
    sf_tensor *f1 = SF_OWN(C, lin(s, gc, "blocks.%lld.ffn.0", i));
    sf_tensor *f2 = SF_OWN(C, unary(SF_UN_GELU_TANH, f1));
    SF_DROP(C, f1); /* the hidden activations are the forward's largest tensors: one at a time beside the output */
    parts[k] = SF_OWN(S, sf_scope_end_keep(&C, SF_OWN(C, lin(s, f2, "blocks.%lld.ffn.2", i))));
  }
  sf_tensor *out = S.failed ? NULL : n == 1 ? parts[0] : SF_OWN(S, sf_cat(parts, (int)n, 1));
  free(parts);
  return sf_scope_end_keep(&S, out);
}

/* the residual updates x + y*gate and x + y: under autocast in f32 (upstream's f32 autocast region) */
static sf_tensor *gated_add(const fwd *s, sf_tensor *x, sf_tensor *y, sf_tensor *gate) {
  sf_scope S = SF_SCOPE_INIT;
  sf_tensor *xf = SF_OWN(S, island(s, x)), *yf = SF_OWN(S, island(s, y));
  return sf_scope_end_keep(&S, SF_OWN(S, sf_gated_add(xf, yf, gate)));
}

static sf_tensor *residual_add(const fwd *s, sf_tensor *x, sf_tensor *y) {
  sf_scope S = SF_SCOPE_INIT;
  sf_tensor *xf = SF_OWN(S, island(s, x)), *yf = SF_OWN(S, island(s, y));
  return sf_scope_end_keep(&S, SF_OWN(S, sf_add(xf, yf)));
}

/* modulate(norm(x), shift, scale): the adaLN input of the attention and the FFN */
static sf_tensor *norm_modulate(const fwd *s, sf_tensor *x, sf_tensor *shift, sf_tensor *scale) {
  sf_scope S = SF_SCOPE_INIT;
  sf_tensor *n = SF_OWN(S, layer_norm_plain(s, x));
  return sf_scope_end_keep(&S, SF_OWN(S, sf_modulate(n, shift, scale)));
}

/* x + gate * self_attn(modulate(norm1(x))) */
static sf_tensor *self_attention_half(fwd *s, int i, sf_tensor *x, sf_tensor *const *mj) {
  sf_scope S = SF_SCOPE_INIT;
  sf_tensor *h = SF_OWN(S, norm_modulate(s, x, mj[0], mj[1]));
  sf_tensor *y = SF_OWN(S, self_attention(s, i, h));
  return sf_scope_end_keep(&S, SF_OWN(S, gated_add(s, x, y, mj[2])));
}

/* x + cross_attn(norm3(x), context) */
static sf_tensor *cross_attention_half(fwd *s, int i, sf_tensor *x) {
  sf_scope S = SF_SCOPE_INIT;
  sf_tensor *ca = SF_OWN(S, cross_attention(s, i, x));
  return sf_scope_end_keep(&S, SF_OWN(S, residual_add(s, x, ca)));
}

/* x + gate * ffn(modulate(norm2(x))) */
static sf_tensor *ffn_half(fwd *s, int i, sf_tensor *x, sf_tensor *const *mj) {
  sf_scope S = SF_SCOPE_INIT;
  sf_tensor *g = SF_OWN(S, norm_modulate(s, x, mj[3], mj[4]));
  sf_tensor *f = SF_OWN(S, ffn(s, i, g));
  return sf_scope_end_keep(&S, SF_OWN(S, gated_add(s, x, f, mj[5])));
}

/* one DiT block (spec 1.5): the three residual halves, with the six modulation vectors of e0 + the block's
 * modulation parameter. Each half owns its intermediates, so they are gone before the next half starts. */
static sf_tensor *block(fwd *s, int i, sf_tensor *x) {
  sf_scope S = SF_SCOPE_INIT;
  sf_tensor *mod = SF_OWN(S, param_island(s, "blocks.%lld.modulation", i));
  sf_tensor *modv = SF_OWN(S, view_n(mod, 4, 1, 1, 6, s->D));
  sf_tensor *mm = SF_OWN(S, sf_add(modv, s->e0)), *mj[6];
  for (int j = 0; j < 6; j++) mj[j] = SF_OWN(S, sf_select(mm, 2, j));
  sf_tensor *x1 = SF_OWN(S, self_attention_half(s, i, x, mj));
  sf_tensor *x2 = SF_OWN(S, cross_attention_half(s, i, x1));
  /* the FFN's hidden activations make its half the block's peak: x1 would be one more [tokens, dim] there
   * (bench/bench_wan.sh measures peak memory; docs/architecture.md has the figures) */
  SF_DROP(S, x1);
  return sf_scope_end_keep(&S, SF_OWN(S, ffn_half(s, i, x2, mj)));
}

/* ---- per-block hooks (m->block_hook: FSDP's gather before a block, free after; wan.h) ---- */

static int call_hook(const sf_wan_model *m, int i, int phase, bool recompute) {
  return m->block_hook ? m->block_hook(m->block_hook_ud, i, phase, recompute) : 0;
}

/* the identity's backward: the hook (block ip[0], phase ip[1], recompute ip[2]), then the gradient as is */
static int bw_block_hook(sf_node *n, sf_tensor **go, sf_tensor **gi) {
  if (call_hook(n->ctx, (int)n->ip[0], (int)n->ip[1], n->ip[2] != 0)) return -1;
  gi[0] = go[0] ? sf_retain(go[0]) : NULL;
  return 0;
}

static void hook_ctx_free(void *m) { sf_wan_free(m); }

/* x itself, or (when the model has a hook and x is in a graph) an identity on x whose backward calls the
 * hook with `phase`: on a block's output it runs before any node of the block (the engine runs nodes in
 * reverse creation order), on its input after all of them */
static sf_tensor *hook_node(fwd *s, sf_tensor *x, int i, int phase, bool ck) {
  if (!s->m->block_hook || !sf_ag_should_record(&x, 1)) return sf_retain(x);
  const bool g = sf_set_grad_enabled(false);
  sf_tensor *out = sf_alias(x);
  sf_set_grad_enabled(g);
  if (!out) return NULL;
  sf_node *n = sf_node_begin("wan_block_hook", bw_block_hook, &x, 1);
  if (!n) { sf_release(out); return sf_error("wan forward: out of memory (block hook)"), NULL; }
  n->ip[0] = i, n->ip[1] = phase, n->ip[2] = ck;
  n->ctx = sf_wan_retain(s->m);
  n->free_ctx = hook_ctx_free;
  return sf_node_finish1(n, out);
}

/* block i with the hooks around it: gather before, free after; the backward hooks on its input and output */
static sf_tensor *block_checkpointed(fwd *s, int i, sf_tensor *x);
static sf_tensor *hooked_block(fwd *s, int i, sf_tensor *x, bool ck) {
  if (call_hook(s->m, i, SF_WAN_PRE_FORWARD, false)) return NULL;
  sf_scope S = SF_SCOPE_INIT;
  sf_tensor *xin = SF_OWN(S, hook_node(s, x, i, SF_WAN_POST_BACKWARD, ck));
  sf_tensor *y = SF_OWN(S, ck ? block_checkpointed(s, i, xin) : block(s, i, xin));
  if (call_hook(s->m, i, SF_WAN_POST_FORWARD, false)) S.failed = true; /* after a failed block too: FSDP frees */
  return sf_scope_end_keep(&S, SF_OWN(S, hook_node(s, y, i, SF_WAN_PRE_BACKWARD, ck)));
}

/* ---- checkpointed blocks: the region keeps its own copy of what block() reads, for the recomputation ---- */

typedef struct {
  fwd s;
  sf_wan_fwd_opts o;
  int i;
  sf_tensor *x;
} block_ckpt;

static int64_t *dup_ids(const int64_t *a, int64_t n) {
  if (!a) return NULL;
  int64_t *r = malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
  if (r) memcpy(r, a, sizeof(int64_t) * (size_t)n);
  return r;
}

static void block_ckpt_free(void *p) {
  block_ckpt *c = p;
  sf_release(c->x), sf_release(c->s.e0), sf_release(c->s.context);
  free(c->s.q_ids), free(c->s.self_k_ids), free(c->s.ctx_ids), free(c->s.kv_lo), free(c->s.kv_hi);
  sf_wan_free(c->s.m);
  free(c);
}

static int block_ckpt_run(void *p) {
  block_ckpt *c = p;
  if (call_hook(c->s.m, c->i, SF_WAN_PRE_FORWARD, true)) return -1;
  sf_tensor *y = block(&c->s, c->i, c->x);
  sf_release(y);
  if (call_hook(c->s.m, c->i, SF_WAN_POST_FORWARD, true)) return -1;
  return y ? 0 : -1;
}

static sf_tensor *block_checkpointed(fwd *s, int i, sf_tensor *x) {
  block_ckpt *c = calloc(1, sizeof *c);
  if (!c) return sf_error("wan forward: out of memory"), NULL;
  c->s = *s;
  c->o = *s->o;
  c->s.o = &c->o;
  c->i = i;
  c->x = sf_retain(x);
  sf_retain(c->s.e0);
  if (c->s.context) sf_retain(c->s.context);
  sf_wan_retain(c->s.m);
  c->s.q_ids = dup_ids(s->q_ids, s->F), c->s.self_k_ids = dup_ids(s->self_k_ids, s->F);
  c->s.ctx_ids = dup_ids(s->ctx_ids, s->n_ctx), c->s.kv_lo = dup_ids(s->kv_lo, s->F), c->s.kv_hi = dup_ids(s->kv_hi, s->F);
  if (!c->s.q_ids || !c->s.self_k_ids || !c->s.ctx_ids || !c->s.kv_lo || !c->s.kv_hi) {
    block_ckpt_free(c);
    return sf_error("wan forward: out of memory"), NULL;
  }
  sf_ckpt_region *r = sf_checkpoint_begin(block_ckpt_run, c, block_ckpt_free);
  if (!r) return block_ckpt_free(c), NULL;
  sf_tensor *y = block(s, i, x);
  sf_checkpoint_end(r);
  return y;
}

static int kv_prepare(fwd *s) {
  sf_wan_kv *kv = s->o->kv;
  const sf_wan_config *c = &s->m->cfg;
  if (kv->num_layers != c->num_layers || kv->heads != s->N || kv->head_dim != s->d)
    return sf_error("wan kv cache was made for %d layers x %lld heads x %lld head dim, the model has %lld x %lld x %lld",
                    kv->num_layers, (long long)kv->heads, (long long)kv->head_dim, (long long)c->num_layers, (long long)s->N,
                    (long long)s->d);
  if (kv->batch != s->B) return sf_error("wan kv cache holds batch %lld, the input has batch %lld", (long long)kv->batch, (long long)s->B);
  if (!sf_device_eq(kv->device, s->m->device) || kv->dtype != s->m->dtype)
    return sf_error("wan kv cache dtype/device differ from the model's (make the cache after m:to())");
  if (kv->S && kv->S != s->S)
    return sf_error("wan kv cache holds %lld tokens per frame, the input has %lld (reset the cache or make a new one)", (long long)kv->S,
                    (long long)s->S);
  if (s->o->kv_plan && sf_wan_kv_check_plan(kv, s->F, s->o->kv_plan)) return -1;
  if (!kv->S) {
    kv->S = s->S;
    int64_t shp[4] = {kv->batch, kv->capacity_frames * s->S, kv->heads, kv->head_dim};
    for (int i = 0; i < kv->num_layers; i++) {
      sf_release(kv->k[i]), sf_release(kv->v[i]);
      kv->k[i] = sf_zeros(4, shp, kv->dtype, kv->device);
      kv->v[i] = sf_zeros(4, shp, kv->dtype, kv->device);
      if (!kv->k[i] || !kv->v[i]) return -1;
    }
  }
  return 0;
}

static sf_tensor *forward_impl(sf_wan_model *m, sf_tensor *x, sf_tensor *t, sf_tensor *ctx, const sf_wan_fwd_opts *opts);

/* the hooks' block -1 is everything outside the blocks (embeddings, head): around the whole call */
sf_tensor *sf_wan_forward(sf_wan_model *m, sf_tensor *x, sf_tensor *t, sf_tensor *ctx, const sf_wan_fwd_opts *opts) {
  if (!m->block_hook) return forward_impl(m, x, t, ctx, opts);
  sf_wan_retain(m); /* the hook may drop the last other reference */
  sf_tensor *y = NULL;
  if (!call_hook(m, -1, SF_WAN_PRE_FORWARD, false)) {
    y = forward_impl(m, x, t, ctx, opts);
    if (call_hook(m, -1, SF_WAN_POST_FORWARD, false)) sf_release(y), y = NULL;
  }
  sf_wan_free(m);
  return y;
}

static sf_tensor *forward_impl(sf_wan_model *m, sf_tensor *x, sf_tensor *t, sf_tensor *ctx, const sf_wan_fwd_opts *opts) {
  sf_wan_fwd_opts dflt, eff;
  if (!opts) sf_wan_fwd_opts_init(&dflt), opts = &dflt;
  if (opts->checkpoint && opts->xcache && sf_grad_enabled()) {
    /* CausalWanModel's checkpointed grad branch does not pass crossattn_cache: the blocks recompute the
     * cross-attention K/V from the text context, with gradient (text_embedding, cross_attn.k/v/norm_k
     * get theirs), and leave the cache as it is */
    eff = *opts, eff.xcache = NULL, opts = &eff;
  }
  const sf_wan_config *c = &m->cfg;
  char b1[64], b2[64];
  fwd s;
  memset(&s, 0, sizeof s);
  s.m = m, s.o = opts;
  s.ac = opts->autocast >= 0 ? (sf_dtype)opts->autocast : m->autocast;
  if (s.ac != SF_F32 && s.ac != SF_BF16 && s.ac != SF_F16)
    return sf_error("wan forward: autocast must be bf16, f16 or off, got %s", sf_dtype_name(s.ac)), NULL;
  if (!x || !t || !ctx) return sf_error("wan forward: x, t and context are required"), NULL;
  if (x->ndim != 5) return sf_error("wan forward: x must be [B, C, F, H, W], got %s", sf_shape_str(x, b1, sizeof b1)), NULL;
  const bool i2v = !strcmp(c->model_type, "i2v");
  if (opts->y && (opts->y->ndim != 5 || opts->y->shape[0] != x->shape[0] || opts->y->shape[2] != x->shape[2] ||
                  opts->y->shape[3] != x->shape[3] || opts->y->shape[4] != x->shape[4]))
    return sf_error("wan forward: y %s must match x %s in B, F, H, W", sf_shape_str(opts->y, b1, sizeof b1), sf_shape_str(x, b2, sizeof b2)), NULL;
  sf_scope S = SF_SCOPE_INIT;
  sf_tensor *xin = SF_OWN(S, to_model(&s, x)), *tt = t, *e = NULL, *res = NULL;
  if (opts->y) {
    sf_tensor *parts[2] = {xin, SF_OWN(S, to_model(&s, opts->y))};
    xin = SF_OWN(S, sf_cat(parts, 2, 1));
  }
  if (S.failed) goto fail;
  s.B = xin->shape[0], s.F = xin->shape[2];
  if (xin->shape[1] != c->in_dim)
    { sf_error("wan forward: the model takes %lld input channels (x%s), got %lld", (long long)c->in_dim, i2v ? " + y" : "", (long long)xin->shape[1]); goto fail; }
  if (s.B < 1 || s.F < 1 || xin->shape[3] < 1 || xin->shape[4] < 1) /* zero sizes would divide by zero below */
    { sf_error("wan forward: x must have B, F, H, W >= 1, got %s", sf_shape_str(x, b1, sizeof b1)); goto fail; }
  if (xin->shape[3] % 2 || xin->shape[4] % 2) { sf_error("wan forward: latent H, W must be even (1x2x2 patches), got %s", sf_shape_str(x, b1, sizeof b1)); goto fail; }
  s.Hp = xin->shape[3] / 2, s.Wp = xin->shape[4] / 2, s.S = s.Hp * s.Wp, s.L = s.F * s.S;
  s.D = c->dim, s.N = c->num_heads, s.d = c->dim / c->num_heads;
  s.f0 = opts->kv ? opts->start_frame : 0;
  if (s.f0 < 0) { sf_error("wan forward: negative current_start_frame"); goto fail; }
  if (s.f0 + s.F > 1024 || s.Hp > 1024 || s.Wp > 1024) { sf_error("wan forward: RoPE positions are limited to 1024 per axis (frames %lld..%lld)", (long long)s.f0, (long long)(s.f0 + s.F - 1)); goto fail; }
  s.mode = opts->kv ? MODE_KV : (c->causal ? MODE_BLOCK : MODE_FULL);
  if (opts->kv && !c->causal) { sf_error("wan forward: kv_cache needs a causal model (load with causal=true)"); goto fail; }
  for (int j = 0; j < opts->n_features; j++) {
    if (opts->features[j] < 0 || opts->features[j] >= c->num_layers)
      { sf_error("wan forward: features: block %d does not exist (blocks are 0..%d)", opts->features[j], (int)c->num_layers - 1); goto fail; }
    if (opts->kv || opts->clean_x) { sf_error("wan forward: features (classify mode) are not available with a KV cache or teacher forcing"); goto fail; }
  }
  /* timesteps */
  if (t->ndim == 1 && t->shape[0] == s.B) s.Fe = 1;
  else if (t->ndim == 2 && t->shape[0] == s.B && t->shape[1] == s.F) s.Fe = s.F;
  else { sf_error("wan forward: t must be [B] or [B, F] = [%lld] or [%lld, %lld], got %s", (long long)s.B, (long long)s.B, (long long)s.F, sf_shape_str(t, b1, sizeof b1)); goto fail; }
  if (opts->clean_x) { /* teacher forcing: [clean | noisy] as 2F frames from here on (Fh = F) */
    sf_tensor *cx = opts->clean_x, *at = opts->aug_t;
    if (!c->causal || opts->kv) { sf_error("wan forward: clean_x (teacher forcing) needs a causal model and no kv_cache"); goto fail; }
    if (i2v || opts->y) { sf_error("wan forward: clean_x (teacher forcing) with an i2v model is not supported (the original concatenates y to x only)"); goto fail; }
    if (c->independent_first_frame) { sf_error("wan forward: clean_x (teacher forcing) with independent_first_frame is not implemented (the original raises NotImplementedError)"); goto fail; }
    if (s.F % c->num_frame_per_block) { sf_error("wan forward: clean_x (teacher forcing) needs frames (%lld) to be a multiple of num_frame_per_block (%lld): the original's mask lets a partial last block see the other half", (long long)s.F, (long long)c->num_frame_per_block); goto fail; }
    if (cx->ndim != 5 || !sf_same_shape(cx, x)) { sf_error("wan forward: clean_x %s must have x's shape %s", sf_shape_str(cx, b1, sizeof b1), sf_shape_str(x, b2, sizeof b2)); goto fail; }
    if (s.Fe != s.F) { sf_error("wan forward: clean_x (teacher forcing) needs per-frame timesteps t [B, F], got %s", sf_shape_str(t, b1, sizeof b1)); goto fail; }
    if (at && (at->ndim != 2 || at->shape[0] != s.B || at->shape[1] != s.F)) { sf_error("wan forward: aug_t must be [B, F] = [%lld, %lld], got %s", (long long)s.B, (long long)s.F, sf_shape_str(at, b1, sizeof b1)); goto fail; }
    /* timesteps [aug_t (zeros by default) | t] and latents [clean | x] */
    sf_tensor *t64 = SF_OWN(S, sf_cast(t, SF_F64)), *a64 = at ? SF_OWN(S, sf_cast(at, SF_F64)) : NULL;
    sf_tensor *tp[2] = {at ? SF_OWN(S, sf_to_device(a64, sf_cpu())) : SF_OWN(S, sf_zeros(2, t->shape, SF_F64, sf_cpu())),
                        SF_OWN(S, sf_to_device(t64, sf_cpu()))};
    tt = SF_OWN(S, sf_cat(tp, 2, 1));
    sf_tensor *xp[2] = {SF_OWN(S, to_model(&s, cx)), xin};
    xin = SF_OWN(S, sf_cat(xp, 2, 2));
    if (S.failed) goto fail;
    s.tf = true, s.Fh = s.F;
    s.F *= 2, s.L *= 2, s.Fe = s.F;
  }
  /* context */
  if (ctx->ndim != 3 || ctx->shape[0] != s.B || ctx->shape[2] != c->text_dim || ctx->shape[1] > c->text_len || ctx->shape[1] < 1)
    { sf_error("wan forward: context must be [B=%lld, L<=%lld, %lld], got %s", (long long)s.B, (long long)c->text_len, (long long)c->text_dim, sf_shape_str(ctx, b1, sizeof b1)); goto fail; }
  if (i2v) {
    sf_tensor *cf = opts->clip_fea;
    if (!cf) { sf_error("wan forward: an i2v model needs clip_fea [B, n_img, %lld]", (long long)c->clip_dim); goto fail; }
    if (cf->ndim != 3 || cf->shape[0] != s.B || cf->shape[2] != c->clip_dim || cf->shape[1] < 1)
      { sf_error("wan forward: clip_fea must be [B=%lld, n_img, %lld], got %s", (long long)s.B, (long long)c->clip_dim, sf_shape_str(cf, b1, sizeof b1)); goto fail; }
    s.n_img = cf->shape[1];
  }
  s.n_ctx = s.n_img + c->text_len;
  /* ids and block-causal visibility */
  s.q_ids = malloc(sizeof(int64_t) * (size_t)s.F); /* under teacher forcing 2F entries: half f and f + Fh alike */
  s.self_k_ids = malloc(sizeof(int64_t) * (size_t)s.F);
  s.ctx_ids = malloc(sizeof(int64_t) * (size_t)s.n_ctx);
  s.kv_lo = malloc(sizeof(int64_t) * (size_t)s.F);
  s.kv_hi = malloc(sizeof(int64_t) * (size_t)s.F);
  if (!s.q_ids || !s.self_k_ids || !s.ctx_ids || !s.kv_lo || !s.kv_hi) { sf_error("wan forward: out of memory"); goto fail; }
  for (int64_t ff = 0; ff < s.F; ff++) {
    const int64_t f = s.tf ? ff % s.Fh : ff, Fv = s.tf ? s.Fh : s.F;
    s.q_ids[ff] = s.f0 + f, s.self_k_ids[ff] = f;
    const int64_t nb = c->num_frame_per_block;
    int64_t end = c->independent_first_frame ? (f == 0 ? 1 : 1 + ((f - 1) / nb + 1) * nb) : (f / nb + 1) * nb;
    if (end > Fv) end = Fv;
    /* teacher forcing: the original's mask has no local window */
    int64_t lo = c->local_attn_size == -1 || s.tf ? 0 : end - c->local_attn_size;
    if (lo < 0) lo = 0;
    s.kv_lo[ff] = lo * s.S, s.kv_hi[ff] = end * s.S;
  }
  for (int64_t j = 0; j < s.n_ctx; j++) s.ctx_ids[j] = j;
  if (opts->kv && kv_prepare(&s)) goto fail;
  if (opts->xcache && opts->xcache->num_layers != c->num_layers) { sf_error("wan forward: crossattn_cache was made for another model"); goto fail; }
  /* patch embedding (a conv, low precision under autocast): [B,C,F,H,W] -> [B,F,H',W',C,2,2] -> linear over C*4 */
  int64_t s7[7] = {s.B, c->in_dim, s.F, s.Hp, 2, s.Wp, 2}, s3[3] = {s.B, s.L, c->in_dim * 4}, s2[2] = {s.D, c->in_dim * 4};
  int perm[7] = {0, 2, 3, 5, 1, 4, 6};
  const sf_dtype pdt = autocast(&s) ? s.ac : AS_IS;
  sf_tensor *xc = SF_OWN(S, sf_contiguous(xin));
  sf_tensor *xv = SF_OWN(S, sf_view(xc, 7, s7));
  sf_tensor *xp = SF_OWN(S, sf_permute(xv, perm));
  sf_tensor *xpc = SF_OWN(S, sf_contiguous(xp));
  sf_tensor *pv = SF_OWN(S, sf_view(xpc, 3, s3));
  sf_tensor *pw = SF_OWN(S, sf_retain(sf_wan_paramf(m, "patch_embedding.weight", 0)));
  pw = SF_OWN(S, sf_reshape(pw, 2, s2));
  sf_tensor *pb = SF_OWN(S, sf_retain(sf_wan_paramf(m, "patch_embedding.bias", 0)));
  sf_tensor *pvc = SF_OWN(S, as_dt(pv, pdt)), *pwc = SF_OWN(S, as_dt(pw, pvc ? pvc->dtype : pdt)), *pbc = SF_OWN(S, as_dt(pb, pvc ? pvc->dtype : pdt));
  sf_tensor *tok = SF_OWN(S, sf_linear(pvc, pwc, pbc));
  if (!S.failed) s.e0 = time_embeddings(&s, tt, &e);
  SF_OWN(S, s.e0), SF_OWN(S, e);
  bool need_ctx = !opts->xcache;
  for (int i = 0; i < c->num_layers && !need_ctx; i++) need_ctx = !opts->xcache->is_init[i];
  if (need_ctx && !S.failed) SF_OWN(S, s.context = context_embedding(&s, ctx, opts->clip_fea));
  for (int i = 0; i < c->num_layers && !S.failed; i++) {
    if (sf_interrupted()) { sf_error("wan forward: interrupted"); goto fail; }
    /* the KV path writes the cache as it goes, so it cannot be re-run: checkpoint only without kv */
    bool ck = opts->checkpoint && !opts->kv && sf_grad_enabled();
    sf_tensor *nx = SF_OWN(S, m->block_hook ? hooked_block(&s, i, tok, ck) : ck ? block_checkpointed(&s, i, tok) : block(&s, i, tok));
    SF_DROP(S, tok); /* the residual stream: one layer's input and output, not every layer's */
    tok = nx;
    for (int j = 0; j < opts->n_features && !S.failed; j++)
      if (opts->features[j] == i) opts->feat_out[j] = sf_retain(tok);
  }
  if (opts->e_out && !S.failed && !(*opts->e_out = view_n(e, 3, s.B, s.Fe, s.D, 0))) S.failed = true;
  if (s.tf && !S.failed) { /* the head reads the noisy half with x's time embedding */
    sf_tensor *nt = SF_OWN(S, sf_narrow(tok, 1, s.L / 2, s.L / 2));
    sf_tensor *ef = SF_OWN(S, view_n(e, 3, s.B, s.Fe, s.D, 0));
    sf_tensor *en = SF_OWN(S, sf_narrow(ef, 1, s.Fh, s.Fh));
    tok = SF_OWN(S, sf_contiguous(nt)), e = SF_OWN(S, sf_contiguous(en));
    s.F = s.Fh, s.L /= 2, s.Fe = s.Fh;
  }
  /* head */
  sf_tensor *hmod = SF_OWN(S, param_island(&s, "head.modulation", 0));
  sf_tensor *hmv = SF_OWN(S, view_n(hmod, 4, 1, 1, 2, s.D));
  sf_tensor *ev = SF_OWN(S, view_n(e, 4, s.B, s.Fe, 1, s.D));
  sf_tensor *hm = SF_OWN(S, sf_add(hmv, ev));
  sf_tensor *sh = SF_OWN(S, sf_select(hm, 2, 0)), *sc = SF_OWN(S, sf_select(hm, 2, 1));
  sf_tensor *hn = SF_OWN(S, layer_norm_plain(&s, tok));
  sf_tensor *hh = SF_OWN(S, sf_modulate(hn, sh, sc));
  sf_tensor *ho = SF_OWN(S, lin_f32(&s, hh, "head.head", 0));
  /* unpatchify */
  int64_t o7[7] = {s.B, s.F, s.Hp, s.Wp, 2, 2, c->out_dim}, o5[5] = {s.B, c->out_dim, s.F, 2 * s.Hp, 2 * s.Wp};
  int operm[7] = {0, 6, 1, 2, 4, 3, 5};
  sf_tensor *hv = SF_OWN(S, sf_view(ho, 7, o7));
  sf_tensor *hp = SF_OWN(S, sf_permute(hv, operm));
  sf_tensor *hc = SF_OWN(S, sf_contiguous(hp));
  sf_tensor *out = SF_OWN(S, sf_view(hc, 5, o5));
  res = SF_OWN(S, sf_cast(out, SF_F32));
fail:
  free(s.q_ids), free(s.self_k_ids), free(s.ctx_ids), free(s.kv_lo), free(s.kv_hi);
  return sf_scope_end_keep(&S, res);
}
