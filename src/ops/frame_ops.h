/* frame_ops.h — ops on frame-major video tensors [T, C, H, W] (f32; the Wan VAE's layout): the causal
 * frame-list convolution and the VAE's RMS norm over channels. Each runs the backend's fused op where its
 * `supports` query allows (the CPU: conv_cpu.c, cpu_channel_norm.c), else the same computation composed of
 * core ops (cat, permute, conv3d, reduce, ...), so every device runs them with the same rounding rules.
 * Not recorded by autograd. Results are new references, inputs borrowed, NULL + sf_last_error() on failure. */
#ifndef SF_FRAME_OPS_H
#define SF_FRAME_OPS_H

#include "backend/conv_ops.h"
#include "core/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* the convolution with geometry g of nzero zero frames followed by the frames of parts[0..nparts) (each f32
 * contiguous [Ti, cin, H, W] on one device); flags SF_CONV_UP2 (frames nearest-upsampled 2x on the way in),
 * SF_CONV_BF16 (weights, bias and the output rounded to bf16, sums in f32). w holds cout*cin*kt*kh*kw f32
 * values (any shape), b [cout] or NULL. Returns [To, cout, Ho, Wo] f32. */
sf_tensor *sf_conv_frames(const sf_conv_geom *g, int nzero, sf_tensor *const *parts, int nparts, int flags, sf_tensor *w,
                          sf_tensor *b);
/* x [T, C, H, W] f32 contiguous: x / max(|x|_C, 1e-12) * sqrt(C) * gamma (then SiLU when silu); bf16 rounds every
 * op's output. inplace: the result is written over x (and x returned retained). */
sf_tensor *sf_channel_norm(sf_tensor *x, sf_tensor *gamma, int silu, int bf16, int inplace);
/* parts (f32 [Ti, C, H, W], one device) concatenated along the frames into a new contiguous tensor. On the CPU
 * frame tensors made here (this, sf_channel_norm's output, the CPU conv_frames' output) are plain malloc, not
 * the backend's recycled blocks: their sizes change at every layer, so recycled blocks would sit unused
 * beside the live ones and raise the peak. */
sf_tensor *sf_frames_cat(sf_tensor *const *parts, int n);
/* rounds the f32 values of t to bf16 in place (kept f32) */
int sf_round_bf16_(sf_tensor *t);

#ifdef __cplusplus
}
#endif
#endif
