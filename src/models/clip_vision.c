/* clip_vision.c — the CLIP ViT visual tower's weights (XLM-RoBERTa CLIP ViT-H/14 in Wan) and its cpu
 * preprocessing: loading, torch's bicubic resize, CLIP normalisation, patch rows, the compute dtype. The
 * forward is clip_forward.c. */
#include "models/clip_vision.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "models/clip_internal.h"

static const float CLIP_MEAN[3] = {0.48145466f, 0.4578275f, 0.40821073f};
static const float CLIP_STD[3] = {0.26862954f, 0.26130258f, 0.27577711f};

typedef struct { sf_weight_getter get; void *ctx; const char *prefix; } cl_loader;

static sf_tensor *cget(cl_loader *l, const char *name) {
  char full[200];
  snprintf(full, sizeof full, "%s%s", l->prefix, name);
  return l->get(l->ctx, full);
}

static sf_tensor *cneed(cl_loader *l, const char *name) {
  sf_tensor *t = cget(l, name);
  if (!t) sf_error("CLIP: state dict has no '%s%s'", l->prefix, name);
  return t ? sf_retain(t) : NULL;
}

void sf_clip_free(sf_clip *m) {
  if (!m) return;
  sf_release(m->patch_w), sf_release(m->patch_b), sf_release(m->cls), sf_release(m->pos);
  sf_release(m->pre_w), sf_release(m->pre_b);
  for (int64_t i = 0; m->blocks && i < m->cfg.num_layers; i++) {
    sf_clip_block *b = &m->blocks[i];
    sf_tensor **all[] = {&b->n1w, &b->n1b, &b->qkv_w, &b->qkv_b, &b->proj_w, &b->proj_b,
                         &b->n2w, &b->n2b, &b->fc1_w, &b->fc1_b, &b->fc2_w, &b->fc2_b};
    for (size_t k = 0; k < sizeof all / sizeof all[0]; k++) sf_release(*all[k]);
  }
  free(m->blocks);
  free(m);
}

const sf_clip_config *sf_clip_config_of(const sf_clip *m) { return &m->cfg; }

sf_clip *sf_clip_new(sf_weight_getter get, void *ctx, int num_heads, int run_layers) {
  sf_clip *m = calloc(1, sizeof *m);
  if (!m) { sf_error("CLIP: out of memory"); return NULL; }
  cl_loader l = {get, ctx, "visual."};
  if (!get(ctx, "visual.patch_embedding.weight")) l.prefix = "";
  sf_clip_config *c = &m->cfg;
  c->eps = 1e-5f;
  char name[160], buf[64];
  if (!(m->patch_w = cneed(&l, "patch_embedding.weight")) || !(m->cls = cneed(&l, "cls_embedding")) ||
      !(m->pos = cneed(&l, "pos_embedding")))
    goto fail;
  if (m->patch_w->ndim != 4 || m->patch_w->shape[1] != 3 || m->patch_w->shape[2] != m->patch_w->shape[3]) {
    sf_error("CLIP: patch_embedding.weight has shape %s, expected [dim, 3, p, p]", sf_shape_str(m->patch_w, buf, sizeof buf));
    goto fail;
  }
  c->dim = m->patch_w->shape[0], c->patch = m->patch_w->shape[2];
  int64_t ntok = sf_numel(m->pos) / c->dim;
  c->grid = (int64_t)llround(sqrt((double)(ntok - 1)));
  if (sf_numel(m->pos) != ntok * c->dim || c->grid * c->grid + 1 != ntok || sf_numel(m->cls) != c->dim) {
    sf_error("CLIP: pos_embedding %s / cls_embedding do not fit a square grid plus a class token of width %lld",
             sf_shape_str(m->pos, buf, sizeof buf), (long long)c->dim);
    goto fail;
  }
  c->image_size = c->grid * c->patch;
  m->patch_b = cget(&l, "patch_embedding.bias");
  if (m->patch_b) sf_retain(m->patch_b);
  c->patch_bias = m->patch_b != NULL;
  m->pre_w = cget(&l, "pre_norm.weight");
  if (m->pre_w) {
    sf_retain(m->pre_w);
    if (!(m->pre_b = cneed(&l, "pre_norm.bias"))) goto fail;
  }
  c->pre_norm = m->pre_w != NULL;
  for (c->num_layers = 0;; c->num_layers++) {
    snprintf(name, sizeof name, "transformer.%lld.norm1.weight", (long long)c->num_layers);
    if (!cget(&l, name)) break;
  }
  if (c->num_layers == 0) { sf_error("CLIP: state dict has no %stransformer.0.*", l.prefix); goto fail; }
  c->num_heads = num_heads > 0 ? num_heads : 16;
  if (c->dim % c->num_heads) { sf_error("CLIP: width %lld is not a multiple of %lld heads", (long long)c->dim, (long long)c->num_heads); goto fail; }
  c->run_layers = run_layers > 0 ? run_layers : c->num_layers - 1;
  if (c->run_layers > c->num_layers) { sf_error("CLIP: %lld blocks requested, the tower has %lld", (long long)c->run_layers, (long long)c->num_layers); goto fail; }
  sf_tensor *fc = cget(&l, "transformer.0.mlp.0.weight");
  if (!fc || fc->ndim != 2) { sf_error("CLIP: %stransformer.0.mlp.0.weight missing or not 2-D", l.prefix); goto fail; }
  c->mlp_dim = fc->shape[0];
  m->blocks = calloc(c->num_layers, sizeof(sf_clip_block));
  if (!m->blocks) { sf_error("CLIP: out of memory"); goto fail; }
  for (int64_t i = 0; i < c->run_layers; i++) { /* blocks that never run are not needed */
    sf_clip_block *b = &m->blocks[i];
    struct { sf_tensor **dst; const char *suffix; int64_t n; } w[] = {
        {&b->n1w, "norm1.weight", c->dim},          {&b->n1b, "norm1.bias", c->dim},
        {&b->qkv_w, "attn.to_qkv.weight", 3 * c->dim * c->dim}, {&b->qkv_b, "attn.to_qkv.bias", 3 * c->dim},
        {&b->proj_w, "attn.proj.weight", c->dim * c->dim},      {&b->proj_b, "attn.proj.bias", c->dim},
        {&b->n2w, "norm2.weight", c->dim},          {&b->n2b, "norm2.bias", c->dim},
        {&b->fc1_w, "mlp.0.weight", c->mlp_dim * c->dim}, {&b->fc1_b, "mlp.0.bias", c->mlp_dim},
        {&b->fc2_w, "mlp.2.weight", c->dim * c->mlp_dim}, {&b->fc2_b, "mlp.2.bias", c->dim},
    };
    for (size_t k = 0; k < sizeof w / sizeof w[0]; k++) {
      snprintf(name, sizeof name, "transformer.%lld.%s", (long long)i, w[k].suffix);
      if (!(*w[k].dst = cneed(&l, name))) goto fail;
      if (sf_numel(*w[k].dst) != w[k].n) {
        sf_error("CLIP: '%s%s' has shape %s, expected %lld elements", l.prefix, name, sf_shape_str(*w[k].dst, buf, sizeof buf), (long long)w[k].n);
        goto fail;
      }
    }
  }
  return m;
fail:
  sf_clip_free(m);
  return NULL;
}

/* ---- bicubic (torch upsample_bicubic2d, align_corners=False) ---- */
static float cc1(float x, float A) { return ((A + 2) * x - (A + 3)) * x * x + 1; }
static float cc2(float x, float A) { return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A; }

static void cubic_setup(int in, int out, int *idx, float *wts) {
  const float A = -0.75f;
  float scale = (float)in / (float)out;
  for (int o = 0; o < out; o++) {
    float real = scale * (o + 0.5f) - 0.5f;
    float fl = floorf(real);
    float t = real - fl;
    int i0 = (int)fl;
    float w[4] = {cc2(t + 1.0f, A), cc1(t, A), cc1(1.0f - t, A), cc2(2.0f - t, A)};
    for (int k = 0; k < 4; k++) {
      int ii = i0 - 1 + k;
      idx[o * 4 + k] = ii < 0 ? 0 : ii > in - 1 ? in - 1 : ii;
      wts[o * 4 + k] = w[k];
    }
  }
}

void sf_bicubic_resize(const float *src, int C, int H, int W, float *dst, int oh, int ow) {
  int *iy = malloc(sizeof(int) * 4 * oh), *ix = malloc(sizeof(int) * 4 * ow);
  float *wy = malloc(sizeof(float) * 4 * oh), *wx = malloc(sizeof(float) * 4 * ow);
  if (!iy || !ix || !wy || !wx) goto done;
  cubic_setup(H, oh, iy, wy);
  cubic_setup(W, ow, ix, wx);
  for (int c = 0; c < C; c++) {
    const float *p = src + (int64_t)c * H * W;
    float *q = dst + (int64_t)c * oh * ow;
    for (int y = 0; y < oh; y++)
      for (int x = 0; x < ow; x++) {
        /* rows first interpolated along x, then the four rows along y, as torch's CPU kernel */
        float acc = 0;
        for (int ky = 0; ky < 4; ky++) {
          const float *row = p + (int64_t)iy[y * 4 + ky] * W;
          float r = row[ix[x * 4]] * wx[x * 4];
          for (int kx = 1; kx < 4; kx++) r += row[ix[x * 4 + kx]] * wx[x * 4 + kx];
          acc = ky == 0 ? r * wy[y * 4] : acc + r * wy[y * 4 + ky];
        }
        q[(int64_t)y * ow + x] = acc;
      }
  }
done:
  free(iy), free(ix), free(wy), free(wx);
}

int sf_clip_set_dtype(sf_clip *m, const char *dtype) {
  if (!strcmp(dtype, "f32") || !strcmp(dtype, "float32")) m->lp = 0;
  else if (!strcmp(dtype, "bf16") || !strcmp(dtype, "bfloat16")) m->lp = 1;
  else if (!strcmp(dtype, "f16") || !strcmp(dtype, "float16")) m->lp = 2;
  else return sf_error("CLIP: compute dtype '%s' is not supported (f32, bf16 or f16)", dtype);
  return 0;
}

const char *sf_clip_dtype(const sf_clip *m) { return m->lp == 1 ? "bf16" : m->lp == 2 ? "f16" : "f32"; }

void sf_clip_preprocess(const sf_clip *m, const float *img, int H, int W, float *pix) {
  int64_t S = m->cfg.image_size;
  sf_bicubic_resize(img, 3, H, W, pix, (int)S, (int)S);
  for (int c = 0; c < 3; c++)
    for (int64_t i = 0; i < S * S; i++) {
      float v = pix[c * S * S + i] * 0.5f + 0.5f;
      pix[c * S * S + i] = (v - CLIP_MEAN[c]) / CLIP_STD[c];
    }
}

void sf_clip_patches(const sf_clip *m, const float *pix, float *patches) {
  int64_t P = m->cfg.patch, G = m->cfg.grid, S = m->cfg.image_size, K = 3 * P * P;
  /* patch rows (gy, gx), columns (c, ky, kx) as the conv weight [D, 3, P, P] */
  for (int64_t gy = 0; gy < G; gy++)
    for (int64_t gx = 0; gx < G; gx++) {
      float *r = patches + (gy * G + gx) * K;
      for (int64_t ch = 0; ch < 3; ch++)
        for (int64_t ky = 0; ky < P; ky++)
          memcpy(r + (ch * P + ky) * P, pix + (ch * S + gy * P + ky) * S + gx * P, sizeof(float) * P);
    }
}
