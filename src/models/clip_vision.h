/* clip_vision.h — the open-clip ViT visual tower as Wan's I2V image encoder uses it (spec §8):
 * bicubic resize, CLIP normalisation, patch embedding, pre-norm, all transformer blocks but the last. */
#ifndef SF_CLIP_VISION_H
#define SF_CLIP_VISION_H

#include <stdint.h>

#include "models/t5_encoder.h" /* sf_weight_getter */

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  int64_t dim, patch, image_size, grid, num_layers, num_heads, mlp_dim, run_layers;
  int pre_norm, patch_bias;
  float eps;
} sf_clip_config;

typedef struct sf_clip sf_clip;

/* keys "visual.*" (or the same without the prefix); num_heads is not in the shapes; run_layers <= 0
 * means num_layers - 1 (Wan's use_31_block) */
sf_clip *sf_clip_new(sf_weight_getter get, void *ctx, int num_heads, int run_layers);
void sf_clip_free(sf_clip *m);
const sf_clip_config *sf_clip_config_of(const sf_clip *m);
/* compute dtype of the forward (every device): "f32" (default), "f16" (Wan's clip_dtype: fp16 weights under
 * fp16 autocast) or "bf16"; -1 + sf_error otherwise */
int sf_clip_set_dtype(sf_clip *m, const char *dtype);
const char *sf_clip_dtype(const sf_clip *m);

/* torch's bicubic resize (align_corners=False, A = -0.75, no antialias) of C planes [C, H, W] -> [C, oh, ow] */
void sf_bicubic_resize(const float *src, int C, int H, int W, float *dst, int oh, int ow);

/* the tower (clip_forward.c, one forward for every device): images [B, 3, H, W] (cpu, f32, in [-1, 1]) ->
 * f32 [B, 1 + grid^2, dim] on dev; preprocessing stays on the cpu, the weights go to dev one matrix at a time */
sf_tensor *sf_clip_forward(sf_clip *m, const float *imgs, int64_t B, int H, int W, sf_device dev);

#ifdef __cplusplus
}
#endif
#endif
