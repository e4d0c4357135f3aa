// train.cu — training kernels: LayerNorm/RMSNorm backward (one block per row, weight gradients by atomics),
// RoPE backward, flash-attention backward (one block per (batch, head, key tile) walking the visible
// queries: K/V/dK/dV of the tile in shared memory, dQ by atomics, never an Lq x Lk matrix), AdamW, sum of
// squares, EMA. Float formulas follow the CPU versions (src/backend/cpu/cpu_train.c) op for op.
#include "sf_device.cuh"
#include "sf_train_kernels.h"

namespace SF_CUDA_NS {

__global__ void sf_norm_bwd_kernel(float *dx, float *dw, float *db, const void *dy, int dydt, const void *x, int xdt,
                                   const void *w, int wdt, int64_t R, int64_t D, double eps, int rms) {
  __shared__ float sm[32];
  for (int64_t r = blockIdx.x; r < R; r += gridDim.x) {
    float mu = 0;
    if (!rms) {
      float s = 0;
      for (int64_t c = threadIdx.x; c < D; c += blockDim.x) s += sf_ld_f32(x, xdt, r * D + c);
      mu = sf_block_sum(s, sm) / (float)D;
    }
    float ss = 0;
    for (int64_t c = threadIdx.x; c < D; c += blockDim.x) {
      float v = sf_ld_f32(x, xdt, r * D + c) - mu;
      ss += v * v;
    }
    const float rs = (float)(1.0 / sqrt((double)(sf_block_sum(ss, sm) / (float)D) + eps));
    float s1 = 0, s2 = 0;
    for (int64_t c = threadIdx.x; c < D; c += blockDim.x) {
      const float g = sf_ld_f32(dy, dydt, r * D + c), xh = (sf_ld_f32(x, xdt, r * D + c) - mu) * rs;
      const float dh = w ? g * sf_ld_f32(w, wdt, c) : g;
      s1 += dh;
      s2 += dh * xh;
      if (dw) atomicAdd(&dw[c], g * xh);
      if (db) atomicAdd(&db[c], g);
    }
    s1 = sf_block_sum(s1, sm) / (float)D;
    s2 = sf_block_sum(s2, sm) / (float)D;
    if (!dx) continue;
    for (int64_t c = threadIdx.x; c < D; c += blockDim.x) {
      const float g = sf_ld_f32(dy, dydt, r * D + c), xh = (sf_ld_f32(x, xdt, r * D + c) - mu) * rs;
      const float dh = w ? g * sf_ld_f32(w, wdt, c) : g;
      dx[r * D + c] = rs * (dh - (rms ? 0.0f : s1) - xh * s2);
    }
  }
}

int sf_k_norm_bwd(float *dx, float *dw, float *db, const void *dy, int dydt, const void *x, int xdt, const void *w, int wdt,
                  int64_t R, int64_t D, double eps, int rms) {
  if (dw && sf_cuda_check(cudaMemsetAsync(dw, 0, sizeof(float) * (size_t)D, sf_cuda_stream()), "norm backward")) return -1;
  if (db && sf_cuda_check(cudaMemsetAsync(db, 0, sizeof(float) * (size_t)D, sf_cuda_stream()), "norm backward")) return -1;
  if (!R || !D) return 0;
  const int th = D >= 1024 ? 256 : (D >= 256 ? 128 : 32);
  SF_LAUNCH(sf_norm_bwd_kernel, sf_grid_for(R, 1), th, 0, sf_cuda_stream(), dx, dw, db, dy, dydt, x, xdt, w, wdt, R, D, eps, rms);
  return sf_cuda_check_launch(rms ? "rms_norm backward" : "layer_norm backward");
}

__global__ void sf_rope3d_bwd_kernel(float *dx, const void *dy, int dt, int64_t B, int64_t L, int64_t H, int64_t d, int64_t sb,
                                     int64_t sl, int64_t sh, int64_t F, int64_t Hp, int64_t Wp, int64_t f0) {
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
    const double cs = cos(ang), sn = sin(ang);
    const int64_t src = b * sb + tok * sl + h * sh + 2 * j;
    const double a = sf_ld_f32(dy, dt, src), c = sf_ld_f32(dy, dt, src + 1);
    const int64_t dst = ((b * L + tok) * H + h) * d + 2 * j;
    dx[dst] = (float)(a * cs + c * sn);
    dx[dst + 1] = (float)(-a * sn + c * cs);
  }
}

int sf_k_rope3d_bwd(float *dx, const void *dy, int dydt, int64_t B, int64_t L, int64_t H, int64_t d, int64_t sb, int64_t sl,
                    int64_t sh, int64_t F, int64_t Hp, int64_t Wp, int64_t f0) {
  const int64_t n = B * L * H * (d / 2);
  if (!n) return 0;
  SF_LAUNCH(sf_rope3d_bwd_kernel, sf_grid_for(n, 256), 256, 0, sf_cuda_stream(), dx, dy, dydt, B, L, H, d, sb, sl, sh, F, Hp, Wp, f0);
  return sf_cuda_check_launch("rope3d backward");
}

/* ---- attention backward ---- */

#define SF_ABW_TK 16
#define SF_ABW_THREADS 128

/* delta[b, h, i] = dO_i . O_i (one warp per row) */
__global__ void sf_attn_delta_kernel(sf_k_attn_bwd_args a) {
  const int64_t rows = a.B * a.H * a.Lq, warps = (int64_t)gridDim.x * (blockDim.x / 32);
  const int lane = threadIdx.x & 31;
  for (int64_t r = (int64_t)blockIdx.x * (blockDim.x / 32) + (threadIdx.x >> 5); r < rows; r += warps) {
    const int64_t i = r % a.Lq, h = (r / a.Lq) % a.H, b = r / (a.Lq * a.H);
    const int64_t go = b * a.gs[0] + i * a.gs[1] + h * a.gs[2], oo = b * a.os[0] + i * a.os[1] + h * a.os[2];
    float s = 0;
    for (int64_t c = lane; c < a.d; c += 32) s += sf_ld_f32(a.dout, a.gdt, go + c) * sf_ld_f32(a.o, a.odt, oo + c);
    s = sf_warp_sum(s);
    if (lane == 0) a.delta[r] = s;
  }
}

__global__ void sf_attn_bwd_kernel(sf_k_attn_bwd_args a) {
  SF_DYNAMIC_SHARED(float, sm);
  const int64_t d = a.d, ntiles = (a.Lk + SF_ABW_TK - 1) / SF_ABW_TK, work = a.B * a.H * ntiles;
  float *K = sm, *V = K + SF_ABW_TK * d, *dK = V + SF_ABW_TK * d, *dV = dK + SF_ABW_TK * d;
  float *qi = dV + SF_ABW_TK * d, *gi = qi + d, *P = gi + d, *dS = P + SF_ABW_TK;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  for (int64_t wi = blockIdx.x; wi < work; wi += gridDim.x) {
    const int64_t tile = wi % ntiles, h = (wi / ntiles) % a.H, b = wi / (ntiles * a.H);
    const int64_t k0 = tile * SF_ABW_TK, nk = k0 + SF_ABW_TK <= a.Lk ? SF_ABW_TK : a.Lk - k0;
    __syncthreads();
    for (int64_t e = threadIdx.x; e < SF_ABW_TK * d; e += blockDim.x) {
      const int64_t j = e / d, c = e % d;
      K[e] = j < nk ? sf_ld_f32(a.k, a.dt, b * a.ks[0] + (k0 + j) * a.ks[1] + h * a.ks[2] + c) : 0.0f;
      V[e] = j < nk ? sf_ld_f32(a.v, a.dt, b * a.vs[0] + (k0 + j) * a.vs[1] + h * a.vs[2] + c) : 0.0f;
      dK[e] = 0.0f;
      dV[e] = 0.0f;
    }
    __syncthreads();
    for (int64_t g = 0; g < a.n_qg; g++) {
      const int64_t lo = a.kv_lo ? a.kv_lo[g] : 0, hi = a.kv_hi ? a.kv_hi[g] : a.Lk;
      if (hi <= k0 || lo >= k0 + nk) continue; /* this key tile is invisible to the whole group */
      for (int64_t i = g * a.q_group; i < (g + 1) * a.q_group; i++) {
        for (int64_t c = threadIdx.x; c < d; c += blockDim.x) {
          qi[c] = sf_ld_f32(a.q, a.dt, b * a.qs[0] + i * a.qs[1] + h * a.qs[2] + c);
          gi[c] = sf_ld_f32(a.dout, a.gdt, b * a.gs[0] + i * a.gs[1] + h * a.gs[2] + c);
        }
        __syncthreads();
        const float L = a.lse[(b * a.H + h) * a.Lq + i], Di = a.delta[(b * a.H + h) * a.Lq + i];
        for (int j = warp; j < SF_ABW_TK; j += nwarps) {
          float s = 0, dp = 0;
          for (int64_t c = lane; c < d; c += 32) {
            s += qi[c] * K[j * d + c];
            dp += gi[c] * V[j * d + c];
          }
          s = sf_warp_sum(s);
          dp = sf_warp_sum(dp);
          if (lane == 0) {
            const bool vis = j < nk && k0 + j >= lo && k0 + j < hi && L != -INFINITY;
            const float p = vis ? expf(s * a.scale - L) : 0.0f;
            P[j] = p;
            dS[j] = p * (dp - Di);
          }
        }
        __syncthreads();
        for (int64_t e = threadIdx.x; e < SF_ABW_TK * d; e += blockDim.x) {
          const int64_t j = e / d, c = e % d;
          dV[e] += P[j] * gi[c];
          dK[e] += a.scale * dS[j] * qi[c];
        }
        if (a.dq)
          for (int64_t c = threadIdx.x; c < d; c += blockDim.x) {
            float acc = 0;
            for (int j = 0; j < SF_ABW_TK; j++) acc += dS[j] * K[j * d + c];
            if (acc != 0.0f) atomicAdd(&a.dq[((b * a.Lq + i) * a.H + h) * d + c], a.scale * acc);
          }
        __syncthreads();
      }
    }
    for (int64_t e = threadIdx.x; e < nk * d; e += blockDim.x) {
      const int64_t j = e / d, c = e % d, o = ((b * a.Lk + k0 + j) * a.H + h) * d + c;
      if (a.dk) a.dk[o] = dK[e];
      if (a.dv) a.dv[o] = dV[e];
    }
  }
}

int sf_k_attention_bwd(const sf_k_attn_bwd_args *a) {
  if (a->dq && sf_cuda_check(cudaMemsetAsync(a->dq, 0, sizeof(float) * (size_t)(a->B * a->Lq * a->H * a->d), sf_cuda_stream()),
                             "attention backward"))
    return -1;
  if (!a->B || !a->H || !a->Lq || !a->Lk) return 0;
  SF_LAUNCH(sf_attn_delta_kernel, sf_grid_for(a->B * a->H * a->Lq, 8), 256, 0, sf_cuda_stream(), *a);
  if (sf_cuda_check_launch("attention backward (delta)")) return -1;
  const size_t smem = sizeof(float) * (size_t)(4 * SF_ABW_TK * a->d + 2 * a->d + 2 * SF_ABW_TK);
  if (smem > 48 * 1024) return sf_error("attention backward: head_dim %lld is too large for the kernel (max 176)", (long long)a->d);
  const int64_t work = a->B * a->H * ((a->Lk + SF_ABW_TK - 1) / SF_ABW_TK);
  SF_LAUNCH(sf_attn_bwd_kernel, sf_grid_for(work, 1), SF_ABW_THREADS, smem, sf_cuda_stream(), *a);
  return sf_cuda_check_launch("attention backward");
}

/* ---- optimizer pieces ---- */

__global__ void sf_adamw_kernel(void *param, int pdt, float *master, const void *grad, int gdt, float *m, float *v, int64_t n,
                                float decay, float b1, float b2, float a1, float a2, float step_size, float bc2s, float eps) {
  SF_GRID_STRIDE_LOOP(i, n) {
    const float g = sf_ld_f32(grad, gdt, i);
    float p = (master ? master[i] : sf_ld_f32(param, pdt, i)) * decay;
    const float mi = m[i] * b1 + a1 * g, vi = v[i] * b2 + a2 * g * g;
    m[i] = mi;
    v[i] = vi;
    const float denom = sqrtf(vi) / bc2s + eps;
    p = p + (-step_size) * (mi / denom);
    if (master) master[i] = p;
    sf_st_f32(param, pdt, i, p);
  }
}

int sf_k_adamw(void *param, int pdt, float *master, const void *grad, int gdt, float *m, float *v, int64_t n, float decay,
               float b1, float b2, float a1, float a2, float step_size, float bc2s, float eps) {
  if (!n) return 0;
  SF_LAUNCH(sf_adamw_kernel, sf_grid_for(n, 256), 256, 0, sf_cuda_stream(), param, pdt, master, grad, gdt, m, v, n, decay, b1, b2,
            a1, a2, step_size, bc2s, eps);
  return sf_cuda_check_launch("adamw");
}

__global__ void sf_sum_sq_kernel(double *out, const void *x, int dt, int64_t n) {
  __shared__ double sm[32];
  double s = 0;
  SF_GRID_STRIDE_LOOP(i, n) {
    const double v = sf_ld_f64(x, dt, i);
    s += v * v;
  }
  s = sf_block_sum(s, sm);
  if (threadIdx.x == 0) atomicAdd(out, s);
}

int sf_k_sum_sq(double *out, const void *x, int dt, int64_t n) {
  if (sf_cuda_check(cudaMemsetAsync(out, 0, sizeof(double), sf_cuda_stream()), "sum_sq")) return -1;
  if (!n) return 0;
  SF_LAUNCH(sf_sum_sq_kernel, sf_grid_for(n, 256), 256, 0, sf_cuda_stream(), out, x, dt, n);
  return sf_cuda_check_launch("sum_sq");
}

__global__ void sf_ema_kernel(float *s, const void *p, int pdt, int64_t n, float d, float a) {
  SF_GRID_STRIDE_LOOP(i, n) s[i] = s[i] * d + a * sf_ld_f32(p, pdt, i);
}

int sf_k_ema(float *shadow, const void *p, int pdt, int64_t n, float d, float a) {
  if (!n) return 0;
  SF_LAUNCH(sf_ema_kernel, sf_grid_for(n, 256), 256, 0, sf_cuda_stream(), shadow, p, pdt, n, d, a);
  return sf_cuda_check_launch("ema");
}

} // namespace SF_CUDA_NS
