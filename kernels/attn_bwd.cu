// attn_bwd.cu — flash-attention backward in the FlashAttention-2 scheme, deterministic (no atomics), O(N)
// memory (never an Lq x Lk matrix), recomputing P = exp(scale Q K^T - lse) from the forward's log-sum-exp:
//   1. delta[b, h, i] = dO_i . O_i                                  (one warp per query row)
//   2. per (key tile of BC, head, batch): K, V of the tile stay in shared memory; the block walks the query
//      tiles (BR) of every query group that sees the tile, accumulating dV += P^T dO and dK += dS^T Q in
//      registers, dS = P (dO V^T - delta); each dK/dV row is written once.
//   3. per (query tile of BR, head, batch): walks the key tiles of its group's visible range [kv_lo, kv_hi)
//      accumulating dQ += dS K in registers; each dQ row is written once.
// Query tiles never straddle a query group (as the forward, kernels/nn_attention.cu), so the visible key
// range is uniform inside a block. bf16/f16 inputs: 64x64 tiles, the five products on the tensor cores
// (wmma 16x16x16, f32 accumulate; P and dS rounded to the input type for the P^T dO, dS^T Q, dS K
// products, as FlashAttention does), 8 warps, head dim padded to a multiple of 16. f32 (and other)
// inputs: 32x32 tiles, f32 FMAs, no rounding, so emu matches the CPU backward to f32 round-off.
#include "sf_attn_tiles.cuh"
#include "sf_train_kernels.h"

namespace SF_CUDA_NS {

/* shared-memory layout (byte offsets from a 32-byte aligned base: wmma wants 256-bit aligned tiles). Rows
 * are padded (T tiles by 8 elements, f32 tiles by 4) so that the 16 rows of a wmma tile fall in different
 * banks; every tile offset stays a multiple of 32 bytes. */
template <class T> struct ab_geom {
  int DP, LD, LS, LP; /* padded head dim; pitch of the T tiles [rows][DP], of the f32 score tiles, of P/dS in T */
  size_t k, v, q, g, s, dp, p, ds, l, dl, bytes;
  __host__ __device__ static size_t up(size_t o) { return (o + 31) & ~(size_t)31; }
  __host__ __device__ explicit ab_geom(int d) {
    const int BR = ab_tile<T>::BR, BC = ab_tile<T>::BC;
    const bool mma = ab_tile<T>::MMA;
    DP = mma ? (d + 15) / 16 * 16 : d;
    LD = mma ? DP + 8 : d + 1;
    LS = BC + 4;
    LP = mma ? BC + 8 : 0;
    size_t o = 0;
    k = o, o = up(o + sizeof(T) * BC * LD);
    v = o, o = up(o + sizeof(T) * BC * LD);
    q = o, o = up(o + sizeof(T) * BR * LD);
    g = o, o = up(o + sizeof(T) * BR * LD);
    s = o, o = up(o + sizeof(float) * BR * LS);
    dp = o, o = up(o + sizeof(float) * BR * LS);
    p = o, o = up(o + sizeof(T) * BR * LP);
    ds = o, o = up(o + sizeof(T) * BR * LP);
    l = o, o = up(o + sizeof(float) * BR);
    dl = o, o = up(o + sizeof(float) * BR);
    bytes = o + 32; /* slack to align the base */
  }
};

/* writes the [64 x DP] accumulators of ab_mma_acc, times mul, to out rows [0, n) x cols [0, d) (row r at
 * out[r * rs], contiguous columns) through the staging area st (f32 [64][DP + 4]) */
__device__ __forceinline__ void ab_mma_store(float *out, int64_t rs, int n, int d, int DP, ab_acc (&acc)[4], float *st, float mul) {
  const int w = threadIdx.x >> 5, rb = w & 3, c0 = w >> 2, lo = DP + 4;
  __syncthreads(); /* the staging area is free */
#pragma unroll
  for (int f = 0; f < 4; f++) {
    const int cf = c0 + 2 * f;
    if (cf * 16 < DP) wm::store_matrix_sync(st + rb * 16 * lo + cf * 16, acc[f], lo, wm::mem_row_major);
  }
  __syncthreads();
  for (int i = threadIdx.x; i < n * d; i += AB_THREADS) {
    const int r = i / d, c = i % d;
    out[r * rs + c] = st[r * lo + c] * mul;
  }
}

/* ---- f32 tile products (scalar FMAs; thread t owns row t / TPR and columns t % TPR + TPR j) ---- */

#define AB_TPR (AB_THREADS / 32)
#define AB_NCOL (AB_MAXD / AB_TPR)

/* C [32 x 32] (pitch ls) = A [32 x d] B [32 x d]^T (pitch ld) */
__device__ __forceinline__ void ab_sc_nt(float *C, int ls, const float *A, const float *B, int ld, int d) {
  for (int i = threadIdx.x; i < 32 * 32; i += AB_THREADS) {
    const int r = i / 32, j = i % 32;
    float s = 0.0f;
    for (int c = 0; c < d; c++) s += A[r * ld + c] * B[j * ld + c];
    C[r * ls + j] = s;
  }
}

/* acc [32 x d] += op(A) B: op(A) [32 x 32] = A^T when TA (A pitch la), B [32 x d] (pitch ld) */
template <bool TA>
__device__ __forceinline__ void ab_sc_acc(float (&acc)[AB_NCOL], const float *A, int la, const float *B, int ld, int d) {
  const int r = threadIdx.x / AB_TPR, c0 = threadIdx.x % AB_TPR;
  for (int k = 0; k < 32; k++) {
    const float x = TA ? A[k * la + r] : A[r * la + k];
#pragma unroll
    for (int j = 0; j < AB_NCOL; j++) {
      const int c = c0 + AB_TPR * j;
      if (c < d) acc[j] += x * B[k * ld + c];
    }
  }
}

__device__ __forceinline__ void ab_sc_store(float *out, int64_t rs, int n, int d, const float (&acc)[AB_NCOL], float mul) {
  const int r = threadIdx.x / AB_TPR, c0 = threadIdx.x % AB_TPR;
  if (r >= n) return;
#pragma unroll
  for (int j = 0; j < AB_NCOL; j++) {
    const int c = c0 + AB_TPR * j;
    if (c < d) out[r * rs + c] = acc[j] * mul;
  }
}

/* ---- the shared steps of both passes ---- */

/* S = Q K^T and dP = dO V^T of the tiles in shared memory */
template <class T>
__device__ __forceinline__ void ab_scores(const ab_geom<T> &G, float *S, float *dP, const T *Q, const T *dO, const T *K,
                                          const T *V, int d) {
  if constexpr (ab_tile<T>::MMA) {
    ab_mma_nt(S, G.LS, Q, K, G.LD, G.DP);
    ab_mma_nt(dP, G.LS, dO, V, G.LD, G.DP);
  } else {
    ab_sc_nt(S, G.LS, Q, K, G.LD, d);
    ab_sc_nt(dP, G.LS, dO, V, G.LD, d);
  }
}

/* P = exp(scale S - lse), dS = P (dP - delta) where query row r < nq and key column j in [jlo, jhi), else 0.
 * Tensor-core path: into Pt / dSt (input type); f32 path: in place over S / dP. */
template <class T>
__device__ __forceinline__ void ab_probs(const ab_geom<T> &G, float *S, float *dP, T *Pt, T *dSt, const float *L, const float *D,
                                         int nq, int jlo, int jhi, float scale) {
  const int BR = ab_tile<T>::BR, BC = ab_tile<T>::BC;
  for (int i = threadIdx.x; i < BR * BC; i += AB_THREADS) {
    const int r = i / BC, j = i % BC;
    const float l = L[r];
    const bool vis = r < nq && j >= jlo && j < jhi && l != -INFINITY;
    const float p = vis ? expf(S[r * G.LS + j] * scale - l) : 0.0f;
    const float ds = vis ? p * (dP[r * G.LS + j] - D[r]) : 0.0f;
    if constexpr (ab_tile<T>::MMA) {
      ab_put(Pt + r * G.LP + j, p);
      ab_put(dSt + r * G.LP + j, ds);
    } else {
      S[r * G.LS + j] = p;
      dP[r * G.LS + j] = ds;
    }
  }
}

/* lse and delta of query rows r0 .. r0 + nq (rows past nq: -inf / 0, i.e. invisible) */
__device__ __forceinline__ void ab_load_rows(float *L, float *D, const sf_k_attn_bwd_args &a, int64_t b, int64_t h, int64_t r0,
                                             int nq, int BR) {
  for (int r = threadIdx.x; r < BR; r += AB_THREADS) {
    const int64_t o = (b * a.H + h) * a.Lq + r0 + r;
    L[r] = r < nq ? a.lse[o] : -INFINITY;
    D[r] = r < nq ? a.delta[o] : 0.0f;
  }
}

#define AB_SMEM_POINTERS                                                                              \
  SF_DYNAMIC_SHARED(unsigned char, ab_raw);                                                           \
  unsigned char *base = (unsigned char *)(((uintptr_t)ab_raw + 31) & ~(uintptr_t)31);                 \
  T *Ks = (T *)(base + G.k), *Vs = (T *)(base + G.v), *Qs = (T *)(base + G.q), *Gs = (T *)(base + G.g); \
  T *Ps = (T *)(base + G.p), *dSs = (T *)(base + G.ds);                                               \
  float *Ss = (float *)(base + G.s), *dPs = (float *)(base + G.dp), *Ls = (float *)(base + G.l), *Ds = (float *)(base + G.dl)

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

/* pass 2: one block per (key tile, head, batch) -> dK, dV rows of the tile */
template <class T>
__global__ void __launch_bounds__(AB_THREADS, 1) sf_attn_bwd_dkdv_kernel(sf_k_attn_bwd_args a) {
  const int BR = ab_tile<T>::BR, BC = ab_tile<T>::BC, d = (int)a.d;
  const ab_geom<T> G(d);
  AB_SMEM_POINTERS;
  const int64_t h = blockIdx.y, b = blockIdx.z, k0 = (int64_t)blockIdx.x * BC;
  const int nk = (int)(k0 + BC <= a.Lk ? BC : a.Lk - k0);
  ab_load(Ks, G.LD, BC, nk, G.DP, a.k, a.dt, b * a.ks[0] + k0 * a.ks[1] + h * a.ks[2], a.ks[1], d);
  ab_load(Vs, G.LD, BC, nk, G.DP, a.v, a.dt, b * a.vs[0] + k0 * a.vs[1] + h * a.vs[2], a.vs[1], d);
  ab_acc mK[4], mV[4];
  float sK[AB_NCOL], sV[AB_NCOL];
  if constexpr (ab_tile<T>::MMA) {
#pragma unroll
    for (int f = 0; f < 4; f++) wm::fill_fragment(mK[f], 0.0f), wm::fill_fragment(mV[f], 0.0f);
  } else {
#pragma unroll
    for (int j = 0; j < AB_NCOL; j++) sK[j] = sV[j] = 0.0f;
  }
  for (int64_t g = 0; g < a.n_qg; g++) {
    const int64_t lo = a.kv_lo ? a.kv_lo[g] : 0, hi = a.kv_hi ? a.kv_hi[g] : a.Lk;
    if (hi <= k0 || lo >= k0 + nk || hi <= lo) continue; /* the group does not see this key tile */
    const int jlo = (int)(lo > k0 ? lo - k0 : 0), jhi = (int)(hi < k0 + nk ? hi - k0 : nk);
    const int64_t gend = (g + 1) * a.q_group;
    for (int64_t r0 = g * a.q_group; r0 < gend; r0 += BR) {
      const int nq = (int)(r0 + BR <= gend ? BR : gend - r0);
      __syncthreads(); /* the previous query tile is done with Q, dO, P, dS */
      ab_load(Qs, G.LD, BR, nq, G.DP, a.q, a.dt, b * a.qs[0] + r0 * a.qs[1] + h * a.qs[2], a.qs[1], d);
      ab_load(Gs, G.LD, BR, nq, G.DP, a.dout, a.gdt, b * a.gs[0] + r0 * a.gs[1] + h * a.gs[2], a.gs[1], d);
      ab_load_rows(Ls, Ds, a, b, h, r0, nq, BR);
      __syncthreads();
      ab_scores(G, Ss, dPs, Qs, Gs, Ks, Vs, d);
      __syncthreads();
      ab_probs(G, Ss, dPs, Ps, dSs, Ls, Ds, nq, jlo, jhi, a.scale);
      __syncthreads();
      if constexpr (ab_tile<T>::MMA) {
        ab_mma_acc<T, true>(mV, Ps, G.LP, BR, Gs, G.LD, G.DP);  /* dV += P^T dO */
        ab_mma_acc<T, true>(mK, dSs, G.LP, BR, Qs, G.LD, G.DP); /* dK += dS^T Q */
      } else {
        ab_sc_acc<true>(sV, Ss, G.LS, Gs, G.LD, d);
        ab_sc_acc<true>(sK, dPs, G.LS, Qs, G.LD, d);
      }
    }
  }
  const int64_t o = ((b * a.Lk + k0) * a.H + h) * a.d, rs = a.H * a.d;
  if constexpr (ab_tile<T>::MMA) {
    if (a.dv) ab_mma_store(a.dv + o, rs, nk, d, G.DP, mV, Ss, 1.0f);
    if (a.dk) ab_mma_store(a.dk + o, rs, nk, d, G.DP, mK, Ss, a.scale);
  } else {
    if (a.dv) ab_sc_store(a.dv + o, rs, nk, d, sV, 1.0f);
    if (a.dk) ab_sc_store(a.dk + o, rs, nk, d, sK, a.scale);
  }
}

/* pass 3: one block per (query tile, head, batch) -> dQ rows of the tile */
template <class T>
__global__ void __launch_bounds__(AB_THREADS, 1) sf_attn_bwd_dq_kernel(sf_k_attn_bwd_args a) {
  const int BR = ab_tile<T>::BR, BC = ab_tile<T>::BC, d = (int)a.d;
  const ab_geom<T> G(d);
  AB_SMEM_POINTERS;
  const int64_t tpg = (a.q_group + BR - 1) / BR, g = blockIdx.x / tpg;
  const int64_t r0 = g * a.q_group + (blockIdx.x % tpg) * BR, gend = (g + 1) * a.q_group;
  const int64_t h = blockIdx.y, b = blockIdx.z;
  const int nq = (int)(r0 + BR <= gend ? BR : gend - r0);
  const int64_t lo = a.kv_lo ? a.kv_lo[g] : 0, hi = a.kv_hi ? a.kv_hi[g] : a.Lk;
  ab_load(Qs, G.LD, BR, nq, G.DP, a.q, a.dt, b * a.qs[0] + r0 * a.qs[1] + h * a.qs[2], a.qs[1], d);
  ab_load(Gs, G.LD, BR, nq, G.DP, a.dout, a.gdt, b * a.gs[0] + r0 * a.gs[1] + h * a.gs[2], a.gs[1], d);
  ab_load_rows(Ls, Ds, a, b, h, r0, nq, BR);
  ab_acc mQ[4];
  float sQ[AB_NCOL];
  if constexpr (ab_tile<T>::MMA) {
#pragma unroll
    for (int f = 0; f < 4; f++) wm::fill_fragment(mQ[f], 0.0f);
  } else {
#pragma unroll
    for (int j = 0; j < AB_NCOL; j++) sQ[j] = 0.0f;
  }
  for (int64_t k0 = lo; k0 < hi; k0 += BC) {
    const int nk = (int)(k0 + BC <= hi ? BC : hi - k0);
    __syncthreads(); /* the previous key tile is done with K, V, dS */
    ab_load(Ks, G.LD, BC, nk, G.DP, a.k, a.dt, b * a.ks[0] + k0 * a.ks[1] + h * a.ks[2], a.ks[1], d);
    ab_load(Vs, G.LD, BC, nk, G.DP, a.v, a.dt, b * a.vs[0] + k0 * a.vs[1] + h * a.vs[2], a.vs[1], d);
    __syncthreads();
    ab_scores(G, Ss, dPs, Qs, Gs, Ks, Vs, d);
    __syncthreads();
    ab_probs(G, Ss, dPs, Ps, dSs, Ls, Ds, nq, 0, nk, a.scale);
    __syncthreads();
    if constexpr (ab_tile<T>::MMA) ab_mma_acc<T, false>(mQ, dSs, G.LP, BC, Ks, G.LD, G.DP); /* dQ += dS K */
    else ab_sc_acc<false>(sQ, dPs, G.LS, Ks, G.LD, d);
  }
  const int64_t o = ((b * a.Lq + r0) * a.H + h) * a.d, rs = a.H * a.d;
  if constexpr (ab_tile<T>::MMA) ab_mma_store(a.dq + o, rs, nq, d, G.DP, mQ, Ss, a.scale);
  else ab_sc_store(a.dq + o, rs, nq, d, sQ, a.scale);
}

template <class T> static int ab_launch(const sf_k_attn_bwd_args *a) {
  const int BR = ab_tile<T>::BR, BC = ab_tile<T>::BC;
  const ab_geom<T> G((int)a->d);
  if (G.bytes > 48 * 1024) {
    if (sf_cuda_check(cudaFuncSetAttribute(sf_attn_bwd_dkdv_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)G.bytes),
                      "attention backward") ||
        sf_cuda_check(cudaFuncSetAttribute(sf_attn_bwd_dq_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)G.bytes),
                      "attention backward"))
      return -1;
  }
  if (a->dk || a->dv) {
    dim3 grid((unsigned)((a->Lk + BC - 1) / BC), (unsigned)a->H, (unsigned)a->B);
    SF_LAUNCH(sf_attn_bwd_dkdv_kernel<T>, grid, AB_THREADS, G.bytes, sf_cuda_stream(), *a);
    if (sf_cuda_check_launch("attention backward (dK, dV)")) return -1;
  }
  if (a->dq) {
    const int64_t tpg = (a->q_group + BR - 1) / BR;
    dim3 grid((unsigned)(a->n_qg * tpg), (unsigned)a->H, (unsigned)a->B);
    SF_LAUNCH(sf_attn_bwd_dq_kernel<T>, grid, AB_THREADS, G.bytes, sf_cuda_stream(), *a);
    if (sf_cuda_check_launch("attention backward (dQ)")) return -1;
  }
  return 0;
}

int sf_k_attention_bwd(const sf_k_attn_bwd_args *a) {
  if (a->d > AB_MAXD) return sf_error("attention backward: head dim %lld exceeds the kernel's %d", (long long)a->d, AB_MAXD);
  if (!a->B || !a->H || !a->Lq) return 0;
  if (!a->Lk) { /* nothing visible: zero gradients */
    if (a->dq && sf_cuda_check(cudaMemsetAsync(a->dq, 0, sizeof(float) * (size_t)(a->B * a->Lq * a->H * a->d), sf_cuda_stream()),
                               "attention backward"))
      return -1;
    return 0;
  }
  SF_LAUNCH(sf_attn_delta_kernel, sf_grid_for(a->B * a->H * a->Lq, 8), 256, 0, sf_cuda_stream(), *a);
  if (sf_cuda_check_launch("attention backward (delta)")) return -1;
  switch (a->dt) {
  case SF_BF16: return ab_launch<__nv_bfloat16>(a);
  case SF_F16: return ab_launch<__half>(a);
  default: return ab_launch<float>(a);
  }
}

} // namespace SF_CUDA_NS
