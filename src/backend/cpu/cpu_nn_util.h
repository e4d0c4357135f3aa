/* cpu_nn_util.h — element load/store over the float dtypes for the CPU nn ops (private to cpu_nn_*.c). */
#ifndef SF_CPU_NN_UTIL_H
#define SF_CPU_NN_UTIL_H

#include "core/half.h"
#include "core/tensor.h"

static inline float sf_nn_ld(const void *p, sf_dtype dt, int64_t i) {
  switch (dt) {
  case SF_F32: return ((const float *)p)[i];
  case SF_BF16: return sf_bf16_to_f32(((const uint16_t *)p)[i]);
  case SF_F16: return sf_f16_to_f32(((const uint16_t *)p)[i]);
  case SF_F64: return (float)((const double *)p)[i];
  default: return 0.0f;
  }
}

static inline void sf_nn_st(void *p, sf_dtype dt, int64_t i, float v) {
  switch (dt) {
  case SF_F32: ((float *)p)[i] = v; break;
  case SF_BF16: ((uint16_t *)p)[i] = sf_f32_to_bf16(v); break;
  case SF_F16: ((uint16_t *)p)[i] = sf_f32_to_f16(v); break;
  case SF_F64: ((double *)p)[i] = v; break;
  default: break;
  }
}

/* round a value to what dtype `dt` can hold (identity for f32): models PyTorch's op-by-op rounding */
static inline float sf_nn_round(float v, sf_dtype dt) {
  if (dt == SF_BF16) return sf_bf16_to_f32(sf_f32_to_bf16(v));
  if (dt == SF_F16) return sf_f16_to_f32(sf_f32_to_f16(v));
  return v;
}

/* Row sums in f64 over 8 independent lanes, so they vectorize (one running sum is a serial chain of adds:
 * compilers do not reassociate float sums); the result differs from a serial f64 sum only far below f32
 * resolution. */
static inline double sf_nn_sum_d(const float *x, int64_t n) {
  double l[8] = {0};
  int64_t c = 0;
  for (; c + 8 <= n; c += 8)
    for (int k = 0; k < 8; k++) l[k] += x[c + k];
  for (; c < n; c++) l[0] += x[c];
  return ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
}

/* sum of (x - mu)^2 in f64 (mu = 0: sum of squares) */
static inline double sf_nn_sumsq_d(const float *x, int64_t n, double mu) {
  double l[8] = {0};
  int64_t c = 0;
  for (; c + 8 <= n; c += 8)
    for (int k = 0; k < 8; k++) {
      const double d = x[c + k] - mu;
      l[k] += d * d;
    }
  for (; c < n; c++) {
    const double d = x[c] - mu;
    l[0] += d * d;
  }
  return ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
}

/* row i of a [R, D] dtype array as f32: in place for f32, else converted into buf */
static inline const float *sf_nn_row_f32(const void *p, sf_dtype dt, int64_t i, int64_t D, float *buf) {
  if (dt == SF_F32) return (const float *)p + i * D;
  for (int64_t c = 0; c < D; c++) buf[c] = sf_nn_ld(p, dt, i * D + c);
  return buf;
}

extern const struct sf_nn_ops sf_cpu_nn_ops;

/* RoPE (cpu_nn_norm.c) by theta, or by -theta when inverse (its backward) */
int sf_cpu_rope3d_dir(sf_tensor *out, const sf_tensor *x, int64_t F, int64_t Hp, int64_t Wp, int64_t f0, bool inverse);

#endif
