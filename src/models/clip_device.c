/* clip_device.c — the CLIP visual tower with the public tensor ops (ops.h, nn.h), so it runs on every
 * backend (the CUDA backend and its emu twin); preprocessing and patch extraction stay on the cpu. */
#include <math.h>
#include <stdlib.h>

#include "core/error.h"
#include "core/nn.h"
#include "core/ops.h"
#include "models/enc_device.h"
#include "models/clip_internal.h"

/* bf16 compute (m->lp == 1): weights as bf16 values, every op output rounded to bf16 (R), sums in f32, as the
 * CPU path (clip_vision.c) */
static int g_lp; /* the compute dtype of the forward running now (not reentrant) */
#define R(t) sf_enc_round((t), g_lp)

/* y = x W^T + b with the weights moved to dev; b may be NULL */
static sf_tensor *lin(sf_tensor *x, sf_tensor *w, sf_tensor *b, sf_device dev) {
  sf_tensor *wd = R(sf_enc_dev_f32(w, dev)), *bd = b ? R(sf_enc_dev_f32(b, dev)) : NULL;
  sf_tensor *y = (wd && (!b || bd)) ? sf_linear(x, wd, bd) : NULL;
  sf_release(wd), sf_release(bd);
  return R(y);
}

static sf_tensor *ln(sf_tensor *x, sf_tensor *w, sf_tensor *b, double eps, sf_device dev) {
  sf_tensor *wd = R(sf_enc_dev_f32(w, dev)), *bd = R(sf_enc_dev_f32(b, dev));
  sf_tensor *y = (wd && bd) ? sf_layer_norm(x, wd, bd, eps) : NULL;
  sf_release(wd), sf_release(bd);
  return R(y);
}

/* *x = round(*x + y), stealing y */
static int add_into(sf_tensor **x, sf_tensor *y) {
  if (sf_enc_add_into(x, y)) return -1;
  return (*x = R(*x)) ? 0 : -1;
}

static int block_device(const sf_clip_config *c, sf_clip_block *bk, sf_tensor **x, sf_device dev) {
  int64_t B = (*x)->shape[0], L = (*x)->shape[1], D = c->dim, H = c->num_heads, d = D / H;
  int rc = -1;
  sf_tensor *h = NULL, *qkv = NULL, *q5 = NULL, *q = NULL, *k = NULL, *v = NULL, *a = NULL, *av = NULL, *f = NULL,
            *g = NULL;
  int64_t s5[5] = {B, L, 3, H, d}, s3[3] = {B, L, D};
  if (!(h = ln(*x, bk->n1w, bk->n1b, c->eps, dev)) || !(qkv = lin(h, bk->qkv_w, bk->qkv_b, dev))) goto done;
  if (!(q5 = sf_view(qkv, 5, s5)) || !(q = sf_select(q5, 2, 0)) || !(k = sf_select(q5, 2, 1)) ||
      !(v = sf_select(q5, 2, 2)))
    goto done;
  if (!(a = R(sf_attention(q, k, v, NULL, NULL))) || !(av = sf_view(a, 3, s3))) goto done; /* scale 1/sqrt(d) */
  if (add_into(x, lin(av, bk->proj_w, bk->proj_b, dev))) goto done;
  sf_release(h);
  if (!(h = ln(*x, bk->n2w, bk->n2b, c->eps, dev)) || !(f = lin(h, bk->fc1_w, bk->fc1_b, dev)) ||
      !(g = R(sf_unary(SF_UN_GELU, f, 0, 0))))
    goto done;
  if (add_into(x, lin(g, bk->fc2_w, bk->fc2_b, dev))) goto done;
  rc = 0;
done:
  sf_release(h), sf_release(qkv), sf_release(q5), sf_release(q), sf_release(k), sf_release(v), sf_release(a);
  sf_release(av), sf_release(f), sf_release(g);
  return rc;
}

sf_tensor *sf_clip_encode_device(sf_clip *m, const float *imgs, int64_t B, int H, int W, sf_device dev) {
  const sf_clip_config *c = &m->cfg;
  int64_t S = c->image_size, N = c->grid * c->grid, K = 3 * c->patch * c->patch, D = c->dim;
  int64_t pshape[3] = {B, N, K};
  if (m->lp == 2) return sf_error("CLIP: dtype f16 runs on the cpu path only; f32 or bf16 on a device"), NULL;
  g_lp = m->lp;
  sf_tensor *pt = sf_empty(3, pshape, SF_F32, sf_cpu());
  float *pix = malloc(sizeof(float) * 3 * S * S);
  if (!pt || !pix) { sf_release(pt), free(pix); if (pt) sf_error("CLIP: out of memory"); return NULL; }
  for (int64_t b = 0; b < B; b++) {
    sf_clip_preprocess(m, imgs + b * 3 * (int64_t)H * W, H, W, pix);
    sf_clip_patches(m, pix, (float *)sf_data_ptr(pt) + b * N * K);
  }
  free(pix);
  sf_tensor *pd = R(sf_to_device(pt, dev)), *x = NULL, *tok = NULL, *cls = NULL, *clsb = NULL, *pos = NULL;
  sf_release(pt);
  int64_t cshape[3] = {1, 1, D}, eshape[3] = {B, 1, D}, posshape[3] = {1, N + 1, D};
  int64_t wshape[2] = {D, K};
  sf_tensor *pw = sf_reshape(m->patch_w, 2, wshape); /* the conv weight [D, 3, P, P] as a linear [D, K] */
  if (!pd || !pw || !(tok = lin(pd, pw, m->patch_b, dev))) { sf_release(pw); goto fail; }
  sf_release(pw);
  sf_tensor *cd = R(sf_enc_dev_f32(m->cls, dev));
  sf_tensor *cv = cd ? sf_view(cd, 3, cshape) : NULL;
  sf_release(cd);
  if (!cv || !(clsb = sf_expand(cv, 3, eshape))) { sf_release(cv); goto fail; }
  sf_release(cv);
  sf_tensor *parts[2] = {clsb, tok};
  sf_tensor *cat = sf_cat(parts, 2, 1);
  sf_tensor *pdv = R(sf_enc_dev_f32(m->pos, dev));
  pos = pdv ? sf_view(pdv, 3, posshape) : NULL;
  sf_release(pdv);
  if (!cat || !pos || !(x = R(sf_add(cat, pos)))) { sf_release(cat); goto fail; }
  sf_release(cat);
  if (c->pre_norm) {
    sf_tensor *y = ln(x, m->pre_w, m->pre_b, c->eps, dev);
    sf_release(x);
    if (!(x = y)) goto fail;
  }
  for (int64_t li = 0; li < c->run_layers; li++)
    if (block_device(c, &m->blocks[li], &x, dev)) goto fail;
  sf_release(pd), sf_release(tok), sf_release(cls), sf_release(clsb), sf_release(pos);
  return x;
fail:
  sf_release(pd), sf_release(tok), sf_release(cls), sf_release(clsb), sf_release(pos), sf_release(x);
  return NULL;
}
