/* cpu_math.h — branch-free float transcendentals the compiler can vectorize (libm's scalar expf
 * would make exp/sigmoid/silu/gelu/softmax several times slower than numpy's SIMD loops).
 * Accuracy: ~1 ulp over the whole range, NaN/inf handled as libm does. */
#ifndef SF_CPU_MATH_H
#define SF_CPU_MATH_H

#include <stdint.h>
#include <string.h>

static inline float sf_cpu_bitsf(int32_t u) { union { int32_t i; float f; } v; v.i = u; return v.f; } /* union: memcpy blocks vectorization */

/* exp: x = n ln2 + r, |r| <= ln2/2, Cephes' minimax polynomial for e^r, then 2^n applied in two
 * halves so results down to the subnormal range come out right. */
static inline float sf_cpu_expf(float x) {
  float xc = x < -104.0f ? -104.0f : x;
  xc = xc > 88.8f ? 88.8f : xc;
  xc = x != x ? 0.0f : xc;
  /* round to nearest by the 1.5*2^23 trick (floorf would not vectorize under default FP flags) */
  float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = __builtin_fmaf(n, -0.693359375f, xc);
  r = __builtin_fmaf(n, 2.12194440e-4f, r);
  float p = 1.9875691500E-4f;
  p = __builtin_fmaf(p, r, 1.3981999507E-3f);
  p = __builtin_fmaf(p, r, 8.3334519073E-3f);
  p = __builtin_fmaf(p, r, 4.1665795894E-2f);
  p = __builtin_fmaf(p, r, 1.6666665459E-1f);
  p = __builtin_fmaf(p, r, 5.0000001201E-1f);
  p = __builtin_fmaf(p, r * r, r) + 1.0f;
  int32_t ni = (int32_t)n, n1 = ni / 2, n2 = ni - n1;
  float y = p * sf_cpu_bitsf((n1 + 127) << 23) * sf_cpu_bitsf((n2 + 127) << 23);
  return x != x ? x : y;
}

/* tanh: odd polynomial near 0 (where 1 - 2/(e^2x + 1) cancels), the exp form elsewhere */
static inline float sf_cpu_tanhf(float x) {
  float ax = x < 0 ? -x : x;
  float z = x * x;
  float small = ((((-5.70498872745E-3f * z + 2.06390887954E-2f) * z - 5.37397155531E-2f) * z + 1.33314422036E-1f) * z
                 - 3.33332819422E-1f) * z * x + x;
  float big = 1.0f - 2.0f / (sf_cpu_expf(2.0f * ax) + 1.0f);
  big = x < 0 ? -big : big;
  return ax < 0.625f ? small : (x != x ? x : big);
}

static inline float sf_cpu_sigmoidf(float x) { return 1.0f / (1.0f + sf_cpu_expf(-x)); }

/* gelu(approximate='tanh') = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
static inline float sf_cpu_gelu_tanhf(float x) {
  float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
  return 0.5f * x * (1.0f + sf_cpu_tanhf(u));
}

#endif
