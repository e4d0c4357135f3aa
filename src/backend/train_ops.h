/* train_ops.h — the training op table (`sf_backend.train`): backward kernels of the fused model ops and
 * the fused optimizer pieces (AdamW, EMA). Callers (src/autograd, src/autograd/optim.c) check shapes,
 * dtypes and devices; a backend only executes. All tensors contiguous unless stated. Gradients and
 * optimizer state are f32 (inputs may be f32/bf16/f16); accumulation is f32 or wider. */
#ifndef SF_TRAIN_OPS_H
#define SF_TRAIN_OPS_H

#include "backend/nn_ops.h"
#include "core/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sf_train_ops {
  /* LayerNorm over the last dim D of x (viewed [R, D]); dy like x. Row statistics are recomputed from x.
   * dx f32 like x; dw, db f32 [D] (NULL when not wanted / no affine); w NULL = no affine. */
  int (*layer_norm_bwd)(sf_tensor *dx, sf_tensor *dw, sf_tensor *db, const sf_tensor *dy, const sf_tensor *x,
                        const sf_tensor *w, double eps);
  /* Wan RMSNorm y = (x * rstd) * w: dx f32 like x, dw f32 [D] (NULL when not wanted); w may be NULL. */
  int (*rms_norm_bwd)(sf_tensor *dx, sf_tensor *dw, const sf_tensor *dy, const sf_tensor *x, const sf_tensor *w,
                      double eps);
  /* the transpose of rope3d (rotation by the negative angles): dx f32 [B, L, H, d] from dy [B, L, H, d] */
  int (*rope3d_bwd)(sf_tensor *dx, const sf_tensor *dy, int64_t F, int64_t Hp, int64_t Wp, int64_t f0);
  /* flash-attention backward (no Lq x Lk matrix): q/k/v/out/dout as the forward ([B, L, H, d], unit stride
   * on d, any other strides), lse f32 [B, H, Lq] from the forward, visibility from desc (capture fields
   * ignored). dq f32 [B, Lq, H, d], dk/dv f32 [B, Lk, H, d], contiguous, each may be NULL. */
  int (*attention_bwd)(sf_tensor *dq, sf_tensor *dk, sf_tensor *dv, const sf_tensor *dout, const sf_tensor *q,
                       const sf_tensor *k, const sf_tensor *v, const sf_tensor *out, const sf_tensor *lse,
                       const sf_attn_desc *desc);
  /* torch.optim.AdamW on one tensor. master: f32 copy of a bf16/f16 param (NULL when param is f32, then
   * param is updated directly); grad f32 or the param's dtype; exp_avg/exp_avg_sq f32. bc1 = 1 - beta1^t,
   * bc2 = 1 - beta2^t. param (and master) updated in place. */
  int (*adamw)(sf_tensor *param, sf_tensor *master, const sf_tensor *grad, sf_tensor *exp_avg, sf_tensor *exp_avg_sq,
               double lr, double beta1, double beta2, double eps, double weight_decay, double bc1, double bc2);
  /* sum of squares of t (any float dtype, contiguous) accumulated in f64 into *out (host) */
  int (*sum_sq)(const sf_tensor *t, double *out);
  /* shadow (f32) = decay * shadow + (1 - decay) * param */
  int (*ema)(sf_tensor *shadow, const sf_tensor *param, double decay);
  /* optional fused backward of an activation (sf_unary_op): dx = dy * f'(x), all contiguous, same shape, dx
   * of dy's dtype. Called only for ops the backend's supports(SF_CAP_UNARY_BWD, op) allows. */
  int (*unary_bwd)(int op, sf_tensor *dx, const sf_tensor *dy, const sf_tensor *x);
  /* optional: out += a b for 2-D a [M, K], b [K, N] of out's float dtype (each with unit stride in one of its
   * two dims), out contiguous [M, N]: backward adds a gradient GEMM straight into the gradient accumulated so
   * far (no temporary, no separate add). Called only when supports(SF_CAP_MATMUL_ACC, 0, out, a, b) allows. */
  int (*matmul_acc)(sf_tensor *out, const sf_tensor *a, const sf_tensor *b);
  /* optional: out [M, N] (bf16/f16, contiguous) = round(a b + bias) for 2-D a [M, K], b [K, N] and bias [N] of
   * out's dtype (a, b with unit stride in one of their two dims): f32 accumulation, the bias added in f32, one
   * rounding; the low-precision linear layer in one GEMM (cuBLASLt's bias epilogue) instead of an f32 GEMM
   * output, a bias add and a cast. Called only when supports(SF_CAP_LINEAR_BIAS, 0, out, a, b) allows. */
  int (*linear_bias)(sf_tensor *out, const sf_tensor *a, const sf_tensor *b, const sf_tensor *bias);
} sf_train_ops;

#ifdef __cplusplus
}
#endif
#endif
