/* sf_train_kernels.h — launchers of the training kernels (kernels/train.cu): backward of the fused model
 * ops and the optimizer pieces, called by src/backend/cuda/cuda_train.cc. Each returns 0, or -1 + sf_error. */
#ifndef SF_TRAIN_KERNELS_H
#define SF_TRAIN_KERNELS_H

#include "sf_kernels.h"

namespace SF_CUDA_NS {

/* LayerNorm (rms = 0) / RMSNorm (rms = 1) backward over rows of D; dx f32 [R, D] (may be NULL);
 * dw/db f32 [D] accumulated with atomics (zeroed by the launcher; either may be NULL) */
int sf_k_norm_bwd(float *dx, float *dw, float *db, const void *dy, int dydt, const void *x, int xdt, const void *w, int wdt,
                  int64_t R, int64_t D, double eps, int rms);

struct sf_k_attn_bwd_args {
  float *dq, *dk, *dv;            /* contiguous f32 [B, L, H, d]; every row written; may be NULL */
  const void *q, *k, *v, *o, *dout;
  int dt, odt, gdt;               /* dtype of q/k/v, of o, of dout */
  int64_t B, Lq, Lk, H, d;
  int64_t qs[3], ks[3], vs[3], os[3], gs[3]; /* strides of batch, token, head */
  float scale;
  int64_t q_group, n_qg;
  const int64_t *kv_lo, *kv_hi;   /* device [n_qg] or NULL */
  const float *lse;               /* device [B, H, Lq] */
  float *delta;                   /* device scratch [B, H, Lq] */
};
/* kernels/attn_bwd.cu: head dim <= 128; deterministic (no atomics) */
int sf_k_attention_bwd(const sf_k_attn_bwd_args *a);

/* dx = dy * f'(x) for op SF_UN_GELU_TANH / SILU / TANH / SIGMOID, contiguous, n elements; f32 math (f64 when
 * x or dy is f64), as the CPU's fused backward */
int sf_k_unary_bwd(int op, void *dx, int dxdt, const void *dy, int dydt, const void *x, int xdt, int64_t n);

int sf_k_adamw(void *param, int pdt, float *master, const void *grad, int gdt, float *m, float *v, int64_t n, float decay,
               float b1, float b2, float a1, float a2, float step_size, float bc2s, float eps);
/* *out (device double) = sum of squares of x */
int sf_k_sum_sq(double *out, const void *x, int dt, int64_t n);
int sf_k_ema(float *shadow, const void *p, int pdt, int64_t n, float d, float a);

} // namespace SF_CUDA_NS

#endif
