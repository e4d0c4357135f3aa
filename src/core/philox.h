/* philox.h — Philox4x32-10 counter-based RNG shared by every device, so a seeded draw gives the same
 * numbers on cpu, emu and cuda: element i of a draw uses counter (offset + i) and key (seed). */
#ifndef SF_PHILOX_H
#define SF_PHILOX_H

#include <math.h>
#include <stdint.h>

#if defined(__CUDACC__) || defined(SF_EMU)
#define SF_PHD __host__ __device__ static inline
#else
#define SF_PHD static inline
#endif

typedef struct { uint32_t v[4]; } sf_philox4;

SF_PHD void sf_mulhilo32(uint32_t a, uint32_t b, uint32_t *hi, uint32_t *lo) {
  uint64_t p = (uint64_t)a * b;
  *hi = (uint32_t)(p >> 32);
  *lo = (uint32_t)p;
}

SF_PHD sf_philox4 sf_philox4x32_10(uint64_t counter, uint64_t seed) {
  uint32_t c0 = (uint32_t)counter, c1 = (uint32_t)(counter >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
  for (int r = 0; r < 10; r++) {
    uint32_t hi0, lo0, hi1, lo1;
    sf_mulhilo32(0xD2511F53u, c0, &hi0, &lo0);
    sf_mulhilo32(0xCD9E8D57u, c2, &hi1, &lo1);
    uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
    c0 = n0; c1 = n1; c2 = n2; c3 = n3;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  sf_philox4 o = {{c0, c1, c2, c3}};
  return o;
}

/* uniform in (0, 1]: 24 random bits, never 0 so log() is finite */
SF_PHD float sf_u32_to_unit(uint32_t x) { return ((float)(x >> 8) + 1.0f) * (1.0f / 16777216.0f); }

/* element `i` of a draw: standard normal by Box-Muller on the first two words (double inside, so the
 * result does not depend on a device's transcendental implementation beyond f64 rounding) */
SF_PHD float sf_philox_normal(uint64_t seed, uint64_t i) {
  sf_philox4 r = sf_philox4x32_10(i, seed);
  double u1 = ((double)(r.v[0] >> 8) + 1.0) / 16777216.0, u2 = (double)(r.v[1] >> 8) / 16777216.0;
  return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

/* uniform in [0, 1) */
SF_PHD float sf_philox_uniform(uint64_t seed, uint64_t i) {
  sf_philox4 r = sf_philox4x32_10(i, seed);
  return (float)(r.v[0] >> 8) * (1.0f / 16777216.0f);
}

#endif
