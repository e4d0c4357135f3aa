/* clip_forward.c — the CLIP ViT visual tower (XLM-RoBERTa CLIP ViT-H/14 in Wan), one structure over the
 * backend's tensor ops (ops.h, nn.h) for every device: patch embedding, class token and positions,
 * pre-norm, pre-LN blocks with erf GELU, output before the last block. Preprocessing (bicubic resize,
 * normalisation) and patch extraction stay on the cpu (clip_vision.c).
 *
 * Compute dtypes (m->lp): f32; f16 (Wan's clip_dtype: fp16 weights under fp16 autocast) or bf16: every
 * linear and the patch conv take dtype operands, sum in f32 and round once (bias included); LayerNorm runs
 * in f32 on the dtype values and is cast back; the attention is one fused op (f32 inside, one rounding);
 * GELU and the residual adds round their outputs. */
#include <math.h>
#include <stdlib.h>

#include "core/backend.h"
#include "core/error.h"
#include "core/scope.h"
#include "ops/nn.h"
#include "ops/ops.h"
#include "models/compute_dtype.h"
#include "models/clip_internal.h"

typedef struct {
  sf_device dev;
  int lp; /* 0 f32, 1 bf16, 2 f16 */
} clip_run;

/* the run's compute dtype (models/compute_dtype.h): t rounded, kept in f32 (steals t); a weight on the device */
static sf_tensor *rnd(const clip_run *r, sf_tensor *t) { return sf_compute_round(r->lp, t); }
static sf_tensor *weight(const clip_run *r, sf_tensor *w) { return sf_compute_weight(r->dev, r->lp, w); }

/* y = x W^T + b; b may be NULL */
static sf_tensor *lin(const clip_run *r, sf_tensor *x, sf_tensor *w, sf_tensor *b) {
  sf_scope S = SF_SCOPE_INIT;
  sf_tensor *wd = SF_OWN(S, weight(r, w)), *bd = b ? SF_OWN(S, weight(r, b)) : NULL;
  return sf_scope_end_keep(&S, SF_OWN(S, rnd(r, sf_linear(x, wd, bd))));
}

static sf_tensor *ln(const clip_run *r, sf_tensor *x, sf_tensor *w, sf_tensor *b, double eps) {
  sf_scope S = SF_SCOPE_INIT;
  sf_tensor *wd = SF_OWN(S, weight(r, w)), *bd = SF_OWN(S, weight(r, b));
  return sf_scope_end_keep(&S, SF_OWN(S, rnd(r, sf_layer_norm(x, wd, bd, eps))));
}

static sf_tensor *block(const clip_run *r, const sf_clip_config *c, const sf_clip_block *bk, sf_tensor *x) {
  const int64_t B = x->shape[0], L = x->shape[1], D = c->dim, H = c->num_heads;
  int64_t s5[5] = {B, L, 3, H, D / H}, s3[3] = {B, L, D};
  sf_scope S = SF_SCOPE_INIT;
  sf_tensor *h = SF_OWN(S, ln(r, x, bk->n1w, bk->n1b, c->eps));
  sf_tensor *qkv = SF_OWN(S, lin(r, h, bk->qkv_w, bk->qkv_b));
  sf_tensor *q5 = SF_OWN(S, sf_view(qkv, 5, s5));
  sf_tensor *q = SF_OWN(S, sf_select(q5, 2, 0)), *k = SF_OWN(S, sf_select(q5, 2, 1)), *v = SF_OWN(S, sf_select(q5, 2, 2));
  sf_tensor *a = SF_OWN(S, rnd(r, sf_attention(q, k, v, NULL, NULL))); /* scale 1/sqrt(d) */
  sf_tensor *av = SF_OWN(S, sf_view(a, 3, s3));
  sf_tensor *p = SF_OWN(S, lin(r, av, bk->proj_w, bk->proj_b));
  sf_tensor *x1 = SF_OWN(S, rnd(r, sf_add(x, p)));
  sf_tensor *h2 = SF_OWN(S, ln(r, x1, bk->n2w, bk->n2b, c->eps));
  sf_tensor *f = SF_OWN(S, lin(r, h2, bk->fc1_w, bk->fc1_b));
  sf_tensor *g = SF_OWN(S, rnd(r, sf_unary(SF_UN_GELU, f, 0, 0)));
  sf_tensor *y = SF_OWN(S, lin(r, g, bk->fc2_w, bk->fc2_b));
  return sf_scope_end_keep(&S, SF_OWN(S, rnd(r, sf_add(x1, y))));
}

sf_tensor *sf_clip_forward(sf_clip *m, const float *imgs, int64_t B, int H, int W, sf_device dev) {
  const sf_clip_config *c = &m->cfg;
  const int64_t S_ = c->image_size, N = c->grid * c->grid, K = 3 * c->patch * c->patch, D = c->dim;
  int64_t pshape[3] = {B, N, K}, wshape[2] = {D, K}, cshape[3] = {1, 1, D}, eshape[3] = {B, 1, D}, posshape[3] = {1, N + 1, D};
  if (!sf_backend_for(dev)) return NULL;
  const clip_run r = {dev, m->lp};
  sf_scope S = SF_SCOPE_INIT;
  sf_tensor *pt = SF_OWN(S, sf_empty(3, pshape, SF_F32, sf_cpu()));
  float *pix = S.failed ? NULL : malloc(sizeof(float) * 3 * S_ * S_);
  if (!S.failed && !pix) {
    sf_scope_end(&S);
    return sf_error("CLIP: out of memory"), NULL;
  }
  for (int64_t b = 0; b < B && pix; b++) {
    sf_clip_preprocess(m, imgs + b * 3 * (int64_t)H * W, H, W, pix);
    sf_clip_patches(m, pix, (float *)sf_data_ptr(pt) + b * N * K);
  }
  free(pix);
  sf_tensor *pd = SF_OWN(S, rnd(&r, sf_to_device(pt, dev))); /* autocast casts the f32 pixels to the dtype */
  sf_tensor *pw = SF_OWN(S, sf_reshape(m->patch_w, 2, wshape)); /* the conv weight [D, 3, P, P] as a linear [D, K] */
  sf_tensor *tok = SF_OWN(S, lin(&r, pd, pw, m->patch_b));
  sf_tensor *cd = SF_OWN(S, weight(&r, m->cls));
  sf_tensor *cv = SF_OWN(S, sf_view(cd, 3, cshape));
  sf_tensor *parts[2] = {SF_OWN(S, sf_expand(cv, 3, eshape)), tok};
  sf_tensor *cat = SF_OWN(S, sf_cat(parts, 2, 1));
  sf_tensor *pdv = SF_OWN(S, weight(&r, m->pos));
  sf_tensor *pos = SF_OWN(S, sf_view(pdv, 3, posshape));
  sf_tensor *x = SF_OWN(S, rnd(&r, sf_add(cat, pos)));
  if (c->pre_norm) x = SF_OWN(S, ln(&r, x, m->pre_w, m->pre_b, c->eps));
  for (int64_t li = 0; li < c->run_layers && !S.failed; li++) {
    if (sf_interrupted()) {
      sf_error("CLIP: interrupted");
      return sf_scope_end(&S), NULL;
    }
    sf_tensor *y = SF_OWN(S, block(&r, c, &m->blocks[li], x));
    SF_DROP(S, x); /* the residual stream: one layer's input and output */
    x = y;
  }
  return sf_scope_end_keep(&S, x);
}
