/* sf_attn_tiles.cuh — the tile machinery the flash-attention kernels share (kernels/attn_bwd.cu,
 * kernels/attn_fwd_mma.cu): tile sizes per input type, loads of token rows into padded shared-memory tiles
 * (16-byte vectors when possible), and the tensor-core (wmma 16x16x16, f32 accumulate) tile products of a
 * 256-thread block. */
#ifndef SF_ATTN_TILES_CUH
#define SF_ATTN_TILES_CUH

#include <type_traits>

#include "sf_device.cuh"
#if !defined(SF_EMU)
#include <mma.h>
#endif

namespace SF_CUDA_NS {

namespace wm = nvcuda::wmma;

#define AB_THREADS 256
#define AB_WARPS (AB_THREADS / 32)
#define AB_MAXD 128

/* tile geometry per element type of the inputs in shared memory */
template <class T> struct ab_tile { enum { BR = 32, BC = 32, MMA = 0 }; };
template <> struct ab_tile<__nv_bfloat16> { enum { BR = 64, BC = 64, MMA = 1 }; };
template <> struct ab_tile<__half> { enum { BR = 64, BC = 64, MMA = 1 }; };

__device__ __forceinline__ void ab_put(float *p, float v) { *p = v; }
__device__ __forceinline__ void ab_put(__nv_bfloat16 *p, float v) { *p = __float2bfloat16_rn(v); }
__device__ __forceinline__ void ab_put(__half *p, float v) { *p = __float2half_rn(v); }

/* 16 bytes moved as one vector load/store */
#if defined(SF_EMU)
struct alignas(16) ab_v16 { uint32_t x, y, z, w; };
#else
typedef uint4 ab_v16;
#endif
template <class T> struct ab_dt { enum { value = SF_F32 }; };
template <> struct ab_dt<__nv_bfloat16> { enum { value = SF_BF16 }; };
template <> struct ab_dt<__half> { enum { value = SF_F16 }; };

/* rows [0, rows) x cols [0, cols) of a tile: token row r < n, column c < d from src[base + r rs + c] (any dtype),
 * zero elsewhere (padding rows and columns contribute nothing to the products). Tensor-core tiles whose source
 * already has the tile's type and 16-byte aligned rows move 8 elements per load (the usual case: bf16
 * activations, head dim a multiple of 8); anything else converts element by element. */
template <class T>
__device__ __forceinline__ void ab_load(T *dst, int ld, int rows, int n, int cols, const void *src, int dt, int64_t base,
                                        int64_t rs, int d) {
  constexpr int V = 16 / sizeof(T);
  if (ab_tile<T>::MMA && dt == ab_dt<T>::value && d % V == 0 && base % V == 0 && rs % V == 0 && (uintptr_t)src % 16 == 0) {
    const int cv = cols / V; /* cols (the padded head dim) is a multiple of 16 elements */
    const ab_v16 zero = {0, 0, 0, 0};
    for (int i = threadIdx.x; i < rows * cv; i += AB_THREADS) {
      const int r = i / cv, c = (i % cv) * V;
      *(ab_v16 *)(dst + r * ld + c) = r < n && c < d ? *(const ab_v16 *)((const T *)src + base + r * rs + c) : zero;
    }
    return;
  }
  for (int i = threadIdx.x; i < rows * cols; i += AB_THREADS) {
    const int r = i / cols, c = i % cols;
    ab_put(dst + r * ld + c, r < n && c < d ? sf_ld_f32(src, dt, base + r * rs + c) : 0.0f);
  }
}

/* ---- tensor-core tile products (8 warps) ---- */

typedef wm::fragment<wm::accumulator, 16, 16, 16, float> ab_acc;

/* C [BR x BC] (f32, pitch ls) = A [BR x DP] B [BC x DP]^T; A, B row-major with pitch ld */
template <class T>
__device__ __forceinline__ void ab_mma_nt(float *C, int ls, const T *A, const T *B, int ld, int DP) {
  const int BR = ab_tile<T>::BR, BC = ab_tile<T>::BC, tc = BC / 16;
  for (int t = threadIdx.x >> 5; t < (BR / 16) * tc; t += AB_WARPS) {
    const int i = t / tc, j = t % tc;
    ab_acc acc;
    wm::fill_fragment(acc, 0.0f);
    for (int kk = 0; kk < DP; kk += 16) {
      wm::fragment<wm::matrix_a, 16, 16, 16, T, wm::row_major> fa;
      wm::fragment<wm::matrix_b, 16, 16, 16, T, wm::col_major> fb;
      wm::load_matrix_sync(fa, A + i * 16 * ld + kk, ld);
      wm::load_matrix_sync(fb, B + j * 16 * ld + kk, ld);
      wm::mma_sync(acc, fa, fb, acc);
    }
    wm::store_matrix_sync(C + i * 16 * ls + j * 16, acc, ls, wm::mem_row_major);
  }
}

/* acc [64 x DP] += op(A) B, op(A) [64 x KD], B [KD x DP] row-major (pitch ld). A is [KD x 64] row-major
 * (pitch la) read transposed when TA, else [64 x KD]. Warp w owns rows 16 (w % 4) .. +16 and the column
 * tiles w / 4, w / 4 + 2, ... < DP / 16 (acc[f] is column tile w / 4 + 2 f). */
template <class T, bool TA>
__device__ __forceinline__ void ab_mma_acc(ab_acc (&acc)[4], const T *A, int la, int KD, const T *B, int ld, int DP) {
  const int w = threadIdx.x >> 5, rb = w & 3, c0 = w >> 2;
  typedef typename std::conditional<TA, wm::col_major, wm::row_major>::type LA;
  for (int kk = 0; kk < KD; kk += 16) {
    wm::fragment<wm::matrix_a, 16, 16, 16, T, LA> fa;
    wm::load_matrix_sync(fa, TA ? A + kk * la + rb * 16 : A + rb * 16 * la + kk, la);
#pragma unroll
    for (int f = 0; f < 4; f++) {
      const int cf = c0 + 2 * f;
      if (cf * 16 < DP) {
        wm::fragment<wm::matrix_b, 16, 16, 16, T, wm::row_major> fb;
        wm::load_matrix_sync(fb, B + kk * ld + cf * 16, ld);
        wm::mma_sync(acc[f], fa, fb, acc[f]);
      }
    }
  }
}

} // namespace SF_CUDA_NS

#endif
