/* t5_encoder.c — the umT5 encoder's weights: loading with the architecture read from the shapes, the
 * relative-position buckets, the embedding gather, the compute dtype. The forward is t5_forward.c. */
#include "models/t5_encoder.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/half.h"
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

int sf_t5_set_dtype(sf_t5 *m, const char *dtype) {
  if (!strcmp(dtype, "f32") || !strcmp(dtype, "float32")) m->lp = 0;
  else if (!strcmp(dtype, "bf16") || !strcmp(dtype, "bfloat16")) m->lp = 1;
  else if (!strcmp(dtype, "f16") || !strcmp(dtype, "float16")) m->lp = 2;
  else return sf_error("T5: compute dtype '%s' is not supported (f32, bf16 or f16)", dtype);
  return 0;
}

const char *sf_t5_dtype(const sf_t5 *m) { return m->lp == 1 ? "bf16" : m->lp == 2 ? "f16" : "f32"; }

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
