/* enc_kernels.h — f32 CPU building blocks shared by the text encoder and CLIP tower: weight
 * fetching (bf16/f16/f32 -> f32), linear layers on OpenBLAS, norms, activations, attention; the
 * elementwise kernels run on the CPU backend's pool (cpu_pool.h), not OpenMP. */
#ifndef SF_ENC_KERNELS_H
#define SF_ENC_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "backend/cpu/cpu_pool.h" /* SF_PAR_MIN */
#include "core/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A growable f32 scratch buffer (freed by sf_scratch_free). */
typedef struct { float *p; size_t cap; } sf_scratch;
float *sf_scratch_get(sf_scratch *s, size_t n); /* NULL + sf_error on OOM */
void sf_scratch_free(sf_scratch *s);

/* f32 data of a CPU tensor holding `expect` elements: a pointer into t when it is contiguous f32,
 * else a converted copy in *s. NULL + sf_error naming `what` on a wrong size, device or dtype. */
const float *sf_enc_f32(const sf_tensor *t, int64_t expect, const char *what, sf_scratch *s);

/* y[M, N] = x[M, K] w[N, K]^T (+ bias[N]) — torch.nn.functional.linear */
void sf_enc_linear(const float *x, int64_t M, int64_t K, const float *w, int64_t N, const float *bias, float *y);

/* T5 RMS norm over rows of length D: y = w * (x * rsqrt(mean(x^2) + eps)) */
void sf_enc_rmsnorm(const float *x, int64_t rows, int64_t D, const float *w, float eps, float *y);
/* LayerNorm over rows of length D with affine w, b */
void sf_enc_layernorm(const float *x, int64_t rows, int64_t D, const float *w, const float *b, float eps, float *y);
/* exp(x) for f32 within ~1 ulp (Cephes' polynomial after a ln2 range reduction), written so that loops
 * calling it vectorize (glibc's expf does not without -ffast-math); NaN stays NaN, +-inf saturate */
static inline float sf_enc_expf(float x) {
  float xc = x < -87.33654f ? -87.33654f : x > 88.72283f ? 88.72283f : x;
  float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round to nearest even */
  float r = xc - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500E-4f;
  p = p * r + 1.3981999507E-3f;
  p = p * r + 8.3334519073E-3f;
  p = p * r + 4.1665795894E-2f;
  p = p * r + 1.6666665459E-1f;
  p = p * r + 5.0000001201E-1f;
  float y = p * r * r + r + 1.0f;
  int32_t e = (int32_t)n + 126; /* 2^n = 2^(n-1) * 2 keeps n = 128 in range */
  float s;
  uint32_t u = (uint32_t)e << 23;
  __builtin_memcpy(&s, &u, sizeof s);
  y = y * s * 2.0f;
  return x != x ? x : y;
}

/* in-place activations */
void sf_enc_gelu_tanh(float *x, int64_t n);
void sf_enc_gelu_erf(float *x, int64_t n);
/* x += y, x *= y over n floats (pool-parallel) */
void sf_enc_add(float *x, const float *y, int64_t n);
void sf_enc_mul(float *x, const float *y, int64_t n);
/* softmax over each row of length n (in place) */
void sf_enc_softmax_rows(float *x, int64_t rows, int64_t n);

/* Multi-head attention for one sequence. q [Lq, *], k/v [Lk, *] rows of stride ld_q/ld_kv floats,
 * head h at column offset h*d; out [Lq, H*d] (row stride H*d).
 * scores = scale * q k^T (+ bias[h, i, j] when bias) ; masked keys (key_mask[j] == 0) get the bias
 * replaced by -FLT_MAX as T5's masked_fill; softmax in f32. `tmp` is scratch. */
int sf_enc_attention(const float *q, int64_t ld_q, const float *k, const float *v, int64_t ld_kv, int64_t Lq,
                     int64_t Lk, int64_t H, int64_t d, float scale, const float *bias, const int64_t *key_mask,
                     float *out, sf_scratch *tmp);

#ifdef __cplusplus
}
#endif
#endif
