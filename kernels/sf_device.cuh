/* sf_device.cuh — device helpers every kernel file shares: loads/stores of any sfwb dtype (the dtype is
 * a uniform runtime value: one kernel serves every dtype, which keeps nvcc builds small), strided
 * offsets from an sf_kiter, grid sizing, and warp/block reductions built on shuffles. */
#ifndef SF_DEVICE_CUH
#define SF_DEVICE_CUH

#include "sf_kernels.h"

#if !defined(SF_EMU)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#endif

namespace SF_CUDA_NS {

#define SF_FULL_MASK 0xffffffffu

__device__ __forceinline__ double sf_ld_f64(const void *p, int dt, int64_t i) {
  switch (dt) {
  case SF_F32: return ((const float *)p)[i];
  case SF_BF16: return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
  case SF_F16: return __half2float(((const __half *)p)[i]);
  case SF_F64: return ((const double *)p)[i];
  case SF_I64: return (double)((const int64_t *)p)[i];
  case SF_I32: return ((const int32_t *)p)[i];
  case SF_U8: return ((const uint8_t *)p)[i];
  default: return ((const uint8_t *)p)[i] != 0;
  }
}

__device__ __forceinline__ float sf_ld_f32(const void *p, int dt, int64_t i) {
  switch (dt) {
  case SF_F32: return ((const float *)p)[i];
  case SF_BF16: return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
  case SF_F16: return __half2float(((const __half *)p)[i]);
  default: return (float)sf_ld_f64(p, dt, i);
  }
}

__device__ __forceinline__ int64_t sf_ld_i64(const void *p, int dt, int64_t i) {
  switch (dt) {
  case SF_I64: return ((const int64_t *)p)[i];
  case SF_I32: return ((const int32_t *)p)[i];
  case SF_U8: return ((const uint8_t *)p)[i];
  case SF_BOOL: return ((const uint8_t *)p)[i] != 0;
  default: return (int64_t)sf_ld_f64(p, dt, i); /* truncation toward zero, as a C cast / torch */
  }
}

__device__ __forceinline__ void sf_st_f64(void *p, int dt, int64_t i, double v) {
  switch (dt) {
  case SF_F32: ((float *)p)[i] = (float)v; break;
  case SF_BF16: ((__nv_bfloat16 *)p)[i] = __float2bfloat16_rn((float)v); break;
  case SF_F16: ((__half *)p)[i] = __float2half_rn((float)v); break;
  case SF_F64: ((double *)p)[i] = v; break;
  case SF_I64: ((int64_t *)p)[i] = (v == v && v >= -9.2233720368547758e18 && v < 9.2233720368547758e18) ? (int64_t)v : INT64_MIN; break;
  /* NaN / out of range -> INT_MIN (x86's cvttsd2si, hence torch on CPU); u8 wraps through int64 */
  case SF_I32: ((int32_t *)p)[i] = (v == v && v > -2147483649.0 && v < 2147483648.0) ? (int32_t)v : INT32_MIN; break;
  case SF_U8: ((uint8_t *)p)[i] = (v == v && v > -9.2e18 && v < 9.2e18) ? (uint8_t)(int64_t)v : 0; break;
  default: ((uint8_t *)p)[i] = v != 0; break;
  }
}

__device__ __forceinline__ void sf_st_f32(void *p, int dt, int64_t i, float v) {
  switch (dt) {
  case SF_F32: ((float *)p)[i] = v; break;
  case SF_BF16: ((__nv_bfloat16 *)p)[i] = __float2bfloat16_rn(v); break;
  case SF_F16: ((__half *)p)[i] = __float2half_rn(v); break;
  default: sf_st_f64(p, dt, i, (double)v); break;
  }
}

__device__ __forceinline__ void sf_st_i64(void *p, int dt, int64_t i, int64_t v) {
  switch (dt) {
  case SF_I64: ((int64_t *)p)[i] = v; break;
  case SF_I32: ((int32_t *)p)[i] = (int32_t)v; break;
  case SF_U8: ((uint8_t *)p)[i] = (uint8_t)v; break;
  case SF_BOOL: ((uint8_t *)p)[i] = v != 0; break;
  default: sf_st_f64(p, dt, i, (double)v); break;
  }
}

/* element offsets (in elements) of linear index i for the first `nops` operands */
template <int NOPS> __device__ __forceinline__ void sf_offsets(const sf_kiter &it, int64_t i, int64_t *off) {
  if (it.ndim == 1) { /* the common coalesced case: no 64-bit division */
#pragma unroll
    for (int k = 0; k < NOPS; k++) off[k] = i * it.stride[k][0];
    return;
  }
#pragma unroll
  for (int k = 0; k < NOPS; k++) off[k] = 0;
  for (int d = it.ndim - 1; d >= 0; d--) {
    int64_t s = it.shape[d], c = i % s;
    i /= s;
#pragma unroll
    for (int k = 0; k < NOPS; k++) off[k] += c * it.stride[k][d];
  }
}

#define SF_GRID_STRIDE_LOOP(i, n) \
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (int64_t)blockDim.x * gridDim.x)

static inline unsigned sf_grid_for(int64_t n, int threads) {
  int64_t b = (n + threads - 1) / threads;
  return (unsigned)(b < 1 ? 1 : (b > SF_MAX_GRID ? SF_MAX_GRID : b));
}

/* sum of `v` over the warp; every lane gets the result */
template <class T> __device__ __forceinline__ T sf_warp_sum(T v) {
#pragma unroll
  for (int m = 16; m > 0; m >>= 1) v += __shfl_xor_sync(SF_FULL_MASK, v, m);
  return v;
}

/* NaN-propagating max over the warp */
template <class T> __device__ __forceinline__ T sf_warp_max(T v) {
#pragma unroll
  for (int m = 16; m > 0; m >>= 1) {
    T o = __shfl_xor_sync(SF_FULL_MASK, v, m);
    v = (o != o || o > v) ? o : v;
  }
  return v;
}

/* block-wide sum for blockDim.x a multiple of 32 (<= 1024); `sm` holds 32 values; all threads get the result */
template <class T> __device__ __forceinline__ T sf_block_sum(T v, T *sm) {
  int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = sf_warp_sum(v);
  __syncthreads(); /* sm may still be read by a previous call */
  if (lane == 0) sm[w] = v;
  __syncthreads();
  v = lane < nw ? sm[lane] : (T)0;
  return sf_warp_sum(v);
}

template <class T> __device__ __forceinline__ T sf_block_max(T v, T *sm) {
  int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = sf_warp_max(v);
  __syncthreads();
  if (lane == 0) sm[w] = v;
  __syncthreads();
  v = lane < nw ? sm[lane] : sm[0];
  return sf_warp_max(v);
}

} // namespace SF_CUDA_NS

#endif
