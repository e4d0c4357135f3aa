// nn_norm.cu — LayerNorm / RMSNorm (one block per row, f32 block reductions), adaLN modulation and gated
// residual (grid-stride elementwise), Wan 3-D RoPE (f64 angles, one thread per rotated pair). Rounding
// points match the CPU ops (src/backend/cpu/cpu_nn_norm.c).
#include "sf_device.cuh"
#include "sf_nn_kernels.h"

namespace SF_CUDA_NS {

__device__ __forceinline__ float sf_round_to(float v, int dt) {
  if (dt == SF_BF16) return __bfloat162float(__float2bfloat16_rn(v));
  if (dt == SF_F16) return __half2float(__float2half_rn(v));
  return v;
}

__global__ void sf_layer_norm_kernel(void *out, const void *x, int dt, const void *w, int wdt, const void *b, int bdt,
                                     int64_t R, int64_t D, double eps, float *mean, float *rstd) {
  __shared__ float sm[32];
  for (int64_t r = blockIdx.x; r < R; r += gridDim.x) {
    float s = 0;
    for (int64_t c = threadIdx.x; c < D; c += blockDim.x) s += sf_ld_f32(x, dt, r * D + c);
    const float mu = sf_block_sum(s, sm) / (float)D;
    float ss = 0;
    for (int64_t c = threadIdx.x; c < D; c += blockDim.x) {
      float dd = sf_ld_f32(x, dt, r * D + c) - mu;
      ss += dd * dd;
    }
    const float rs = (float)(1.0 / sqrt((double)(sf_block_sum(ss, sm) / (float)D) + eps));
    if (threadIdx.x == 0 && mean) mean[r] = mu;
    if (threadIdx.x == 0 && rstd) rstd[r] = rs;
    for (int64_t c = threadIdx.x; c < D; c += blockDim.x) {
      float y = (sf_ld_f32(x, dt, r * D + c) - mu) * rs;
      if (w) y = y * sf_ld_f32(w, wdt, c) + (b ? sf_ld_f32(b, bdt, c) : 0.0f);
      sf_st_f32(out, dt, r * D + c, y);
    }
  }
}

__global__ void sf_rms_norm_kernel(void *out, const void *x, int dt, const void *w, int wdt, int64_t R, int64_t D, double eps,
                                   float *rstd) {
  __shared__ float sm[32];
  for (int64_t r = blockIdx.x; r < R; r += gridDim.x) {
    float ss = 0;
    for (int64_t c = threadIdx.x; c < D; c += blockDim.x) {
      float v = sf_ld_f32(x, dt, r * D + c);
      ss += v * v;
    }
    const float rs = (float)(1.0 / sqrt((double)(sf_block_sum(ss, sm) / (float)D) + eps));
    if (threadIdx.x == 0 && rstd) rstd[r] = rs;
    for (int64_t c = threadIdx.x; c < D; c += blockDim.x) {
      float y = sf_round_to(sf_ld_f32(x, dt, r * D + c) * rs, dt);
      if (w) y = y * sf_ld_f32(w, wdt, c);
      sf_st_f32(out, dt, r * D + c, y);
    }
  }
}

__global__ void sf_modulate_kernel(void *out, const void *x, int dt, const void *v1, int v1dt, int64_t v1rs, const void *v2,
                                   int v2dt, int64_t v2rs, int64_t G, int64_t R, int64_t D, int gated) {
  const int64_t n = G * R * D;
  SF_GRID_STRIDE_LOOP(i, n) {
    const int64_t c = i % D, g = i / (R * D);
    const float xv = sf_ld_f32(x, dt, i);
    if (gated) {
      /* v1 = gate [G, D] (row stride v1rs), v2 = y [G, R, D] contiguous */
      float p = sf_round_to(sf_ld_f32(v2, v2dt, i) * sf_ld_f32(v1, v1dt, g * v1rs + c), dt);
      sf_st_f32(out, dt, i, xv + p);
    } else {
      /* v1 = shift, v2 = scale */
      float a = sf_round_to(1.0f + sf_ld_f32(v2, v2dt, g * v2rs + c), dt);
      float y = sf_round_to(xv * a, dt);
      sf_st_f32(out, dt, i, y + sf_ld_f32(v1, v1dt, g * v1rs + c));
    }
  }
}

/* rotation by theta, or by -theta for sgn = -1 (the backward: R(theta)^T = R(-theta)) */
__global__ void sf_rope3d_kernel(void *out, int odt, const void *x, int xdt, int64_t B, int64_t L, int64_t H, int64_t d,
                                 int64_t sb, int64_t sl, int64_t sh, int64_t F, int64_t Hp, int64_t Wp, int64_t f0, double sgn) {
  const int64_t half = d / 2, q6 = d / 6, ht = (d - 4 * q6) / 2, hh = q6;
  const int64_t n = B * L * H * half;
  SF_GRID_STRIDE_LOOP(i, n) {
    const int64_t j = i % half, h = (i / half) % H, tok = (i / (half * H)) % L, b = i / (half * H * L);
    const int64_t f = tok / (Hp * Wp), hy = (tok / Wp) % Hp, wx = tok % Wp;
    int64_t pos, jj, dim_axis;
    if (j < ht) pos = f0 + f, jj = j, dim_axis = 2 * ht;
    else if (j < ht + hh) pos = hy, jj = j - ht, dim_axis = 2 * hh;
    else pos = wx, jj = j - ht - hh, dim_axis = 2 * hh;
    const double ang = (double)pos * pow(10000.0, -2.0 * (double)jj / (double)dim_axis);
    const double cs = cos(ang), sn = sgn * sin(ang);
    const int64_t src = b * sb + tok * sl + h * sh + 2 * j;
    const double a = sf_ld_f32(x, xdt, src), bb = sf_ld_f32(x, xdt, src + 1);
    const int64_t dst = ((b * L + tok) * H + h) * d + 2 * j;
    sf_st_f32(out, odt, dst, (float)(a * cs - bb * sn));
    sf_st_f32(out, odt, dst + 1, (float)(a * sn + bb * cs));
  }
}

static int row_threads(int64_t D) { return D >= 1024 ? 256 : (D >= 256 ? 128 : 32); }

int sf_k_layer_norm(void *out, const void *x, int dt, const void *w, int wdt, const void *b, int bdt, int64_t R, int64_t D,
                    double eps, float *mean, float *rstd) {
  if (!R || !D) return 0;
  SF_LAUNCH(sf_layer_norm_kernel, sf_grid_for(R, 1), row_threads(D), 0, sf_cuda_stream(), out, x, dt, w, wdt, b, bdt, R, D, eps,
            mean, rstd);
  return sf_cuda_check_launch("layer_norm");
}

int sf_k_rms_norm(void *out, const void *x, int dt, const void *w, int wdt, int64_t R, int64_t D, double eps, float *rstd) {
  if (!R || !D) return 0;
  SF_LAUNCH(sf_rms_norm_kernel, sf_grid_for(R, 1), row_threads(D), 0, sf_cuda_stream(), out, x, dt, w, wdt, R, D, eps, rstd);
  return sf_cuda_check_launch("rms_norm");
}

int sf_k_modulate(void *out, const void *x, int dt, const void *v1, int v1dt, int64_t v1rs, const void *v2, int v2dt,
                  int64_t v2rs, int64_t G, int64_t R, int64_t D, int gated) {
  const int64_t n = G * R * D;
  if (!n) return 0;
  SF_LAUNCH(sf_modulate_kernel, sf_grid_for(n, 256), 256, 0, sf_cuda_stream(), out, x, dt, v1, v1dt, v1rs, v2, v2dt, v2rs, G,
            R, D, gated);
  return sf_cuda_check_launch(gated ? "gated_add" : "modulate");
}

int sf_k_rope3d(void *out, int odt, const void *x, int xdt, int64_t B, int64_t L, int64_t H, int64_t d, int64_t sb, int64_t sl,
                int64_t sh, int64_t F, int64_t Hp, int64_t Wp, int64_t f0, bool inverse) {
  const int64_t n = B * L * H * (d / 2);
  if (!n) return 0;
  SF_LAUNCH(sf_rope3d_kernel, sf_grid_for(n, 256), 256, 0, sf_cuda_stream(), out, odt, x, xdt, B, L, H, d, sb, sl, sh, F, Hp,
            Wp, f0, inverse ? -1.0 : 1.0);
  return sf_cuda_check_launch(inverse ? "rope3d backward" : "rope3d");
}

} // namespace SF_CUDA_NS
