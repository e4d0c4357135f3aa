// train.cu — training kernels: LayerNorm/RMSNorm backward (one block per row, weight gradients by atomics),
// RoPE backward, the fused activation backward (GELU-tanh, SiLU, tanh, sigmoid), AdamW, sum of squares, EMA (the flash-attention backward is kernels/attn_bwd.cu). Float
// formulas follow the CPU versions (src/backend/cpu/cpu_train.c) op for op.
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

/* ---- fused activation backward: dx = dy * f'(x), the CPU's formulas (cpu_train.c) op for op ---- */

template <class F> __device__ __forceinline__ F sf_act_grad(int op, F a) {
  if (op == SF_UN_GELU_TANH) {
    const F k = (F)0.7978845608028654, c = (F)0.044715, t = tanh(k * (a + c * a * a * a));
    return (F)0.5 * (1 + t) + (F)0.5 * a * (1 - t * t) * k * (1 + 3 * c * a * a);
  }
  if (op == SF_UN_SILU) {
    const F s = 1 / (1 + exp(-a));
    return s * (1 + a * (1 - s));
  }
  if (op == SF_UN_TANH) {
    const F t = tanh(a);
    return 1 - t * t;
  }
  const F s = 1 / (1 + exp(-a));
  return s * (1 - s);
}

__global__ void sf_unary_bwd_kernel(int op, void *dx, int dxdt, const void *dy, int dydt, const void *x, int xdt, int64_t n,
                                    int f64) {
  SF_GRID_STRIDE_LOOP(i, n) {
    if (f64) sf_st_f64(dx, dxdt, i, sf_ld_f64(dy, dydt, i) * sf_act_grad<double>(op, sf_ld_f64(x, xdt, i)));
    else sf_st_f32(dx, dxdt, i, sf_ld_f32(dy, dydt, i) * sf_act_grad<float>(op, sf_ld_f32(x, xdt, i)));
  }
}

int sf_k_unary_bwd(int op, void *dx, int dxdt, const void *dy, int dydt, const void *x, int xdt, int64_t n) {
  if (!n) return 0;
  const int f64 = xdt == SF_F64 || dydt == SF_F64;
  SF_LAUNCH(sf_unary_bwd_kernel, sf_grid_for(n, 256), 256, 0, sf_cuda_stream(), op, dx, dxdt, dy, dydt, x, xdt, n, f64);
  return sf_cuda_check_launch("activation backward");
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
