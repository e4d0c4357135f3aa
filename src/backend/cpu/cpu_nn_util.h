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

extern const struct sf_nn_ops sf_cpu_nn_ops;

#endif
