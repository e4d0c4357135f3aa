/* conv_ops.h — convolutions for the VAE and patch embeddings: the per-device op table (backend.h's
 * `conv` slot) and the CPU f32 kernel it is built on, which works on lists of frames so that causal
 * caches and zero frames are prepended without copies. */
#ifndef SF_CONV_OPS_H
#define SF_CONV_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "core/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  int cin, cout, kt, kh, kw;
  int st, sh, sw;                                  /* strides (time, height, width) */
  int pad_top, pad_bottom, pad_left, pad_right;    /* spatial zero padding (time padding = NULL frames) */
} sf_conv_geom;

static inline int sf_conv_out_h(const sf_conv_geom *g, int H) { return (H + g->pad_top + g->pad_bottom - g->kh) / g->sh + 1; }
static inline int sf_conv_out_w(const sf_conv_geom *g, int W) { return (W + g->pad_left + g->pad_right - g->kw) / g->sw + 1; }
static inline int sf_conv_out_t(const sf_conv_geom *g, int nin) { return nin < g->kt ? 0 : (nin - g->kt) / g->st + 1; }

/* frames[nin]: pointers to f32 [cin, H, W] frames (NULL = zeros); w [cout, cin, kt, kh, kw]; b [cout] or NULL.
 * Writes sf_conv_out_t frames of [cout, Ho, Wo] contiguously to the start of out, which must hold
 * sf_conv_frames_out_floats(g, nin, H, W, 0) floats (a little more than the result: stride-1 convs
 * compute on rows padded to the input's padded width, then compact them in place).
 * Stride 1: shifted GEMMs over zero-padded frames (OpenBLAS SGEMM); other strides: im2col tiles + SGEMM. */
int sf_conv3d_frames_f32(const sf_conv_geom *g, const float *const *frames, int nin, int H, int W, const float *w,
                         const float *b, float *out);
/* the same with flags: SF_CONV_UP2 — the input frames are nearest-upsampled 2x on the way in (H, W are
 * the frames' own size; stride 1 only); SF_CONV_BF16 — bf16 compute as torch/cuDNN run a bf16 conv:
 * weights and bias rounded to bf16, products of bf16 values summed in f32, the output (bias added)
 * rounded to bf16 once (the input frames are expected to hold bf16 values already).
 * wp: weights prepared by sf_conv_prep_weights with the same flags, or NULL (prepared per call). */
enum { SF_CONV_UP2 = 1, SF_CONV_BF16 = 2 };
int sf_conv3d_frames_f32x(const sf_conv_geom *g, const float *const *frames, int nin, int H, int W, int flags,
                          const float *w, const float *wp, const float *b, float *out);
int64_t sf_conv_frames_out_floats(const sf_conv_geom *g, int nin, int H, int W, int up2);
/* the stride-1 kernel's weight layout [kh*kw][kt, tap-reversed][cout][cin]: sf_conv_prep_floats floats */
size_t sf_conv_prep_floats(const sf_conv_geom *g);
void sf_conv_prep_weights(const sf_conv_geom *g, const float *w, int flags, float *wp);

/* Tensor-level convolution as torch.nn.functional.conv3d/conv2d with zero padding.
 * conv3d: x [N, Cin, T, H, W], w [Cout, Cin, kt, kh, kw]; conv2d: x [N, Cin, H, W], w [Cout, Cin, kh, kw].
 * stride/pad hold (t, h, w) for 3-D and (h, w) for 2-D; out is allocated by the op. */
typedef struct sf_conv_ops {
  sf_tensor *(*conv3d)(sf_tensor *x, sf_tensor *w, sf_tensor *b, const int stride[3], const int pad[3]);
  sf_tensor *(*conv2d)(sf_tensor *x, sf_tensor *w, sf_tensor *b, const int stride[2], const int pad[2]);
  /* optional (SF_CAP_CONV_FRAMES; ops/frame_ops.h's sf_conv_frames is the checked entry, with a composed
   * fallback): the convolution of nzero zero frames followed by the frames of parts[0..nparts) (each f32
   * contiguous [Ti, cin, H, W], frame-major) with geometry g, flags SF_CONV_UP2 / SF_CONV_BF16 as
   * sf_conv3d_frames_f32x; w f32 contiguous with g's cout*cin*kt*kh*kw elements, b f32 [cout] or NULL.
   * Returns [To, cout, Ho, Wo] f32. */
  sf_tensor *(*conv_frames)(const sf_conv_geom *g, int nzero, sf_tensor *const *parts, int nparts, int flags,
                            sf_tensor *w, sf_tensor *b);
} sf_conv_ops;

extern const sf_conv_ops sf_cpu_conv_ops;
/* the CPU conv2d (nd 2) / conv3d (nd 3) with SF_CONV_BF16 (bf16 compute, as the VAE's bf16 mode) */
sf_tensor *sf_conv_cpu_flags(int nd, sf_tensor *x, sf_tensor *w, sf_tensor *b, const int *stride, const int *pad, int flags);
/* the conv table serving x's device: the backend's own, else the CPU one for cpu tensors */
const sf_conv_ops *sf_conv_ops_for(const sf_tensor *x);
sf_tensor *sf_conv3d(sf_tensor *x, sf_tensor *w, sf_tensor *b, const int stride[3], const int pad[3]);
sf_tensor *sf_conv2d(sf_tensor *x, sf_tensor *w, sf_tensor *b, const int stride[2], const int pad[2]);

/* conv_grad_cpu.c: the f64 forward (what sf_conv3d/sf_conv2d run for f64 cpu inputs: gradient checks
 * difference it) and the backward of conv2d (nd 2) / conv3d (nd 3) on the CPU, computed in f64. Any of
 * gx, gw, gb may be NULL (not wanted); the gradients are f64 for f64 x, else f32. Returns 0 or -1. */
sf_tensor *sf_conv_f64_cpu(int nd, sf_tensor *x, sf_tensor *w, sf_tensor *b, const int *stride, const int *pad);
int sf_conv_backward_cpu(int nd, sf_tensor *x, sf_tensor *w, sf_tensor *gout, const int *stride, const int *pad,
                         sf_tensor **gx, sf_tensor **gw, sf_tensor **gb);

#ifdef __cplusplus
}
#endif
#endif
