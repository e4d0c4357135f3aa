/* tensor_ref.h — test-side helpers that touch tensor memory directly (no backend op involved), so
 * tests can build inputs and read results independently of the code under test: per-dtype element
 * encode/decode, tensors from double arrays, strided reads into double arrays, a small PRNG. */
#ifndef SF_TENSOR_REF_H
#define SF_TENSOR_REF_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/half.h"
#include "ops/ops.h"

static inline double ref_get(sf_dtype dt, const void *p) {
  switch (dt) {
  case SF_F32: return *(const float *)p;
  case SF_BF16: return sf_bf16_to_f32(*(const uint16_t *)p);
  case SF_F16: return sf_f16_to_f32(*(const uint16_t *)p);
  case SF_F64: return *(const double *)p;
  case SF_I64: return (double)*(const int64_t *)p;
  case SF_I32: return *(const int32_t *)p;
  case SF_U8: return *(const uint8_t *)p;
  case SF_BOOL: return *(const uint8_t *)p != 0;
  default: return NAN;
  }
}

static inline void ref_set(sf_dtype dt, void *p, double v) {
  switch (dt) {
  case SF_F32: *(float *)p = (float)v; break;
  case SF_BF16: *(uint16_t *)p = sf_f32_to_bf16((float)v); break;
  case SF_F16: *(uint16_t *)p = sf_f32_to_f16((float)v); break;
  case SF_F64: *(double *)p = v; break;
  case SF_I64: *(int64_t *)p = (int64_t)v; break;
  case SF_I32: *(int32_t *)p = (int32_t)(int64_t)v; break;
  case SF_U8: *(uint8_t *)p = (uint8_t)(int64_t)v; break;
  case SF_BOOL: *(uint8_t *)p = v != 0; break;
  default: break;
  }
}

/* byte address of the element at linear (row-major logical) index i of t */
static inline char *ref_addr(const sf_tensor *t, int64_t i) {
  int64_t off = t->offset;
  for (int d = t->ndim - 1; d >= 0; d--) {
    int64_t k = i % t->shape[d];
    i /= t->shape[d];
    off += k * t->stride[d];
  }
  return (char *)t->storage->data + off * (int64_t)sf_dtype_size(t->dtype);
}

/* all elements of t in logical order (caller frees) */
static inline double *ref_read(const sf_tensor *t) {
  int64_t n = sf_numel(t);
  double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
  for (int64_t i = 0; i < n; i++) v[i] = ref_get(t->dtype, ref_addr(t, i));
  return v;
}

/* contiguous tensor holding vals (rounded to dt) */
static inline sf_tensor *ref_tensor(sf_dtype dt, int ndim, const int64_t *shape, const double *vals) {
  sf_tensor *t = sf_empty(ndim, shape, dt, sf_cpu());
  if (!t) return NULL;
  int64_t n = sf_numel(t);
  for (int64_t i = 0; i < n; i++) ref_set(dt, ref_addr(t, i), vals[i]);
  return t;
}

/* xorshift PRNG: tests are reproducible from their seed */
static uint64_t ref_rng_state = 0x9E3779B97F4A7C15ull;
static inline uint64_t ref_rand_u64(void) {
  uint64_t x = ref_rng_state;
  x ^= x << 13; x ^= x >> 7; x ^= x << 17;
  return ref_rng_state = x;
}
static inline int ref_randint(int lo, int hi) { return lo + (int)(ref_rand_u64() % (uint64_t)(hi - lo + 1)); } /* [lo, hi] */
static inline double ref_uniform(double lo, double hi) { return lo + (hi - lo) * (double)(ref_rand_u64() >> 11) / 9007199254740992.0; }

/* |got - want| within atol + rtol |want|; NaN matches NaN, inf matches the same inf */
static inline int ref_close(double got, double want, double rtol, double atol) {
  if (want != want) return got != got;
  if (isinf(want)) return got == want;
  return fabs(got - want) <= atol + rtol * fabs(want);
}

/* the double-precision meaning of each unary op (NaN propagates through relu/clamp, as torch) */
static inline double ref_unary(sf_unary_op op, double x, double p0, double p1) {
  switch (op) {
  case SF_UN_NEG: return -x;
  case SF_UN_ABS: return fabs(x);
  case SF_UN_EXP: return exp(x);
  case SF_UN_LOG: return log(x);
  case SF_UN_SQRT: return sqrt(x);
  case SF_UN_RSQRT: return 1 / sqrt(x);
  case SF_UN_SIN: return sin(x);
  case SF_UN_COS: return cos(x);
  case SF_UN_TANH: return tanh(x);
  case SF_UN_SIGMOID: return 1 / (1 + exp(-x));
  case SF_UN_SILU: return x / (1 + exp(-x));
  case SF_UN_GELU_TANH: return 0.5 * x * (1 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
  case SF_UN_GELU: return 0.5 * x * (1 + erf(x / sqrt(2.0)));
  case SF_UN_RELU: return x != x ? x : x > 0 ? x : 0;
  case SF_UN_RECIP: return 1 / x;
  case SF_UN_SQUARE: return x * x;
  case SF_UN_FLOOR: return floor(x);
  case SF_UN_CEIL: return ceil(x);
  case SF_UN_ROUND: return nearbyint(x);
  case SF_UN_SIGN: return x > 0 ? 1 : x < 0 ? -1 : 0;
  case SF_UN_ISNAN: return x != x;
  case SF_UN_LOGICAL_NOT: return x == 0;
  case SF_UN_POW: return pow(x, p0);
  case SF_UN_CLAMP: return x != x ? x : x < p0 ? p0 : x > p1 ? p1 : x;
  default: return NAN;
  }
}

/* the double-precision value of a binary op (NaN propagates through max/min, as torch) */
static inline double ref_binary(sf_binary_op op, double x, double y) {
  switch (op) {
  case SF_BIN_ADD: return x + y;
  case SF_BIN_SUB: return x - y;
  case SF_BIN_MUL: return x * y;
  case SF_BIN_DIV: return x / y;
  case SF_BIN_POW: return pow(x, y);
  case SF_BIN_MAX: return (x != x || y != y) ? NAN : x > y ? x : y;
  case SF_BIN_MIN: return (x != x || y != y) ? NAN : x < y ? x : y;
  case SF_BIN_EQ: return x == y;
  case SF_BIN_NE: return x != y;
  case SF_BIN_LT: return x < y;
  case SF_BIN_LE: return x <= y;
  case SF_BIN_GT: return x > y;
  case SF_BIN_GE: return x >= y;
  case SF_BIN_AND: return x != 0 && y != 0;
  case SF_BIN_OR: return x != 0 || y != 0;
  default: return NAN;
  }
}

#endif
