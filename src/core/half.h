/* half.h — bf16/f16 <-> f32 conversions shared by the CPU backend and CUDA kernels (host/device). */
#ifndef SF_HALF_H
#define SF_HALF_H

#include <stdint.h>
#include <string.h>

#if defined(__CUDACC__) || defined(SF_EMU)
#define SF_HD __host__ __device__ static inline
#else
#define SF_HD static inline
#endif

SF_HD float sf_bits_to_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
SF_HD uint32_t sf_f32_to_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

SF_HD float sf_bf16_to_f32(uint16_t h) { return sf_bits_to_f32((uint32_t)h << 16); }

/* round to nearest even, NaN stays NaN (as torch / __float2bfloat16_rn) */
SF_HD uint16_t sf_f32_to_bf16(float f) {
  uint32_t u = sf_f32_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

SF_HD float sf_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
  if (exp == 0) {
    if (man == 0) return sf_bits_to_f32(sign);
    /* subnormal: renormalize */
    exp = 127 - 15 + 1;
    while (!(man & 0x400u)) { man <<= 1; exp--; }
    man &= 0x3ffu;
    return sf_bits_to_f32(sign | (exp << 23) | (man << 13));
  }
  if (exp == 31) return sf_bits_to_f32(sign | 0x7f800000u | (man << 13));
  return sf_bits_to_f32(sign | ((exp + 127 - 15) << 23) | (man << 13));
}

/* round to nearest even with overflow to inf and correct subnormals (as torch / __float2half_rn) */
SF_HD uint16_t sf_f32_to_f16(float f) {
  uint32_t u = sf_f32_to_bits(f);
  uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);      /* NaN */
  if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);     /* >= 65520 rounds to inf */
  if (a < 0x38800000u) {                                       /* below the smallest normal 2^-14 */
    if (a < 0x33000000u) return sign;                          /* < 2^-25: rounds to 0 */
    uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u;
    /* value = m * 2^(e-150) and the subnormal unit is 2^-24, so the result is m >> (126 - e) */
    uint32_t shift = 126 - e;
    uint32_t r = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1u))) r++;
    return (uint16_t)(sign | r);
  }
  uint32_t r = a - ((127u - 15u) << 23);
  uint32_t res = r >> 13, rem = r & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (res & 1u))) res++;
  return (uint16_t)(sign | res);
}

#endif
