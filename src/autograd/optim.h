/* optim.h — fused optimizer pieces on tensors of any device: torch.optim.AdamW's update of one tensor,
 * global gradient-norm clipping (torch.nn.utils.clip_grad_norm_), EMA update. All run without
 * recording (they write parameters in place). */
#ifndef SF_OPTIM_H
#define SF_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "core/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One AdamW step on `param` (contiguous f32/bf16/f16) with gradient `grad` (same shape, f32 or the
 * param's dtype); exp_avg/exp_avg_sq f32 state; master: f32 master copy for a bf16/f16 param (NULL for
 * f32 params). step is the 1-based step count of this param (bias corrections 1 - beta^step). */
int sf_adamw_update(sf_tensor *param, sf_tensor *master, sf_tensor *grad, sf_tensor *exp_avg, sf_tensor *exp_avg_sq,
                    double lr, double beta1, double beta2, double eps, double weight_decay, int64_t step);
/* sum of squares of a float tensor (f64 accumulation) */
int sf_sum_sq(sf_tensor *t, double *out);
/* torch.nn.utils.clip_grad_norm_(params, max_norm): the total L2 norm of the .grad of params (those
 * without a grad are skipped), grads scaled by max_norm / (norm + 1e-6) when that is < 1.
 * Returns the norm (before clipping), or -1 with sf_error set. */
double sf_clip_grad_norm(sf_tensor *const *params, int n, double max_norm);
/* shadow (f32, same shape) = decay * shadow + (1 - decay) * param */
int sf_ema_update(sf_tensor *shadow, sf_tensor *param, double decay);

/* CPU allocator statistics (bytes): live now, and the peak since start or the last reset */
void sf_cpu_memory_stats(size_t *live, size_t *peak);
void sf_cpu_reset_peak_memory(void);

#ifdef __cplusplus
}
#endif
#endif
