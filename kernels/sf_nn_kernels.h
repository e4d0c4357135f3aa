/* sf_nn_kernels.h — launchers of the fused model-op kernels (kernels/nn_*.cu), called by the CUDA
 * backend's nn table (src/backend/cuda/cuda_nn.cc). Each returns 0, or -1 + sf_error. */
#ifndef SF_NN_KERNELS_H
#define SF_NN_KERNELS_H

#include "sf_kernels.h"

namespace SF_CUDA_NS {

int sf_k_layer_norm(void *out, const void *x, int dt, const void *w, int wdt, const void *b, int bdt, int64_t R, int64_t D,
                    double eps, float *mean, float *rstd);
int sf_k_rms_norm(void *out, const void *x, int dt, const void *w, int wdt, int64_t R, int64_t D, double eps, float *rstd);
/* gated = 0: out = x * (1 + scale) + shift; gated = 1: out = x + y * gate (v1 = gate, y = v2 pointer) */
int sf_k_modulate(void *out, const void *x, int dt, const void *v1, int v1dt, int64_t v1rs, const void *v2, int v2dt,
                  int64_t v2rs, int64_t G, int64_t R, int64_t D, int gated);
/* inverse: rotate by -theta (the backward) */
int sf_k_rope3d(void *out, int odt, const void *x, int xdt, int64_t B, int64_t L, int64_t H, int64_t d, int64_t sb, int64_t sl,
                int64_t sh, int64_t F, int64_t Hp, int64_t Wp, int64_t f0, bool inverse);

struct sf_k_attn_args {
  void *out;
  const void *q, *k, *v;
  int dt;
  int64_t B, Lq, Lk, H, d;
  int64_t qs[3], ks[3], vs[3]; /* strides (elements) of batch, token, head */
  float scale;
  int64_t q_group, n_qg, k_group, n_kg;
  const int64_t *kv_lo, *kv_hi; /* device arrays [n_qg] or NULL */
  float *cap_logits, *cap_probs; /* device [H, n_qg, n_kg] or NULL */
  float *lse;                    /* device [B, H, Lq] or NULL */
  int64_t tq0, tq1, tk0, tk1;    /* token-level capture range */
  float *tok_logits, *tok_probs; /* device [H, tq1-tq0, tk1-tk0] or NULL (+= value / B; NaN where invisible) */
  int capture_only;              /* out and lse already written (tensor-core kernel): only the capture sweep runs,
                                    with p = exp(s - lse); lse must be given */
};
int sf_k_attention(const sf_k_attn_args *a);
/* the tensor-core forward (kernels/attn_fwd_mma.cu): bf16/f16, head dim <= 128, no capture. sf_k_attention
 * takes it by default on the GPU and on emu with SFWB_ATTN_MMA=1 (SFWB_ATTN_MMA=0: never), then runs the
 * capture sweep of the f32-P kernel on its lse when a capture is asked for (needs a->lse). */
int sf_k_attention_mma(const sf_k_attn_args *a);

} // namespace SF_CUDA_NS

#endif
