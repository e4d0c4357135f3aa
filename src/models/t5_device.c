/* t5_device.c — the umT5 encoder forward written with the public tensor ops (ops.h, nn.h), so it runs on
 * every backend (the CUDA backend and its emu twin); the CPU path in t5_encoder.c stays the fast one. */
#include <float.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/half.h"
#include "core/nn.h"
#include "core/ops.h"
#include "models/enc_device.h"
#include "models/t5_internal.h"

/* With bf16 compute (m->lp == 1, the model after .to(bfloat16)) weights are bf16 values and every op's
 * output is rounded to bf16 (R), sums in f32, as the CPU path (t5_encoder.c) and the reference's kernels. */
static int g_lp; /* the compute dtype of the forward running now (the device forward is not reentrant) */
#define R(t) sf_enc_round((t), g_lp)

static sf_tensor *lin(sf_tensor *x, sf_tensor *w, sf_device dev) {
  sf_tensor *wd = R(sf_enc_dev_f32(w, dev));
  sf_tensor *y = wd ? sf_linear(x, wd, NULL) : NULL;
  sf_release(wd);
  return R(y);
}

/* T5LayerNorm; in bf16 as the reference: x·rsqrt(mean(x²)+eps) in f32, rounded, · weight, rounded */
static sf_tensor *rms(sf_tensor *x, sf_tensor *w, float eps, sf_device dev) {
  sf_tensor *wd = R(sf_enc_dev_f32(w, dev));
  if (!wd) return NULL;
  if (g_lp != 1) {
    sf_tensor *y = sf_rms_norm(x, wd, eps);
    sf_release(wd);
    return y;
  }
  int64_t n = x->shape[x->ndim - 1];
  sf_tensor *ones = sf_full(1, &n, 1.0, SF_F32, dev);
  sf_tensor *h = ones ? R(sf_rms_norm(x, ones, eps)) : NULL;
  sf_tensor *y = h ? R(sf_mul(h, wd)) : NULL;
  sf_release(ones), sf_release(h), sf_release(wd);
  return y;
}

/* Wan's GELU module; in bf16 op by op, each output rounded (x³, 0.044715·, x+, √(2/π)·, tanh, 1+, 0.5·x, product) */
static sf_tensor *gelu(sf_tensor *x) {
  if (g_lp != 1) return sf_unary(SF_UN_GELU_TANH, x, 0, 0);
  sf_tensor *x2 = sf_mul(x, x), *p = x2 ? R(sf_mul(x2, x)) : NULL;
  sf_tensor *a = p ? R(sf_binary_scalar(SF_BIN_MUL, p, 0.044715f, false)) : NULL;
  sf_tensor *b = a ? R(sf_add(x, a)) : NULL;
  sf_tensor *c = b ? R(sf_binary_scalar(SF_BIN_MUL, b, 0.7978845608028654f, false)) : NULL;
  sf_tensor *t = c ? R(sf_unary(SF_UN_TANH, c, 0, 0)) : NULL;
  sf_tensor *u = t ? R(sf_binary_scalar(SF_BIN_ADD, t, 1.0, false)) : NULL;
  sf_tensor *h = u ? R(sf_binary_scalar(SF_BIN_MUL, x, 0.5, false)) : NULL;
  sf_tensor *y = h ? R(sf_mul(h, u)) : NULL;
  sf_release(x2), sf_release(p), sf_release(a), sf_release(b), sf_release(c), sf_release(t), sf_release(u), sf_release(h);
  return y;
}

/* *x = round(*x + y), stealing y */
static int add_into(sf_tensor **x, sf_tensor *y) {
  if (sf_enc_add_into(x, y)) return -1;
  return (*x = R(*x)) ? 0 : -1;
}

/* [B, H, L, L] f32 on dev: the layer's relative bias, replaced by -FLT_MAX on padded keys (T5's masked_fill) */
static sf_tensor *masked_bias(const sf_t5_config *c, sf_tensor *table, const int64_t *mask, int64_t B, int64_t L,
                              sf_device dev) {
  int64_t H = c->num_heads, shape[4] = {B, H, L, L};
  sf_tensor *tf = sf_cast(table, SF_F32), *tc = tf ? sf_to_device(tf, sf_cpu()) : NULL, *tt = tc ? sf_contiguous(tc) : NULL;
  sf_release(tf), sf_release(tc);
  sf_tensor *bias = tt ? sf_empty(4, shape, SF_F32, sf_cpu()) : NULL;
  if (!bias) { sf_release(tt); return NULL; }
  const float *t = sf_data_ptr(tt);
  float *o = sf_data_ptr(bias);
  for (int64_t i = 0; i < L; i++)
    for (int64_t j = 0; j < L; j++) {
      int64_t bk = sf_t5_bucket(j - i, c->num_buckets, c->max_dist);
      for (int64_t h = 0; h < H; h++)
        for (int64_t b = 0; b < B; b++)
          o[((b * H + h) * L + i) * L + j] = (mask && mask[b * L + j] == 0) ? -FLT_MAX
                                             : g_lp == 1 ? sf_bf16_to_f32(sf_f32_to_bf16(t[bk * H + h])) : t[bk * H + h];
    }
  sf_release(tt);
  sf_tensor *d = sf_to_device(bias, dev);
  sf_release(bias);
  return d;
}

/* [B, L, H*d] -> [B, H, L, d] */
static sf_tensor *heads(sf_tensor *x, int64_t B, int64_t L, int64_t H) {
  int64_t shape[4] = {B, L, H, x->shape[2] / H};
  int perm[4] = {0, 2, 1, 3};
  sf_tensor *v = sf_view(x, 4, shape), *p = v ? sf_permute(v, perm) : NULL;
  sf_release(v);
  return p;
}

static int block_device(sf_t5 *m, int64_t li, sf_tensor **x, sf_tensor *bias, int64_t B, int64_t L, sf_device dev) {
  const sf_t5_config *c = &m->cfg;
  sf_t5_block *bk = &m->blocks[li];
  int64_t H = c->num_heads, DA = c->dim_attn;
  int rc = -1;
  sf_tensor *h = NULL, *q = NULL, *k = NULL, *v = NULL, *qh = NULL, *kh = NULL, *vh = NULL, *kt = NULL, *s = NULL,
            *sb = NULL, *p = NULL, *o = NULL, *op = NULL, *oc = NULL, *ov = NULL, *f1 = NULL, *g = NULL, *gg = NULL,
            *fg = NULL;
  if (!(h = rms(*x, bk->norm1, c->eps, dev))) goto done;
  if (!(q = lin(h, bk->q, dev)) || !(k = lin(h, bk->k, dev)) || !(v = lin(h, bk->v, dev))) goto done;
  if (!(qh = heads(q, B, L, H)) || !(kh = heads(k, B, L, H)) || !(vh = heads(v, B, L, H))) goto done;
  if (!(kt = sf_transpose(kh, 2, 3)) || !(s = R(sf_matmul(qh, kt)))) goto done; /* no 1/sqrt(d) in T5 */
  if (!(sb = R(sf_add(s, bias))) || !(p = R(sf_softmax(sb, 3))) || !(o = R(sf_matmul(p, vh)))) goto done;
  int perm[4] = {0, 2, 1, 3};
  int64_t shp[3] = {B, L, DA};
  if (!(op = sf_permute(o, perm)) || !(oc = sf_contiguous(op)) || !(ov = sf_view(oc, 3, shp))) goto done;
  if (add_into(x, lin(ov, bk->o, dev))) goto done;
  sf_release(h);
  if (!(h = rms(*x, bk->norm2, c->eps, dev))) goto done;
  if (!(f1 = lin(h, bk->fc1, dev)) || !(g = lin(h, bk->gate, dev)) || !(gg = gelu(g)))
    goto done;
  if (!(fg = R(sf_mul(f1, gg)))) goto done;
  if (add_into(x, lin(fg, bk->fc2, dev))) goto done;
  rc = 0;
done:
  sf_release(h), sf_release(q), sf_release(k), sf_release(v), sf_release(qh), sf_release(kh), sf_release(vh);
  sf_release(kt), sf_release(s), sf_release(sb), sf_release(p), sf_release(o), sf_release(op), sf_release(oc);
  sf_release(ov), sf_release(f1), sf_release(g), sf_release(gg), sf_release(fg);
  return rc;
}

sf_tensor *sf_t5_encode_device(sf_t5 *m, const int64_t *ids, const int64_t *mask, int64_t B, int64_t L, sf_device dev) {
  const sf_t5_config *c = &m->cfg;
  int64_t D = c->dim, shape[3] = {B, L, D};
  /* the embedding gather stays on the cpu (one row per token of a 256k-row table) */
  char dn[32];
  if (m->lp == 2) return sf_error("T5: dtype f16 (the fp16 clamp) runs on the cpu path only; use f32 or bf16 on %s",
                                   sf_device_str(dev, dn, sizeof dn)), NULL;
  g_lp = m->lp;
  sf_tensor *e = sf_empty(3, shape, SF_F32, sf_cpu());
  if (!e) return NULL;
  if (sf_t5_embed(m, ids, B * L, sf_data_ptr(e))) { sf_release(e); return NULL; }
  sf_tensor *x = R(sf_to_device(e, dev)), *bias = NULL;
  sf_release(e);
  if (!x) return NULL;
  for (int64_t li = 0; li < c->num_layers; li++) {
    if (sf_interrupted()) { sf_error("T5: interrupted"); goto fail; }
    if (!c->shared_pos || li == 0) {
      sf_release(bias);
      if (!(bias = masked_bias(c, c->shared_pos ? m->rel_shared : m->blocks[li].rel, mask, B, L, dev))) goto fail;
    }
    if (block_device(m, li, &x, bias, B, L, dev)) goto fail;
  }
  sf_release(bias);
  sf_tensor *y = rms(x, m->norm, c->eps, dev);
  sf_release(x);
  return y;
fail:
  sf_release(bias), sf_release(x);
  return NULL;
}
