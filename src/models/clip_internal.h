/* clip_internal.h — the CLIP tower's weights and preprocessing (clip_vision.c), read by the forward
 * (clip_forward.c). */
#ifndef SF_CLIP_INTERNAL_H
#define SF_CLIP_INTERNAL_H

#include "core/tensor.h"
#include "models/clip_vision.h"

typedef struct {
  sf_tensor *n1w, *n1b, *qkv_w, *qkv_b, *proj_w, *proj_b, *n2w, *n2b, *fc1_w, *fc1_b, *fc2_w, *fc2_b;
} sf_clip_block;

struct sf_clip {
  sf_clip_config cfg;
  sf_tensor *patch_w, *patch_b, *cls, *pos, *pre_w, *pre_b;
  sf_clip_block *blocks;
  char prefix[16];
  int lp; /* compute dtype: 0 f32, 1 bf16, 2 f16 (Wan: fp16 weights under fp16 autocast) */
};

/* img [3, H, W] in [-1, 1] -> normalised pixels [3, S, S] */
void sf_clip_preprocess(const sf_clip *m, const float *img, int H, int W, float *pix);
/* pixels [3, S, S] -> patch rows [grid^2, 3 * patch^2] in the conv weight's (c, ky, kx) order */
void sf_clip_patches(const sf_clip *m, const float *pix, float *patches);

#endif
