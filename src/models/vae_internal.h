/* vae_internal.h — the Wan VAE's modules and feature caches, shared by vae_model.c (loading, encode/
 * decode drivers) and vae_blocks.c (module forwards). Activations are frame-major f32 tensors [T, C, H, W]
 * on the VAE's device; the forward is one C structure over ops/frame_ops.h and the core ops, so every
 * device and every compute dtype runs the same code. */
#ifndef SF_VAE_INTERNAL_H
#define SF_VAE_INTERNAL_H

#include <stdint.h>

#include "backend/conv_ops.h"
#include "core/tensor.h"
#include "models/vae_model.h"

typedef struct {
  sf_conv_geom g;
  int causal_t;     /* zero frames a causal conv puts in front (2 * temporal padding) */
  sf_tensor *w, *b; /* f32 contiguous on the VAE's device (a CPU f32 checkpoint's tensors are used in place) */
} vconv;

typedef enum { VM_RES, VM_ATTN, VM_DOWN2D, VM_DOWN3D, VM_UP2D, VM_UP3D } vkind;

typedef struct {
  vkind kind;
  int cin, cout;
  sf_tensor *g0, *g1;  /* residual norm gammas [cin], [cout]; attention norm gamma in g0 */
  vconv c0, c1, sc;    /* residual convs, shortcut (sc.w NULL = identity) */
  vconv qkv, proj;     /* attention */
  vconv rs, tc;        /* resample: spatial conv, time conv */
  int slot0, slot1;    /* feature-cache slots */
} vmod;

typedef struct {
  vconv conv1;
  vmod *mods;
  int nmods;
  vmod mid[3];
  sf_tensor *head_g;
  vconv head;
  int nslots;
  int middle_first; /* the decoder runs conv1, middle, upsamples; the encoder conv1, downsamples, middle */
} vcoder;

/* one cache slot: up to 2 frames [n, C, H, W] (d NULL: none yet), or the decoder's "Rep" marker */
typedef struct { sf_tensor *d; int rep; } vslot;
typedef struct { vslot *s; int n; } vstate;

struct sf_vae {
  vcoder enc, dec;
  vconv conv1, conv2;
  sf_vae_config cfg;
  sf_device dev;  /* where the weights live and the forward runs */
  vstate *stream; /* decode_chunk state per batch element */
  int nstream;
  int bf16;       /* compute dtype: 0 f32, 1 bf16 (every op's output rounded to bf16, sums in f32) */
};

void vstate_clear(vstate *st);
int vstate_init(vstate *st, int nslots);

/* plain (uncached) convolution of all frames of x with the conv's causal zero padding; up2: the frames are
 * nearest-upsampled 2x on the way in */
sf_tensor *vconv_apply(const vconv *c, sf_tensor *x, int up2, int bf16);
/* Encoder3d / Decoder3d forward of one chunk with caches: *x [T, C, H, W] is replaced by the output */
int vcoder_forward(const vcoder *c, int bf16, vstate *st, sf_tensor **x);

#endif
