/* t5_encoder.c — umT5 encoder forward in f32 on the CPU: RMS norms, per-layer relative position
 * bias, unscaled attention with T5's masked_fill, gated tanh-GELU FFN (spec §6.2). */
#include "models/t5_encoder.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/half.h"
#include "models/enc_kernels.h"
#include "models/t5_internal.h"

static sf_tensor *need(sf_weight_getter get, void *ctx, const char *name) {
  sf_tensor *t = get(ctx, name);
  if (!t) sf_error("T5: state dict has no '%s'", name);
  return t ? sf_retain(t) : NULL;
}

void sf_t5_free(sf_t5 *m) {
  if (!m) return;
  sf_release(m->emb), sf_release(m->norm), sf_release(m->rel_shared);
  for (int64_t i = 0; m->blocks && i < m->cfg.num_layers; i++) {
    sf_t5_block *b = &m->blocks[i];
    sf_release(b->norm1), sf_release(b->norm2), sf_release(b->q), sf_release(b->k), sf_release(b->v);
    sf_release(b->o), sf_release(b->gate), sf_release(b->fc1), sf_release(b->fc2), sf_release(b->rel);
  }
  free(m->blocks);
  free(m);
}

const sf_t5_config *sf_t5_config_of(const sf_t5 *m) { return &m->cfg; }

static int check_shape(sf_tensor *t, const char *name, int ndim, int64_t a, int64_t b) {
  char buf[64];
  if (t->ndim != ndim || t->shape[0] != a || (ndim > 1 && t->shape[1] != b))
    return sf_error("T5: '%s' has shape %s, expected [%lld%s%lld]", name, sf_shape_str(t, buf, sizeof buf),
                    (long long)a, ndim > 1 ? ", " : "", ndim > 1 ? (long long)b : 0LL);
  return 0;
}

sf_t5 *sf_t5_new(sf_weight_getter get, void *ctx) {
  sf_t5 *m = calloc(1, sizeof *m);
  if (!m) { sf_error("T5: out of memory"); return NULL; }
  sf_t5_config *c = &m->cfg;
  c->eps = 1e-6f;
  c->max_dist = 128;
  char name[128];
  if (!(m->emb = need(get, ctx, "token_embedding.weight")) || !(m->norm = need(get, ctx, "norm.weight"))) goto fail;
  if (m->emb->ndim != 2) { sf_error("T5: token_embedding.weight must be 2-D"); goto fail; }
  c->vocab = m->emb->shape[0], c->dim = m->emb->shape[1];
  if (check_shape(m->norm, "norm.weight", 1, c->dim, 0)) goto fail;
  for (c->num_layers = 0;; c->num_layers++) {
    snprintf(name, sizeof name, "blocks.%lld.norm1.weight", (long long)c->num_layers);
    if (!get(ctx, name)) break;
  }
  if (c->num_layers == 0) { sf_error("T5: state dict has no blocks.0.*"); goto fail; }
  sf_tensor *rel0 = get(ctx, "blocks.0.pos_embedding.embedding.weight");
  sf_tensor *relS = get(ctx, "pos_embedding.embedding.weight");
  c->shared_pos = rel0 == NULL;
  if (!rel0 && !relS) { sf_error("T5: no relative position table (blocks.0.pos_embedding.embedding.weight)"); goto fail; }
  sf_tensor *rel = rel0 ? rel0 : relS;
  if (rel->ndim != 2) { sf_error("T5: relative position table must be [buckets, heads]"); goto fail; }
  c->num_buckets = rel->shape[0], c->num_heads = rel->shape[1];
  if (c->shared_pos && !(m->rel_shared = need(get, ctx, "pos_embedding.embedding.weight"))) goto fail;
  sf_tensor *q0 = get(ctx, "blocks.0.attn.q.weight"), *f0 = get(ctx, "blocks.0.ffn.fc1.weight");
  if (!q0 || !f0 || q0->ndim != 2 || f0->ndim != 2) { sf_error("T5: blocks.0.attn.q.weight / ffn.fc1.weight missing or not 2-D"); goto fail; }
  c->dim_attn = q0->shape[0], c->dim_ffn = f0->shape[0];
  if (c->dim_attn % c->num_heads) { sf_error("T5: dim_attn %lld is not a multiple of %lld heads", (long long)c->dim_attn, (long long)c->num_heads); goto fail; }
  m->blocks = calloc(c->num_layers, sizeof(sf_t5_block));
  if (!m->blocks) { sf_error("T5: out of memory"); goto fail; }
  for (int64_t i = 0; i < c->num_layers; i++) {
    sf_t5_block *b = &m->blocks[i];
    struct { sf_tensor **dst; const char *suffix; int64_t a, bb; int nd; } w[] = {
        {&b->norm1, "norm1.weight", c->dim, 0, 1},       {&b->norm2, "norm2.weight", c->dim, 0, 1},
        {&b->q, "attn.q.weight", c->dim_attn, c->dim, 2}, {&b->k, "attn.k.weight", c->dim_attn, c->dim, 2},
        {&b->v, "attn.v.weight", c->dim_attn, c->dim, 2}, {&b->o, "attn.o.weight", c->dim, c->dim_attn, 2},
        {&b->gate, "ffn.gate.0.weight", c->dim_ffn, c->dim, 2}, {&b->fc1, "ffn.fc1.weight", c->dim_ffn, c->dim, 2},
        {&b->fc2, "ffn.fc2.weight", c->dim, c->dim_ffn, 2},
        {&b->rel, "pos_embedding.embedding.weight", c->num_buckets, c->num_heads, 2},
    };
    int nw = sizeof w / sizeof w[0] - (c->shared_pos ? 1 : 0);
    for (int j = 0; j < nw; j++) {
      snprintf(name, sizeof name, "blocks.%lld.%s", (long long)i, w[j].suffix);
      if (!(*w[j].dst = need(get, ctx, name))) goto fail;
      if (check_shape(*w[j].dst, name, w[j].nd, w[j].a, w[j].bb)) goto fail;
    }
  }
  return m;
fail:
  sf_t5_free(m);
  return NULL;
}

/* T5 bidirectional bucket of rel = key - query (spec §6.2), float32 log as the reference */
int64_t sf_t5_bucket(int64_t rel, int64_t num_buckets, int64_t max_dist) {
  int64_t nb = num_buckets / 2;
  int64_t bucket = rel > 0 ? nb : 0;
  int64_t n = rel < 0 ? -rel : rel;
  int64_t max_exact = nb / 2;
  if (n < max_exact) return bucket + n;
  float lf = logf((float)n / (float)max_exact) / (float)log((double)max_dist / max_exact) * (float)(nb - max_exact);
  int64_t large = max_exact + (int64_t)lf;
  if (large > nb - 1) large = nb - 1;
  return bucket + large;
}

/* bias [H, L, L] from a [buckets, H] table */
static int build_bias(const sf_t5_config *c, sf_tensor *table, int64_t L, const int32_t *buckets, float *bias,
                      sf_scratch *s) {
  const float *t = sf_enc_f32(table, c->num_buckets * c->num_heads, "pos_embedding.embedding.weight", s);
  if (!t) return -1;
  for (int64_t h = 0; h < c->num_heads; h++)
    for (int64_t i = 0; i < L * L; i++) bias[h * L * L + i] = t[buckets[i] * c->num_heads + h];
  return 0;
}

typedef struct {
  sf_scratch w, w2, attn, bias_tmp;
  float *h, *q, *k, *v, *a, *f1, *f2, *bias;
  int32_t *buckets;
} t5_work;

static void work_free(t5_work *w) {
  sf_scratch_free(&w->w), sf_scratch_free(&w->w2), sf_scratch_free(&w->attn), sf_scratch_free(&w->bias_tmp);
  free(w->h), free(w->q), free(w->k), free(w->v), free(w->a), free(w->f1), free(w->f2), free(w->bias);
  free(w->buckets);
}

static int work_init(t5_work *w, const sf_t5_config *c, int64_t B, int64_t L) {
  memset(w, 0, sizeof *w);
  int64_t R = B * L;
  w->h = malloc(sizeof(float) * R * c->dim);
  w->q = malloc(sizeof(float) * R * c->dim_attn);
  w->k = malloc(sizeof(float) * R * c->dim_attn);
  w->v = malloc(sizeof(float) * R * c->dim_attn);
  w->a = malloc(sizeof(float) * R * c->dim_attn);
  w->f1 = malloc(sizeof(float) * R * c->dim_ffn);
  w->f2 = malloc(sizeof(float) * R * c->dim_ffn);
  w->bias = malloc(sizeof(float) * c->num_heads * L * L);
  w->buckets = malloc(sizeof(int32_t) * L * L);
  if (!w->h || !w->q || !w->k || !w->v || !w->a || !w->f1 || !w->f2 || !w->bias || !w->buckets) {
    work_free(w);
    return sf_error("T5: out of memory for a [%lld, %lld] batch", (long long)B, (long long)L);
  }
  for (int64_t i = 0; i < L; i++)
    for (int64_t j = 0; j < L; j++) w->buckets[i * L + j] = (int32_t)sf_t5_bucket(j - i, c->num_buckets, c->max_dist);
  return 0;
}

static int linear(sf_tensor *wt, const char *what, const float *x, int64_t M, int64_t K, int64_t N, float *y,
                  sf_scratch *s) {
  const float *w = sf_enc_f32(wt, N * K, what, s);
  if (!w) return -1;
  sf_enc_linear(x, M, K, w, N, NULL, y);
  return 0;
}

static int run_block(sf_t5 *m, int64_t li, float *x, const int64_t *mask, int64_t B, int64_t L, t5_work *w) {
  const sf_t5_config *c = &m->cfg;
  sf_t5_block *b = &m->blocks[li];
  int64_t R = B * L, D = c->dim, DA = c->dim_attn, F = c->dim_ffn, H = c->num_heads;
  const float *n1;
  if (!c->shared_pos || li == 0)
    if (build_bias(c, c->shared_pos ? m->rel_shared : b->rel, L, w->buckets, w->bias, &w->bias_tmp)) return -1;
  if (!(n1 = sf_enc_f32(b->norm1, D, "norm1.weight", &w->w))) return -1;
  sf_enc_rmsnorm(x, R, D, n1, c->eps, w->h);
  if (linear(b->q, "attn.q.weight", w->h, R, D, DA, w->q, &w->w) ||
      linear(b->k, "attn.k.weight", w->h, R, D, DA, w->k, &w->w) ||
      linear(b->v, "attn.v.weight", w->h, R, D, DA, w->v, &w->w))
    return -1;
  for (int64_t bi = 0; bi < B; bi++) {
    int64_t o = bi * L * DA;
    if (sf_enc_attention(w->q + o, DA, w->k + o, w->v + o, DA, L, L, H, DA / H, 1.0f, w->bias,
                         mask ? mask + bi * L : NULL, w->a + o, &w->attn))
      return -1;
  }
  if (linear(b->o, "attn.o.weight", w->a, R, DA, D, w->h, &w->w)) return -1;
  sf_enc_add(x, w->h, R * D);
  const float *n2 = sf_enc_f32(b->norm2, D, "norm2.weight", &w->w);
  if (!n2) return -1;
  sf_enc_rmsnorm(x, R, D, n2, c->eps, w->h);
  if (linear(b->fc1, "ffn.fc1.weight", w->h, R, D, F, w->f1, &w->w) ||
      linear(b->gate, "ffn.gate.0.weight", w->h, R, D, F, w->f2, &w->w))
    return -1;
  sf_enc_gelu_tanh(w->f2, R * F);
  sf_enc_mul(w->f1, w->f2, R * F);
  if (linear(b->fc2, "ffn.fc2.weight", w->f1, R, F, D, w->h, &w->w)) return -1;
  sf_enc_add(x, w->h, R * D);
  return 0;
}

/* ---- bf16 / f16 compute: the model after .to(dtype), every op computed in f32 from dtype operands and its
 * output rounded to dtype (the CUDA kernels' behaviour), spec §6.2 / [W] t5.py ---- */
static inline float lp_round(float v, int lp) {
  return lp == 1 ? sf_bf16_to_f32(sf_f32_to_bf16(v)) : lp == 2 ? sf_f16_to_f32(sf_f32_to_f16(v)) : v;
}

static void round_n(float *x, int64_t n, int lp) {
  if (lp == 1)
    for (int64_t i = 0; i < n; i++) x[i] = sf_bf16_to_f32(sf_f32_to_bf16(x[i]));
  else if (lp == 2)
    for (int64_t i = 0; i < n; i++) x[i] = sf_f16_to_f32(sf_f32_to_f16(x[i]));
}

/* f32 weights holding dtype values: the file's when it already has that dtype, else a rounded copy in s2 */
static const float *weights_lp(sf_tensor *t, int64_t n, const char *what, int lp, sf_scratch *s, sf_scratch *s2) {
  const float *w = sf_enc_f32(t, n, what, s);
  if (!w || (lp == 1 && t->dtype == SF_BF16) || (lp == 2 && t->dtype == SF_F16)) return w;
  float *c = sf_scratch_get(s2, n);
  if (!c) return NULL;
  memcpy(c, w, sizeof(float) * n);
  round_n(c, n, lp);
  return c;
}

static int linear_lp(sf_tensor *wt, const char *what, const float *x, int64_t M, int64_t K, int64_t N, float *y,
                     int lp, t5_work *w) {
  const float *wf = weights_lp(wt, N * K, what, lp, &w->w, &w->w2);
  if (!wf) return -1;
  sf_enc_linear(x, M, K, wf, N, NULL, y);
  round_n(y, M * N, lp);
  return 0;
}

/* T5LayerNorm: x * rsqrt(mean(x^2) + eps) in f32, cast to dtype, times the dtype weight, cast */
static int rmsnorm_lp(sf_tensor *wt, const char *what, const float *x, int64_t rows, int64_t D, float eps, float *y,
                      int lp, t5_work *w) {
  const float *g = weights_lp(wt, D, what, lp, &w->w, &w->w2);
  if (!g) return -1;
  for (int64_t r = 0; r < rows; r++) {
    const float *xr = x + r * D;
    float *yr = y + r * D;
    float ss = 0;
    for (int64_t i = 0; i < D; i++) ss += xr[i] * xr[i];
    float inv = 1.0f / sqrtf(ss / (float)D + eps);
    for (int64_t i = 0; i < D; i++) yr[i] = lp_round(g[i] * lp_round(xr[i] * inv, lp), lp);
  }
  return 0;
}

/* Wan's GELU module op by op: 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3))), each output rounded */
static void gelu_lp(float *x, int64_t n, int lp) {
  for (int64_t i = 0; i < n; i++) {
    float v = x[i];
    float p = lp_round(v * v * v, lp), a = lp_round(0.044715f * p, lp), b = lp_round(v + a, lp);
    float c = lp_round(0.7978845608028654f * b, lp), t = lp_round(tanhf(c), lp), u = lp_round(1.0f + t, lp);
    x[i] = lp_round(lp_round(0.5f * v, lp) * u, lp);
  }
}

/* fp16_clamp: when any value of x is inf (f16 only), clamp all of x to +-(65504 - 1000) */
static void fp16_clamp(float *x, int64_t n, int lp) {
  if (lp != 2) return;
  int inf = 0;
  for (int64_t i = 0; i < n && !inf; i++) inf = isinf(x[i]);
  if (!inf) return;
  const float c = 65504.0f - 1000.0f;
  for (int64_t i = 0; i < n; i++) x[i] = x[i] > c ? c : x[i] < -c ? -c : x[i];
}

/* attention of one sequence, dtype rounding of q.k, of (+ bias), of the f32 softmax and of the output;
 * masked keys get finfo(dtype).min as masked_fill */
static int attention_lp(const float *q, const float *k, const float *v, int64_t L, int64_t H, int64_t d,
                        const float *bias, const int64_t *key_mask, float *out, int lp, sf_scratch *tmp) {
  float *S = sf_scratch_get(tmp, (size_t)L * L);
  if (!S) return -1;
  int64_t ld = H * d;
  const float dmin = lp == 1 ? -3.38953139e38f : -65504.0f;
  for (int64_t h = 0; h < H; h++) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)L, (int)L, (int)d, 1.0f, q + h * d, (int)ld, k + h * d,
                (int)ld, 0.0f, S, (int)L);
    const float *bh = bias + h * L * L;
    for (int64_t i = 0; i < L; i++) {
      float *r = S + i * L;
      for (int64_t j = 0; j < L; j++) {
        float bb = (key_mask && key_mask[j] == 0) ? dmin : lp_round(bh[i * L + j], lp);
        r[j] = lp_round(lp_round(r[j], lp) + bb, lp);
      }
    }
    sf_enc_softmax_rows(S, L, L);
    round_n(S, L * L, lp);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)L, (int)d, (int)L, 1.0f, S, (int)L, v + h * d, (int)ld,
                0.0f, out + h * d, (int)ld);
  }
  for (int64_t i = 0; i < L; i++) round_n(out + i * ld, ld, lp);
  return 0;
}

static int run_block_lp(sf_t5 *m, int64_t li, float *x, const int64_t *mask, int64_t B, int64_t L, t5_work *w) {
  const sf_t5_config *c = &m->cfg;
  sf_t5_block *b = &m->blocks[li];
  int lp = m->lp;
  int64_t R = B * L, D = c->dim, DA = c->dim_attn, F = c->dim_ffn, H = c->num_heads;
  if (!c->shared_pos || li == 0)
    if (build_bias(c, c->shared_pos ? m->rel_shared : b->rel, L, w->buckets, w->bias, &w->bias_tmp)) return -1;
  if (rmsnorm_lp(b->norm1, "norm1.weight", x, R, D, c->eps, w->h, lp, w) ||
      linear_lp(b->q, "attn.q.weight", w->h, R, D, DA, w->q, lp, w) ||
      linear_lp(b->k, "attn.k.weight", w->h, R, D, DA, w->k, lp, w) ||
      linear_lp(b->v, "attn.v.weight", w->h, R, D, DA, w->v, lp, w))
    return -1;
  for (int64_t bi = 0; bi < B; bi++) {
    int64_t o = bi * L * DA;
    if (attention_lp(w->q + o, w->k + o, w->v + o, L, H, DA / H, w->bias, mask ? mask + bi * L : NULL, w->a + o, lp,
                     &w->attn))
      return -1;
  }
  if (linear_lp(b->o, "attn.o.weight", w->a, R, DA, D, w->h, lp, w)) return -1;
  for (int64_t i = 0; i < R * D; i++) x[i] = lp_round(x[i] + w->h[i], lp);
  fp16_clamp(x, R * D, lp);
  if (rmsnorm_lp(b->norm2, "norm2.weight", x, R, D, c->eps, w->h, lp, w) ||
      linear_lp(b->fc1, "ffn.fc1.weight", w->h, R, D, F, w->f1, lp, w) ||
      linear_lp(b->gate, "ffn.gate.0.weight", w->h, R, D, F, w->f2, lp, w))
    return -1;
  gelu_lp(w->f2, R * F, lp);
  for (int64_t i = 0; i < R * F; i++) w->f1[i] = lp_round(w->f1[i] * w->f2[i], lp);
  if (linear_lp(b->fc2, "ffn.fc2.weight", w->f1, R, F, D, w->h, lp, w)) return -1;
  for (int64_t i = 0; i < R * D; i++) x[i] = lp_round(x[i] + w->h[i], lp);
  fp16_clamp(x, R * D, lp);
  return 0;
}

int sf_t5_set_dtype(sf_t5 *m, const char *dtype) {
  if (!strcmp(dtype, "f32") || !strcmp(dtype, "float32")) m->lp = 0;
  else if (!strcmp(dtype, "bf16") || !strcmp(dtype, "bfloat16")) m->lp = 1;
  else if (!strcmp(dtype, "f16") || !strcmp(dtype, "float16")) m->lp = 2;
  else return sf_error("T5: compute dtype '%s' is not supported (f32, bf16 or f16)", dtype);
  return 0;
}

const char *sf_t5_dtype(const sf_t5 *m) { return m->lp == 1 ? "bf16" : m->lp == 2 ? "f16" : "f32"; }

int sf_t5_run_blocks(sf_t5 *m, int first, int count, float *x, const int64_t *mask, int64_t B, int64_t L) {
  if (first < 0 || count < 0 || first + count > m->cfg.num_layers)
    return sf_error("T5: blocks [%d, %d) outside 0..%lld", first, first + count, (long long)m->cfg.num_layers);
  t5_work w;
  if (work_init(&w, &m->cfg, B, L)) return -1;
  int rc = 0;
  /* a shared table is built once per call: make block `first` build it */
  for (int i = first; i < first + count && rc == 0; i++) {
    if (sf_interrupted()) { rc = sf_error("T5: interrupted"); break; }
    if (m->cfg.shared_pos && i == first && first != 0)
      rc = build_bias(&m->cfg, m->rel_shared, L, w.buckets, w.bias, &w.bias_tmp);
    if (rc == 0) rc = m->lp ? run_block_lp(m, i, x, mask, B, L, &w) : run_block(m, i, x, mask, B, L, &w);
  }
  work_free(&w);
  return rc;
}

int sf_t5_embed(sf_t5 *m, const int64_t *ids, int64_t n, float *out) {
  const sf_t5_config *c = &m->cfg;
  int64_t D = c->dim;
  if (m->emb->dtype != SF_F32 && m->emb->dtype != SF_BF16 && m->emb->dtype != SF_F16)
    return sf_error("T5: token_embedding.weight has dtype %s", sf_dtype_name(m->emb->dtype));
  if (!sf_is_contiguous(m->emb) || sf_device_of(m->emb).type != SF_DEV_CPU)
    return sf_error("T5: token_embedding.weight must be a contiguous cpu tensor");
  for (int64_t i = 0; i < n; i++)
    if (ids[i] < 0 || ids[i] >= c->vocab)
      return sf_error("T5: token id %lld at position %lld is outside the embedding (%lld rows)", (long long)ids[i],
                      (long long)i, (long long)c->vocab);
  /* gather embedding rows without converting the whole (256384 x 4096) table */
  const char *base = (const char *)sf_data_ptr(m->emb);
  for (int64_t i = 0; i < n; i++) {
    float *dst = out + i * D;
    if (m->emb->dtype == SF_F32) memcpy(dst, (const float *)base + ids[i] * D, D * sizeof(float));
    else {
      const uint16_t *row = (const uint16_t *)base + ids[i] * D;
      if (m->emb->dtype == SF_BF16) for (int64_t j = 0; j < D; j++) dst[j] = sf_bf16_to_f32(row[j]);
      else for (int64_t j = 0; j < D; j++) dst[j] = sf_f16_to_f32(row[j]);
    }
  }
  return 0;
}

int sf_t5_encode(sf_t5 *m, const int64_t *ids, const int64_t *mask, int64_t B, int64_t L, float *out) {
  const sf_t5_config *c = &m->cfg;
  int64_t D = c->dim;
  if (sf_t5_embed(m, ids, B * L, out)) return -1;
  round_n(out, B * L * D, m->lp); /* the embedding table in the compute dtype */
  if (sf_t5_run_blocks(m, 0, (int)c->num_layers, out, mask, B, L)) return -1;
  if (m->lp) {
    t5_work w;
    memset(&w, 0, sizeof w);
    int rc = rmsnorm_lp(m->norm, "norm.weight", out, B * L, D, c->eps, out, m->lp, &w);
    work_free(&w);
    return rc;
  }
  sf_scratch s = {0};
  const float *nw = sf_enc_f32(m->norm, D, "norm.weight", &s);
  if (!nw) { sf_scratch_free(&s); return -1; }
  /* in place is safe: each row is read fully before it is written */
  sf_enc_rmsnorm(out, B * L, D, nw, c->eps, out);
  sf_scratch_free(&s);
  return 0;
}
