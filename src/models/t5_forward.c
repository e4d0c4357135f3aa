/* t5_forward.c — the umT5 encoder forward (spec §6.2), one structure over the backend's tensor ops (ops.h,
 * nn.h) for every device: RMS norms, per-layer relative position bias with T5's masked_fill, unscaled
 * attention, gated tanh-GELU FFN.
 *
 * Compute dtypes (m->lp): f32; bf16 / f16 as the reference after .to(dtype): weights as dtype values, every
 * op's output rounded to the dtype (rnd), sums in f32 (the CUDA kernels' behaviour, [W] t5.py); masked keys
 * get finfo(dtype).min; f16 adds fp16_clamp after each residual add. The embedding gather stays on the cpu
 * (one row per token of a 256k-row table). */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/error.h"
#include "core/scope.h"
#include "ops/nn.h"
#include "ops/ops.h"
#include "models/compute_dtype.h"
#include "models/t5_internal.h"

typedef struct {
  const sf_t5 *m;
  sf_device dev;
  int lp; /* 0 f32, 1 bf16, 2 f16 */
} t5_run;

/* the run's compute dtype (models/compute_dtype.h): t rounded, kept in f32 (steals t); a weight on the device */
static sf_tensor *rnd(const t5_run *r, sf_tensor *t) { return sf_compute_round(r->lp, t); }
static sf_tensor *weight(const t5_run *r, sf_tensor *w) { return sf_compute_weight(r->dev, r->lp, w); }

static sf_tensor *lin(const t5_run *r, sf_tensor *x, sf_tensor *w) {
  sf_scope S = SF_SCOPE_INIT;
  sf_tensor *wd = SF_OWN(S, weight(r, w));
  return sf_scope_end_keep(&S, SF_OWN(S, rnd(r, sf_linear(x, wd, NULL))));
}

/* T5LayerNorm: x·rsqrt(mean(x²)+eps) in f32, rounded, · weight, rounded (one fused op in f32) */
static sf_tensor *rms(const t5_run *r, sf_tensor *x, sf_tensor *w) {
  const double eps = r->m->cfg.eps;
  sf_scope S = SF_SCOPE_INIT;
  sf_tensor *wd = SF_OWN(S, weight(r, w));
  if (!r->lp) return sf_scope_end_keep(&S, SF_OWN(S, sf_rms_norm(x, wd, eps)));
  sf_tensor *h = SF_OWN(S, rnd(r, sf_rms_norm(x, NULL, eps)));
  return sf_scope_end_keep(&S, SF_OWN(S, rnd(r, sf_mul(h, wd))));
}

/* Wan's GELU module; with a compute dtype op by op, each output rounded (x³, 0.044715·, x+, √(2/π)·, tanh,
 * 1+, 0.5·x, product) */
static sf_tensor *gelu(const t5_run *r, sf_tensor *x) {
  if (!r->lp) return sf_unary(SF_UN_GELU_TANH, x, 0, 0);
  sf_scope S = SF_SCOPE_INIT;
  sf_tensor *x2 = SF_OWN(S, sf_mul(x, x));
  sf_tensor *p = SF_OWN(S, rnd(r, sf_mul(x2, x)));
  sf_tensor *a = SF_OWN(S, rnd(r, sf_binary_scalar(SF_BIN_MUL, p, 0.044715f, false)));
  sf_tensor *b = SF_OWN(S, rnd(r, sf_add(x, a)));
  sf_tensor *c = SF_OWN(S, rnd(r, sf_binary_scalar(SF_BIN_MUL, b, 0.7978845608028654f, false)));
  sf_tensor *t = SF_OWN(S, rnd(r, sf_unary(SF_UN_TANH, c, 0, 0)));
  sf_tensor *u = SF_OWN(S, rnd(r, sf_binary_scalar(SF_BIN_ADD, t, 1.0, false)));
  sf_tensor *h = SF_OWN(S, rnd(r, sf_binary_scalar(SF_BIN_MUL, x, 0.5, false)));
  return sf_scope_end_keep(&S, SF_OWN(S, rnd(r, sf_mul(h, u))));
}

/* the residual add x + y, rounded; in f16 the reference's fp16_clamp: when any value is inf, all of x is
 * clamped to ±(65504 - 1000) */
static sf_tensor *residual(const t5_run *r, sf_tensor *x, sf_tensor *y) {
  sf_scope S = SF_SCOPE_INIT;
  sf_tensor *z = SF_OWN(S, rnd(r, sf_add(x, y)));
  if (r->lp != 2) return sf_scope_end_keep(&S, z);
  sf_tensor *a = SF_OWN(S, sf_unary(SF_UN_ABS, z, 0, 0));
  sf_tensor *mx = SF_OWN(S, sf_reduce(SF_RED_MAX, a, SF_ALL_DIMS, false));
  if (S.failed || !isinf(sf_item(mx))) return sf_scope_end_keep(&S, z);
  const double c = 65504.0 - 1000.0;
  return sf_scope_end_keep(&S, SF_OWN(S, sf_unary(SF_UN_CLAMP, z, -c, c)));
}

/* [B, H, L, L] f32 on the device: the layer's relative bias (in the compute dtype), finfo(dtype).min on
 * padded keys (T5's masked_fill) */
static sf_tensor *masked_bias(const t5_run *r, sf_tensor *table, const int64_t *mask, int64_t B, int64_t L) {
  const sf_t5_config *c = &r->m->cfg;
  const float dmin = r->lp == 1 ? -3.38953139e38f : r->lp == 2 ? -65504.0f : -FLT_MAX;
  int64_t H = c->num_heads, shape[4] = {B, H, L, L};
  sf_scope S = SF_SCOPE_INIT;
  sf_tensor *tf = SF_OWN(S, sf_cast(table, SF_F32));
  sf_tensor *tc = SF_OWN(S, sf_to_device(tf, sf_cpu()));
  sf_tensor *tt = SF_OWN(S, rnd(r, sf_contiguous(tc)));
  sf_tensor *bias = SF_OWN(S, sf_empty(4, shape, SF_F32, sf_cpu()));
  if (!S.failed) {
    const float *t = sf_data_ptr(tt);
    float *o = sf_data_ptr(bias);
    for (int64_t i = 0; i < L; i++)
      for (int64_t j = 0; j < L; j++) {
        const int64_t bk = sf_t5_bucket(j - i, c->num_buckets, c->max_dist);
        for (int64_t h = 0; h < H; h++)
          for (int64_t b = 0; b < B; b++) o[((b * H + h) * L + i) * L + j] = mask && mask[b * L + j] == 0 ? dmin : t[bk * H + h];
      }
  }
  return sf_scope_end_keep(&S, SF_OWN(S, sf_to_device(bias, r->dev)));
}

/* [B, L, H*d] -> [B, H, L, d] */
static sf_tensor *heads(sf_tensor *x, int64_t H) {
  int64_t shape[4] = {x->shape[0], x->shape[1], H, x->shape[2] / H};
  int perm[4] = {0, 2, 1, 3};
  sf_scope S = SF_SCOPE_INIT;
  sf_tensor *v = SF_OWN(S, sf_view(x, 4, shape));
  return sf_scope_end_keep(&S, SF_OWN(S, sf_permute(v, perm)));
}

/* Peak memory: the [B, H, L, L] scores and the [B, L, dim_ffn] hidden activations are a block's largest
 * tensors, so attention runs over groups of heads and the FFN over groups of tokens, each group written into
 * the output (rows and heads are independent: the same arithmetic). At umT5-XXL width (64 heads, 512 tokens,
 * ffn 10240) this keeps the working set below the old fused CPU path's (bench/bench_encoders.sh). */
enum { T5_GROUP_FLOATS = 1 << 21 }; /* scores or hidden activations of one group: 8 MiB of f32 */

/* T5 attention (no 1/sqrt(d)) of h's q, k, v projections with the masked bias: [B, L, dim_attn] */
static sf_tensor *attention(const t5_run *r, const sf_t5_block *bk, sf_tensor *h, sf_tensor *bias) {
  const sf_t5_config *c = &r->m->cfg;
  const int64_t B = h->shape[0], L = h->shape[1], H = c->num_heads, d = c->dim_attn / H;
  int64_t hg = T5_GROUP_FLOATS / (B * L * L);
  if (hg < 1) hg = 1;
  int64_t oshape[4] = {B, L, H, d}, shp[3] = {B, L, c->dim_attn};
  int perm[4] = {0, 2, 1, 3};
  sf_scope S = SF_SCOPE_INIT;
  sf_tensor *q = SF_OWN(S, lin(r, h, bk->q)), *k = SF_OWN(S, lin(r, h, bk->k)), *v = SF_OWN(S, lin(r, h, bk->v));
  sf_tensor *qh = SF_OWN(S, heads(q, H)), *kh = SF_OWN(S, heads(k, H)), *vh = SF_OWN(S, heads(v, H));
  sf_tensor *kt = SF_OWN(S, sf_transpose(kh, 2, 3));
  sf_tensor *out = SF_OWN(S, sf_empty(4, oshape, SF_F32, r->dev));
  for (int64_t h0 = 0; h0 < H && !S.failed; h0 += hg) {
    const int64_t n = h0 + hg <= H ? hg : H - h0;
    sf_scope G = SF_SCOPE_INIT; /* one group of heads */
    sf_tensor *qg = SF_OWN(G, sf_narrow(qh, 1, h0, n)), *kg = SF_OWN(G, sf_narrow(kt, 1, h0, n));
    sf_tensor *vg = SF_OWN(G, sf_narrow(vh, 1, h0, n)), *bg = SF_OWN(G, sf_narrow(bias, 1, h0, n));
    sf_tensor *sc = SF_OWN(G, rnd(r, sf_matmul(qg, kg)));
    sf_tensor *sb = SF_OWN(G, rnd(r, sf_add(sc, bg)));
    sf_tensor *p = SF_OWN(G, rnd(r, sf_softmax(sb, 3)));
    sf_tensor *o = SF_OWN(G, rnd(r, sf_matmul(p, vg)));
    sf_tensor *dst = SF_OWN(G, sf_narrow(out, 2, h0, n)); /* [B, L, n, d] seen as [B, n, L, d] */
    sf_tensor *dp = SF_OWN(G, sf_permute(dst, perm));
    SF_CHECK(G, sf_copy_(dp, o));
    if (sf_scope_close(&G)) S.failed = true;
  }
  return sf_scope_end_keep(&S, SF_OWN(S, sf_view(out, 3, shp)));
}

/* the gated tanh-GELU FFN of h over groups of tokens: [B, L, dim] */
static sf_tensor *ffn(const t5_run *r, const sf_t5_block *bk, sf_tensor *h) {
  const int64_t B = h->shape[0], L = h->shape[1];
  int64_t tg = T5_GROUP_FLOATS / (B * r->m->cfg.dim_ffn);
  if (tg < 1) tg = 1;
  sf_scope S = SF_SCOPE_INIT;
  sf_tensor *out = SF_OWN(S, sf_empty(3, h->shape, SF_F32, r->dev));
  for (int64_t t0 = 0; t0 < L && !S.failed; t0 += tg) {
    const int64_t n = t0 + tg <= L ? tg : L - t0;
    sf_scope G = SF_SCOPE_INIT; /* one group of tokens */
    sf_tensor *hg = SF_OWN(G, sf_narrow(h, 1, t0, n));
    sf_tensor *f1 = SF_OWN(G, lin(r, hg, bk->fc1));
    sf_tensor *g = SF_OWN(G, lin(r, hg, bk->gate));
    sf_tensor *gg = SF_OWN(G, gelu(r, g));
    sf_tensor *fg = SF_OWN(G, rnd(r, sf_mul(f1, gg)));
    sf_tensor *y = SF_OWN(G, lin(r, fg, bk->fc2));
    sf_tensor *dst = SF_OWN(G, sf_narrow(out, 1, t0, n));
    SF_CHECK(G, sf_copy_(dst, y));
    if (sf_scope_close(&G)) S.failed = true;
  }
  return sf_scope_end_keep(&S, out);
}

/* one block; its [B, L, dim] intermediates stay to its end: the attention's working set (q, k, v, the bias,
 * one group of scores) is the larger one */
static sf_tensor *block(const t5_run *r, const sf_t5_block *bk, sf_tensor *x, sf_tensor *bias) {
  sf_scope S = SF_SCOPE_INIT;
  sf_tensor *h = SF_OWN(S, rms(r, x, bk->norm1));
  sf_tensor *a = SF_OWN(S, attention(r, bk, h, bias));
  sf_tensor *ao = SF_OWN(S, lin(r, a, bk->o));
  sf_tensor *x1 = SF_OWN(S, residual(r, x, ao));
  sf_tensor *h2 = SF_OWN(S, rms(r, x1, bk->norm2));
  sf_tensor *f = SF_OWN(S, ffn(r, bk, h2));
  return sf_scope_end_keep(&S, SF_OWN(S, residual(r, x1, f)));
}

/* blocks [first, first + count) over x (in the compute dtype, on the run's device); new reference */
static sf_tensor *blocks(const t5_run *r, int first, int count, sf_tensor *x, const int64_t *mask) {
  const sf_t5_config *c = &r->m->cfg;
  if (first < 0 || count < 0 || first + count > c->num_layers)
    return sf_error("T5: blocks [%d, %d) outside 0..%lld", first, first + count, (long long)c->num_layers), NULL;
  sf_scope S = SF_SCOPE_INIT;
  sf_tensor *bias = NULL;
  x = SF_OWN(S, sf_retain(x));
  for (int li = first; li < first + count && !S.failed; li++) {
    if (sf_interrupted()) {
      sf_error("T5: interrupted");
      return sf_scope_end(&S), NULL;
    }
    if (!c->shared_pos || !bias) { /* a shared table is built once per call */
      SF_DROP(S, bias);
      bias = SF_OWN(S, masked_bias(r, c->shared_pos ? r->m->rel_shared : r->m->blocks[li].rel, mask, x->shape[0], x->shape[1]));
    }
    sf_tensor *y = SF_OWN(S, block(r, &r->m->blocks[li], x, bias));
    SF_DROP(S, x); /* the residual stream: one layer's input and output */
    x = y;
  }
  return sf_scope_end_keep(&S, x);
}

static int run_of(const sf_t5 *m, sf_device dev, t5_run *r) {
  if (!sf_backend_for(dev)) return -1;
  r->m = m, r->dev = dev, r->lp = m->lp;
  return 0;
}

sf_tensor *sf_t5_forward(sf_t5 *m, const int64_t *ids, const int64_t *mask, int64_t B, int64_t L, sf_device dev) {
  t5_run r;
  if (run_of(m, dev, &r)) return NULL;
  int64_t shape[3] = {B, L, m->cfg.dim};
  sf_scope S = SF_SCOPE_INIT;
  sf_tensor *e = SF_OWN(S, sf_empty(3, shape, SF_F32, sf_cpu()));
  SF_CHECK(S, sf_t5_embed(m, ids, B * L, sf_data_ptr(e)));
  sf_tensor *x = SF_OWN(S, rnd(&r, sf_to_device(e, dev))); /* the embedding table in the compute dtype */
  SF_DROP(S, e);
  sf_tensor *y = SF_OWN(S, blocks(&r, 0, (int)m->cfg.num_layers, x, mask));
  SF_DROP(S, x);
  return sf_scope_end_keep(&S, SF_OWN(S, rms(&r, y, m->norm)));
}

sf_tensor *sf_t5_blocks(sf_t5 *m, int first, int count, sf_tensor *x, const int64_t *mask) {
  t5_run r;
  char a[64];
  if (x->ndim != 3 || x->shape[2] != m->cfg.dim || x->dtype != SF_F32)
    return sf_error("T5: x must be f32 [B, L, %lld], got %s %s", (long long)m->cfg.dim, sf_dtype_name(x->dtype),
                    sf_shape_str(x, a, sizeof a)), NULL;
  if (run_of(m, sf_device_of(x), &r)) return NULL;
  return blocks(&r, first, count, x, mask);
}
