// attn_fwd_mma.cu — flash-attention forward on the tensor cores for bf16/f16 inputs (FlashAttention-2's
// numerics: S = Q K^T and O += P V as wmma 16x16x16 products with f32 accumulation, P rounded to the input
// type for the P V product, online softmax and row sums in f32). One block (8 warps) per (64-query tile,
// head, batch); a query tile never straddles a query group, so the visible key range [kv_lo, kv_hi) is
// uniform in the block, as in kernels/nn_attention.cu. The output accumulator lives in shared memory (f32)
// because wmma does not say which lane holds which entry, and the online softmax rescales rows.
// Used by sf_k_attention (nn_attention.cu) for bf16/f16 without capture: by default on the GPU, on emu when
// SFWB_ATTN_MMA=1 (emu's default stays the f32-P kernel, which matches the CPU bit for bit in most outputs).
#include "sf_attn_tiles.cuh"
#include "sf_nn_kernels.h"

namespace SF_CUDA_NS {

/* shared-memory layout, byte offsets from a 32-byte aligned base (see ab_geom in attn_bwd.cu) */
template <class T> struct af_geom {
  int DP, LD, LS, LP, LO;
  size_t q, k, v, s, p, o, m, l, c, bytes;
  __host__ __device__ static size_t up(size_t o) { return (o + 31) & ~(size_t)31; }
  __host__ __device__ explicit af_geom(int d) {
    DP = (d + 15) / 16 * 16;
    LD = DP + 8, LS = 64 + 4, LP = 64 + 8, LO = DP + 4;
    size_t o = 0;
    q = o, o = up(o + sizeof(T) * 64 * LD);
    k = o, o = up(o + sizeof(T) * 64 * LD);
    v = o, o = up(o + sizeof(T) * 64 * LD);
    s = o, o = up(o + sizeof(float) * 64 * LS);
    p = o, o = up(o + sizeof(T) * 64 * LP);
    this->o = o, o = up(o + sizeof(float) * 64 * LO);
    m = o, o = up(o + sizeof(float) * 64);
    l = o, o = up(o + sizeof(float) * 64);
    c = o, o = up(o + sizeof(float) * 64);
    bytes = o + 32;
  }
};

template <class T>
__global__ void __launch_bounds__(AB_THREADS, 1) sf_flash_attn_mma_kernel(sf_k_attn_args a) {
  const int d = (int)a.d, tid = threadIdx.x;
  const af_geom<T> G(d);
  SF_DYNAMIC_SHARED(unsigned char, af_raw);
  unsigned char *base = (unsigned char *)(((uintptr_t)af_raw + 31) & ~(uintptr_t)31);
  T *Qs = (T *)(base + G.q), *Ks = (T *)(base + G.k), *Vs = (T *)(base + G.v), *Ps = (T *)(base + G.p);
  float *Ss = (float *)(base + G.s), *Os = (float *)(base + G.o), *Ms = (float *)(base + G.m), *Ls = (float *)(base + G.l),
        *Cs = (float *)(base + G.c);
  const int64_t tpg = (a.q_group + 63) / 64, g = blockIdx.x / tpg;
  const int64_t r0 = g * a.q_group + (blockIdx.x % tpg) * 64, gend = (g + 1) * a.q_group;
  const int64_t h = blockIdx.y, b = blockIdx.z;
  const int nq = (int)(r0 + 64 <= gend ? 64 : gend - r0);
  const int64_t lo = a.kv_lo ? a.kv_lo[g] : 0, hi = a.kv_hi ? a.kv_hi[g] : a.Lk;
  ab_load(Qs, G.LD, 64, nq, G.DP, a.q, a.dt, b * a.qs[0] + r0 * a.qs[1] + h * a.qs[2], a.qs[1], d);
  for (int i = tid; i < 64 * G.LO; i += AB_THREADS) Os[i] = 0.0f;
  if (tid < 64) Ms[tid] = -INFINITY, Ls[tid] = 0.0f;
  const int w = tid >> 5, rb = w & 3, c0 = w >> 2;
  const int row = tid >> 2, part = tid & 3; /* softmax: 4 threads per row, 16 columns each */

  for (int64_t k0 = lo; k0 < hi; k0 += 64) {
    const int nk = (int)(k0 + 64 <= hi ? 64 : hi - k0);
    __syncthreads(); /* the previous tile's P V is done with K, V, P */
    ab_load(Ks, G.LD, 64, nk, G.DP, a.k, a.dt, b * a.ks[0] + k0 * a.ks[1] + h * a.ks[2], a.ks[1], d);
    ab_load(Vs, G.LD, 64, nk, G.DP, a.v, a.dt, b * a.vs[0] + k0 * a.vs[1] + h * a.vs[2], a.vs[1], d);
    __syncthreads();
    ab_mma_nt(Ss, G.LS, Qs, Ks, G.LD, G.DP); /* S = Q K^T */
    __syncthreads();
    {
      const float *s = Ss + row * G.LS + part * 16;
      float mx = -INFINITY;
      for (int j = 0; j < 16; j++)
        if (part * 16 + j < nk) mx = fmaxf(mx, s[j] * a.scale);
      mx = fmaxf(mx, __shfl_xor_sync(SF_FULL_MASK, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(SF_FULL_MASK, mx, 2));
      const float mold = Ms[row], mnew = fmaxf(mold, mx);
      float sum = 0.0f;
      for (int j = 0; j < 16; j++) {
        const float p = part * 16 + j < nk ? expf(s[j] * a.scale - mnew) : 0.0f;
        ab_put(Ps + row * G.LP + part * 16 + j, p);
        sum += p;
      }
      sum += __shfl_xor_sync(SF_FULL_MASK, sum, 1);
      sum += __shfl_xor_sync(SF_FULL_MASK, sum, 2);
      if (part == 0) {
        const float corr = mold == -INFINITY ? 0.0f : expf(mold - mnew);
        Ls[row] = Ls[row] * corr + sum;
        Ms[row] = mnew;
        Cs[row] = corr;
      }
    }
    __syncthreads();
    for (int i = tid; i < 64 * G.DP; i += AB_THREADS) {
      const int r = i / G.DP, c = i % G.DP;
      Os[r * G.LO + c] *= Cs[r];
    }
    __syncthreads();
    /* O += P V: warp w owns rows 16 (w % 4) .. +16 and the column tiles w / 4 + 2 f */
#pragma unroll
    for (int f = 0; f < 4; f++) {
      const int cf = c0 + 2 * f;
      if (cf * 16 >= G.DP) continue;
      ab_acc acc;
      wm::load_matrix_sync(acc, Os + rb * 16 * G.LO + cf * 16, G.LO, wm::mem_row_major);
      for (int kk = 0; kk < 64; kk += 16) {
        wm::fragment<wm::matrix_a, 16, 16, 16, T, wm::row_major> fa;
        wm::fragment<wm::matrix_b, 16, 16, 16, T, wm::row_major> fb;
        wm::load_matrix_sync(fa, Ps + rb * 16 * G.LP + kk, G.LP);
        wm::load_matrix_sync(fb, Vs + kk * G.LD + cf * 16, G.LD);
        wm::mma_sync(acc, fa, fb, acc);
      }
      wm::store_matrix_sync(Os + rb * 16 * G.LO + cf * 16, acc, G.LO, wm::mem_row_major);
    }
  }
  __syncthreads();
  for (int i = tid; i < nq * d; i += AB_THREADS) {
    const int r = i / d, c = i % d;
    const float inv = Ls[r] > 0.0f ? 1.0f / Ls[r] : 0.0f;
    sf_st_f32(a.out, a.dt, ((b * a.Lq + r0 + r) * a.H + h) * d + c, Os[r * G.LO + c] * inv);
  }
  if (a.lse && tid < nq) a.lse[(b * a.H + h) * a.Lq + r0 + tid] = Ls[tid] > 0.0f ? Ms[tid] + logf(Ls[tid]) : -INFINITY;
}

template <class T> static int af_launch(const sf_k_attn_args *a) {
  const af_geom<T> G((int)a->d);
  if (G.bytes > 48 * 1024 &&
      sf_cuda_check(cudaFuncSetAttribute(sf_flash_attn_mma_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)G.bytes),
                    "attention"))
    return -1;
  const int64_t tpg = (a->q_group + 63) / 64;
  dim3 grid((unsigned)(a->n_qg * tpg), (unsigned)a->H, (unsigned)a->B);
  SF_LAUNCH(sf_flash_attn_mma_kernel<T>, grid, AB_THREADS, G.bytes, sf_cuda_stream(), *a);
  return sf_cuda_check_launch("attention (tensor cores)");
}

int sf_k_attention_mma(const sf_k_attn_args *a) {
  if (a->d > AB_MAXD) return sf_error("attention: head dim %lld exceeds the kernel's %d", (long long)a->d, AB_MAXD);
  if (!a->B || !a->Lq || !a->H) return 0;
  if (a->dt == SF_BF16) return af_launch<__nv_bfloat16>(a);
  if (a->dt == SF_F16) return af_launch<__half>(a);
  return sf_error("attention (tensor cores): %s inputs (bf16 or f16 only)", sf_dtype_name((sf_dtype)a->dt));
}

} // namespace SF_CUDA_NS
