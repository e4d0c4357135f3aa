// nn_attention.cu — flash attention for the Wan DiT: one block per (32-query tile, head, batch), key/value
// tiles of 32 staged in shared memory (bf16/f16/f32 in, f32 accumulate), online softmax, O(tile) memory —
// never an [N, N] score matrix. Query tiles never straddle a query group (latent frame), so the visible
// key range [kv_lo, kv_hi) of the group (full / block-causal / local window) is uniform inside a block.
// Capture (frame-level logit / probability sums) is a second sweep with the final row max and
// denominator, after the output is written, so the output does not depend on it.
#include "sf_device.cuh"
#include "sf_nn_kernels.h"

namespace SF_CUDA_NS {

#define FA_BQ 32
#define FA_BK 32
#define FA_THREADS 128
#define FA_MAXD 128
#define FA_COLS (FA_MAXD / 4)

/* rows k0 .. k0+nk-1 of head h of a [B, L, H, d] tensor (strides st) into T[FA_BK][d], zeros past nk */
__device__ __forceinline__ void fa_load_rows(float *T, const void *src, int dt, const int64_t *st, int64_t b, int64_t h,
                                             int64_t k0, int nk, int d, int tid) {
  for (int i = tid; i < FA_BK * d; i += FA_THREADS) {
    const int j = i / d, c = i % d;
    T[i] = j < nk ? sf_ld_f32(src, dt, b * st[0] + (k0 + j) * st[1] + h * st[2] + c) : 0.0f;
  }
}

/* S[r][j] = scale * Q[r] . K[j] for the tile; -inf past the nk valid keys */
__device__ __forceinline__ void fa_scores(float *Ss, const float *Qs, const float *KV, float scale, int nk, int d, int tid) {
  for (int i = tid; i < FA_BQ * FA_BK; i += FA_THREADS) {
    const int r = i / FA_BK, j = i % FA_BK;
    float s = 0.0f;
    for (int c = 0; c < d; c++) s += Qs[r * d + c] * KV[j * d + c];
    Ss[i] = j < nk ? s * scale : -INFINITY;
  }
}

__global__ void sf_flash_attn_kernel(sf_k_attn_args a) {
  SF_DYNAMIC_SHARED(float, smem);
  const int d = (int)a.d;
  float *Qs = smem, *KV = Qs + FA_BQ * d, *Ss = KV + FA_BK * d, *Ms = Ss + FA_BQ * FA_BK, *Ls = Ms + FA_BQ, *Cs = Ls + FA_BQ;
  const int64_t tpg = (a.q_group + FA_BQ - 1) / FA_BQ;
  const int64_t g = blockIdx.x / tpg;
  const int64_t r0 = g * a.q_group + (blockIdx.x % tpg) * FA_BQ;
  const int64_t h = blockIdx.y, b = blockIdx.z;
  const int64_t gend = (g + 1) * a.q_group;
  const int nq = (int)(r0 + FA_BQ <= gend ? FA_BQ : gend - r0);
  const int64_t lo = a.kv_lo ? a.kv_lo[g] : 0, hi = a.kv_hi ? a.kv_hi[g] : a.Lk;
  const int tid = threadIdx.x, row = tid / 4, l4 = tid % 4;

  for (int i = tid; i < FA_BQ * d; i += FA_THREADS) {
    const int r = i / d, c = i % d;
    Qs[i] = r < nq ? sf_ld_f32(a.q, a.dt, b * a.qs[0] + (r0 + r) * a.qs[1] + h * a.qs[2] + c) : 0.0f;
  }
  if (tid < FA_BQ) {
    if (a.capture_only) /* the tensor-core kernel wrote out and lse: p = exp(s - lse) in the capture sweep */
      Ms[tid] = tid < nq ? a.lse[(b * a.H + h) * a.Lq + r0 + tid] : -INFINITY, Ls[tid] = 1.0f;
    else
      Ms[tid] = -INFINITY, Ls[tid] = 0.0f;
  }
  float O[FA_COLS];
#pragma unroll
  for (int j = 0; j < FA_COLS; j++) O[j] = 0.0f;
  __syncthreads();

  for (int64_t k0 = a.capture_only ? hi : lo; k0 < hi; k0 += FA_BK) {
    const int nk = (int)(k0 + FA_BK <= hi ? FA_BK : hi - k0);
    fa_load_rows(KV, a.k, a.dt, a.ks, b, h, k0, nk, d, tid);
    __syncthreads();
    fa_scores(Ss, Qs, KV, a.scale, nk, d, tid);
    __syncthreads();
    if (tid < FA_BQ) {
      float *s = Ss + tid * FA_BK;
      float mx = Ms[tid];
      for (int j = 0; j < nk; j++) mx = s[j] > mx ? s[j] : mx;
      const float corr = Ms[tid] == -INFINITY ? 0.0f : expf(Ms[tid] - mx);
      float sum = 0.0f;
      for (int j = 0; j < FA_BK; j++) {
        const float p = j < nk ? expf(s[j] - mx) : 0.0f;
        s[j] = p;
        sum += p;
      }
      Ls[tid] = Ls[tid] * corr + sum;
      Ms[tid] = mx;
      Cs[tid] = corr;
    }
    __syncthreads();
    fa_load_rows(KV, a.v, a.dt, a.vs, b, h, k0, nk, d, tid);
    __syncthreads();
    const float corr = Cs[row];
#pragma unroll
    for (int jj = 0; jj < FA_COLS; jj++) {
      const int c = l4 + 4 * jj;
      if (c < d) {
        float acc = O[jj] * corr;
        for (int j = 0; j < nk; j++) acc += Ss[row * FA_BK + j] * KV[j * d + c];
        O[jj] = acc;
      }
    }
    __syncthreads();
  }
  if (row < nq && !a.capture_only) {
    const float inv = Ls[row] > 0.0f ? 1.0f / Ls[row] : 0.0f;
#pragma unroll
    for (int jj = 0; jj < FA_COLS; jj++) {
      const int c = l4 + 4 * jj;
      if (c < d) sf_st_f32(a.out, a.dt, ((b * a.Lq + r0 + row) * a.H + h) * d + c, O[jj] * inv);
    }
  }
  if (a.lse && tid < nq && !a.capture_only) a.lse[(b * a.H + h) * a.Lq + r0 + tid] = Ls[tid] > 0.0f ? Ms[tid] + logf(Ls[tid]) : -INFINITY;
  if (!a.cap_logits && !a.cap_probs && !a.tok_logits && !a.tok_probs) return;
  const bool tok = a.tok_logits || a.tok_probs;
  const int64_t ntk = a.tk1 - a.tk0, ntq = a.tq1 - a.tq0;
  const float invB = 1.0f / (float)a.B;
  /* token level: pairs this query group cannot see are NaN (written by batch 0 only; nobody adds there) */
  if (tok && b == 0 && tid < nq && r0 + tid >= a.tq0 && r0 + tid < a.tq1)
    for (int64_t kj = a.tk0; kj < a.tk1; kj++) {
      if (kj >= lo && kj < hi) continue;
      const int64_t idx = (h * ntq + (r0 + tid - a.tq0)) * ntk + (kj - a.tk0);
      if (a.tok_logits) a.tok_logits[idx] = NAN;
      if (a.tok_probs) a.tok_probs[idx] = NAN;
    }

  /* capture sweep */
  for (int64_t k0 = lo; k0 < hi; k0 += FA_BK) {
    const int nk = (int)(k0 + FA_BK <= hi ? FA_BK : hi - k0);
    __syncthreads();
    fa_load_rows(KV, a.k, a.dt, a.ks, b, h, k0, nk, d, tid);
    __syncthreads();
    fa_scores(Ss, Qs, KV, a.scale, nk, d, tid); /* the sweep reads only the nk valid columns */
    __syncthreads();
    if (tid < nq) {
      const float m = Ms[tid], inv = 1.0f / Ls[tid];
      const float *s = Ss + tid * FA_BK;
      int j = 0;
      while (j < nk) {
        const int64_t kg = (k0 + j) / a.k_group;
        const int64_t jend64 = (kg + 1) * a.k_group - k0;
        const int jend = (int)(jend64 < nk ? jend64 : nk);
        float sl = 0.0f, sp = 0.0f;
        for (int jj = j; jj < jend; jj++) sl += s[jj], sp += expf(s[jj] - m) * inv;
        const int64_t cell = (h * a.n_qg + g) * a.n_kg + kg;
        if (a.cap_logits) atomicAdd(a.cap_logits + cell, sl);
        if (a.cap_probs) atomicAdd(a.cap_probs + cell, sp);
        j = jend;
      }
      const int64_t qi = r0 + tid;
      if (tok && qi >= a.tq0 && qi < a.tq1)
        for (int jj = 0; jj < nk; jj++) {
          const int64_t kj = k0 + jj;
          if (kj < a.tk0 || kj >= a.tk1) continue;
          const int64_t idx = (h * ntq + (qi - a.tq0)) * ntk + (kj - a.tk0);
          if (a.tok_logits) atomicAdd(a.tok_logits + idx, s[jj] * invB);
          if (a.tok_probs) atomicAdd(a.tok_probs + idx, expf(s[jj] - m) * inv * invB);
        }
    }
  }
}

/* the tensor-core kernel (attn_fwd_mma.cu; P rounded to bf16/f16 as FlashAttention) serves bf16/f16 (the
 * capture sweep then runs here on its lse, so capturing never changes the output): by default on the GPU, on emu only with SFWB_ATTN_MMA=1 (emu's default, this f32-P kernel, agrees
 * with the CPU bit for bit in most outputs, which the cross-device tests rely on); SFWB_ATTN_MMA=0 turns it off */
static bool fa_use_mma(const sf_k_attn_args *a) {
  if (a->dt != SF_BF16 && a->dt != SF_F16) return false;
  const char *e = getenv("SFWB_ATTN_MMA");
#ifdef SF_EMU
  return e && e[0] == '1';
#else
  return !(e && e[0] == '0');
#endif
}

int sf_k_attention(const sf_k_attn_args *a) {
  if (a->d > FA_MAXD) return sf_error("attention: head dim %lld exceeds the kernel's %d", (long long)a->d, FA_MAXD);
  if (fa_use_mma(a)) {
    if (sf_k_attention_mma(a)) return -1;
    if (!a->cap_logits && !a->cap_probs && !a->tok_logits && !a->tok_probs) return 0;
    if (!a->lse) return sf_error("attention: a capture on the tensor-core path needs the log-sum-exp buffer");
    sf_k_attn_args c = *a;
    c.capture_only = 1;
    const int64_t tpg = (c.q_group + FA_BQ - 1) / FA_BQ;
    const size_t smem = sizeof(float) * (size_t)((FA_BQ + FA_BK) * c.d + FA_BQ * FA_BK + 3 * FA_BQ);
    dim3 grid((unsigned)(c.n_qg * tpg), (unsigned)c.H, (unsigned)c.B);
    SF_LAUNCH(sf_flash_attn_kernel, grid, FA_THREADS, smem, sf_cuda_stream(), c);
    return sf_cuda_check_launch("attention capture");
  }
  if (!a->B || !a->Lq || !a->H) return 0;
  const int64_t tpg = (a->q_group + FA_BQ - 1) / FA_BQ;
  const size_t smem = sizeof(float) * (size_t)((FA_BQ + FA_BK) * a->d + FA_BQ * FA_BK + 3 * FA_BQ);
  dim3 grid((unsigned)(a->n_qg * tpg), (unsigned)a->H, (unsigned)a->B);
  SF_LAUNCH(sf_flash_attn_kernel, grid, FA_THREADS, smem, sf_cuda_stream(), *a);
  return sf_cuda_check_launch("attention");
}

} // namespace SF_CUDA_NS
