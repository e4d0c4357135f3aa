/* t5_encoder.c — umT5 encoder forward in f32 on the CPU: RMS norms, per-layer relative position
 * bias, unscaled attention with T5's masked_fill, gated tanh-GELU FFN (spec §6.2). */
#include "models/t5_encoder.h"

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
#pragma omp parallel for schedule(static) if((int64_t)(R * D) > SF_PAR_MIN)
  for (int64_t i = 0; i < R * D; i++) x[i] += w->h[i];
  const float *n2 = sf_enc_f32(b->norm2, D, "norm2.weight", &w->w);
  if (!n2) return -1;
  sf_enc_rmsnorm(x, R, D, n2, c->eps, w->h);
  if (linear(b->fc1, "ffn.fc1.weight", w->h, R, D, F, w->f1, &w->w) ||
      linear(b->gate, "ffn.gate.0.weight", w->h, R, D, F, w->f2, &w->w))
    return -1;
  sf_enc_gelu_tanh(w->f2, R * F);
#pragma omp parallel for schedule(static) if((int64_t)(R * F) > SF_PAR_MIN)
  for (int64_t i = 0; i < R * F; i++) w->f1[i] *= w->f2[i];
  if (linear(b->fc2, "ffn.fc2.weight", w->f1, R, F, D, w->h, &w->w)) return -1;
#pragma omp parallel for schedule(static) if((int64_t)(R * D) > SF_PAR_MIN)
  for (int64_t i = 0; i < R * D; i++) x[i] += w->h[i];
  return 0;
}

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
    if (rc == 0) rc = run_block(m, i, x, mask, B, L, &w);
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
  if (sf_t5_run_blocks(m, 0, (int)c->num_layers, out, mask, B, L)) return -1;
  sf_scratch s = {0};
  const float *nw = sf_enc_f32(m->norm, D, "norm.weight", &s);
  if (!nw) { sf_scratch_free(&s); return -1; }
  /* in place is safe: each row is read fully before it is written */
  sf_enc_rmsnorm(out, B * L, D, nw, c->eps, out);
  sf_scratch_free(&s);
  return 0;
}
