/* vae_internal.h — the Wan VAE's modules and feature caches, shared by vae_model.c (loading, encode/
 * decode drivers) and vae_blocks.c (module forwards). Activations are frame-major f32 [T][C][H][W]. */
#ifndef SF_VAE_INTERNAL_H
#define SF_VAE_INTERNAL_H

#include <stdint.h>

#include "backend/conv_ops.h"
#include "models/vae_model.h"

/* a sequence of frames, contiguous [T][C][H][W] */
typedef struct { int T, C, H, W; float *d; } vseq;

typedef struct {
  sf_conv_geom g;
  int causal_t;  /* zero frames a causal conv puts in front (2 * temporal padding) */
  float *w, *b;  /* f32: into wt/bt when the file holds contiguous f32 (no copy), else owned copies */
  sf_tensor *wt, *bt;
  int bf16;      /* bf16 compute (SF_CONV_BF16) */
} vconv;

typedef enum { VM_RES, VM_ATTN, VM_DOWN2D, VM_DOWN3D, VM_UP2D, VM_UP3D } vkind;

typedef struct {
  vkind kind;
  int cin, cout;
  float *g0, *g1;      /* residual norm gammas [cin], [cout]; attention norm gamma in g0 */
  vconv c0, c1, sc;    /* residual convs, shortcut (sc.w NULL = identity) */
  vconv qkv, proj;     /* attention */
  vconv rs, tc;        /* resample: spatial conv, time conv */
  int slot0, slot1;    /* feature-cache slots */
  int bf16;            /* round activations to bf16 at every op output (Self-Forcing's bf16 VAE) */
} vmod;

typedef struct {
  vconv conv1;
  vmod *mods;
  int nmods;
  vmod mid[3];
  float *head_g;
  vconv head;
  int nslots;
  int middle_first; /* the decoder runs conv1, middle, upsamples; the encoder conv1, downsamples, middle */
  int bf16;
} vcoder;

/* one cache slot: up to 2 frames, or the decoder's "Rep" marker */
typedef struct { float *d; int n, C, H, W; int rep; } vslot;
typedef struct { vslot *s; int n; } vstate;

struct sf_vae {
  vcoder enc, dec;
  vconv conv1, conv2;
  sf_vae_config cfg;
  vstate *stream; /* decode_chunk state per batch element */
  int nstream;
  int bf16;       /* compute dtype: 0 f32, 1 bf16 */
};

/* round to the nearest bf16 value (ties to even), kept as f32; NaN stays NaN. Branch-free for vectorizing. */
static inline float vbf(float x) {
  union { float f; uint32_t u; } v = {x};
  uint32_t r = (v.u + 0x7fffu + ((v.u >> 16) & 1u)) & 0xffff0000u;
  uint32_t nan = (v.u & 0x7fffffffu) > 0x7f800000u;
  v.u = nan ? (v.u | 0x00400000u) : r;
  return v.f;
}

int vseq_alloc(vseq *x, int T, int C, int H, int W);
void vseq_free(vseq *x);
static inline float *vseq_frame(const vseq *x, int t) { return x->d + (int64_t)t * x->C * x->H * x->W; }

void vstate_clear(vstate *st);
int vstate_init(vstate *st, int nslots);

/* plain (uncached) convolution of all frames with the conv's causal zero padding */
int vconv_apply(const vconv *c, const vseq *x, vseq *y);
/* the cached causal conv of the reference (CACHE_T = 2) */
int vconv_cached(const vconv *c, vslot *slot, const vseq *x, vseq *y);
/* one module on x (replaced by its output) with the coder's cache state */
int vmod_forward(const vmod *m, vstate *st, vseq *x);
/* Encoder3d / Decoder3d forward of one chunk with caches */
int vcoder_forward(const vcoder *c, vstate *st, vseq *x);

#endif
