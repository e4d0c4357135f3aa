/* backend.h — the seam between the tensor core and a device: one op table per device type.
 * The core (src/core/ops.c) does all shape logic, broadcasting and type promotion; a backend only
 * executes already-checked strided ops on its own device. CPU is the always-on oracle; the CUDA
 * backend serves both `cuda:N` and `emu:N` (same host code and kernels, see kernels/emu/). */
#ifndef SF_BACKEND_H
#define SF_BACKEND_H

#include "core/dispatch.h"
#include "core/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Extension tables owned by later layers (each declares its struct in its own header):
 *   sf_nn_ops    (core/nn_ops.h)    fused model ops: norms, RoPE, attention + capture, ...
 *   sf_conv_ops  (src/backend/conv_ops.h)  convolutions for the VAE / patch embedding
 *   sf_train_ops (core/train_ops.h) fused backward / optimizer ops (AdamW, clipping, EMA) */
struct sf_nn_ops;
struct sf_conv_ops;
struct sf_train_ops;

/* optional capabilities of a backend, asked through sf_backend.supports before the op is called */
typedef enum {
  SF_CAP_UNARY_BWD,  /* train->unary_bwd fuses the backward of activation `op` (sf_unary_op) */
  SF_CAP_MATMUL_ACC, /* train->matmul_acc can add a b into out for these operands */
  SF_CAP_LINEAR_BIAS, /* train->linear_bias can compute out = a b + bias for out, a, b (bias [N], out's dtype, unit stride) */
  SF_CAP_CONV_FRAMES, /* conv->conv_frames: the frame-list convolution (causal caches prepended without a copy) */
  SF_CAP_CHANNEL_NORM, /* nn->channel_norm: the Wan VAE's RMS norm over channels (+ SiLU, bf16 rounding) */
} sf_capability;

typedef struct sf_backend {
  const char *name;
  int (*device_count)(void);

  /* memory */
  void *(*alloc)(sf_device dev, size_t nbytes); /* NULL + sf_error on failure; nbytes may be 0 */
  void (*free)(sf_device dev, void *p, size_t nbytes);
  int (*copy_h2d)(sf_device dev, void *dst, const void *src, size_t nbytes);
  int (*copy_d2h)(sf_device dev, void *dst, const void *src, size_t nbytes);
  int (*sync)(sf_device dev);

  /* Strided ops. All tensors live on this backend's device. `out` may be any strided view.
   * copy:   dst and src have the same shape (src may have 0 strides); dtypes may differ (cast).
   * unary:  a has out's shape and dtype (float ops get float dtypes; ISNAN/LOGICAL_NOT give bool out).
   * binary: a and b have out's shape (0 strides for broadcast dims) and the same dtype;
   *         out has that dtype, or bool for comparisons.
   * reduce: reduces `dim` of a (0-based); out is contiguous with a's shape and size 1 at dim.
   *         sums of integer/bool inputs give i64; ARGMAX/ARGMIN give i64; float ops accumulate in f32+.
   * softmax: out contiguous, same shape/dtype as a, over dim (f32 accumulation).
   * matmul: a [B, M, K], b [B, K, N], out [B, M, N] contiguous, same float dtype (or f32 out for bf16/f16
   *         operands: the unrounded f32 accumulator); the batch stride of
   *         a or b may be 0; each matrix has unit stride in one of its two inner dims.
   * random: out contiguous float; element i uses Philox counter (offset + i); kind 0 normal, 1 uniform [0,1). */
  int (*copy)(sf_tensor *dst, const sf_tensor *src);
  int (*fill)(sf_tensor *t, double v);
  int (*unary)(sf_unary_op op, sf_tensor *out, const sf_tensor *a, double p0, double p1);
  int (*binary)(sf_binary_op op, sf_tensor *out, const sf_tensor *a, const sf_tensor *b);
  int (*binary_scalar)(sf_binary_op op, sf_tensor *out, const sf_tensor *a, double s, bool scalar_first);
  int (*where)(sf_tensor *out, const sf_tensor *cond, const sf_tensor *a, const sf_tensor *b);
  int (*reduce)(sf_reduce_op op, sf_tensor *out, const sf_tensor *a, int dim);
  int (*softmax)(sf_tensor *out, const sf_tensor *a, int dim, bool log);
  int (*matmul)(sf_tensor *out, const sf_tensor *a, const sf_tensor *b);
  int (*random)(sf_tensor *out, uint64_t seed, uint64_t offset, int kind);

  const struct sf_nn_ops *nn;
  const struct sf_conv_ops *conv;
  const struct sf_train_ops *train;

  /* optional ops (ggml's supports_op): may the caller use the capability for these operands? NULL = none.
   * An op the query allows must then succeed (0) or fail with an error (-1); "1 = not done" is gone. */
  bool (*supports)(sf_capability cap, int op, const sf_tensor *out, const sf_tensor *a, const sf_tensor *b);
} sf_backend;

/* the capability query of `b` (false for a NULL backend or a backend without the query) */
bool sf_backend_supports(const sf_backend *b, sf_capability cap, int op, const sf_tensor *out, const sf_tensor *a,
                         const sf_tensor *b2);

/* registry (core/registry.c): every backend is registered explicitly, once, by sf_backends_init (src/backend) (cpu always, emu always,
 * cuda when built with it); each registers one complete table (core, nn, conv, train, supports). */
void sf_register_backend(sf_devtype type, const sf_backend *b);
const sf_backend *sf_backend_for(sf_device dev); /* NULL + error for an absent device */
const sf_backend *sf_backend_of(const sf_tensor *t);
int sf_backends_init(void);                /* idempotent; called by sfwb's Lua module on open */
/* "cpu", "emu:0", ... of every usable device, NULL-terminated static array */
int sf_device_list(char names[][16], int max);

extern const sf_backend sf_cpu_backend;

#ifdef __cplusplus
}
#endif
#endif
