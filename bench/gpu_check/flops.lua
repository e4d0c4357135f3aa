-- flops.lua — the arithmetic behind gpu_check's expected figures: FLOP counts of the attention cases, the
-- DiT's GEMMs, one DiT forward and a whole chunk-wise generation, and the H100 figures they are read
-- against. A multiply-add is 2 FLOP; attention forward is 4 * (visible query-key pairs) * dim (QK^T and
-- PV), backward 2.5x that (FlashAttention's convention: 5 products instead of 2).
local M = {}

-- H100 SXM: dense bf16 tensor-core peak, HBM3 bandwidth
M.h100 = {bf16_tflops = 989, hbm_tbs = 3.35}
-- published points the measured figures are read beside
M.reference = {
  self_forcing_fps = 17.0, self_forcing_first_chunk_latency_s = 0.69,   -- Self-Forcing paper, chunk-wise, one H100
  fa3_fwd_tflops = 600,                                                  -- FlashAttention-3 bf16 forward, hdim 128, H100
  fa2_fwd_tflops_h100 = 350,                                             -- FlashAttention-2 on H100 (mma.sync, no wgmma)
}
-- what sfwb's kernels can reach at best (docs/cuda.md "Expected figures"): cuBLAS bf16 at the DiT's shapes,
-- the wmma (mma.sync-class) flash-attention kernels, which cannot use Hopper's wgmma
M.assumed = {gemm_tflops = 650, attn_fwd_tflops = 300, attn_bwd_tflops = 200}

function M.attn_fwd(pairs, dim) return 4 * pairs * dim end
function M.attn_bwd(pairs, dim) return 2.5 * M.attn_fwd(pairs, dim) end

-- one causal-DiT call on nq query frames against kf key frames (KV cache), cross-attention K/V cached
function M.dit_call(s, nq, kf)
  local T, D, F = s.frame_tokens, s.dim, s.ffn_dim
  local Lq, Lk = nq * T, kf * T
  local gemm = s.num_layers * 2 * Lq * (4 * D * D + 2 * D * D + 2 * D * F)   -- self qkvo, cross q o, ffn
    + 2 * Lq * s.in_dim * 4 * D + 2 * Lq * D * s.in_dim * 4                   -- patch embedding, head
  local attn = s.num_layers * (M.attn_fwd(Lq * Lk, D) + M.attn_fwd(Lq * s.text_len, D))
  return {gemm = gemm, attn = attn, total = gemm + attn}
end

-- chunk-wise generation: per chunk #steps denoising calls + one context call, keys up to the chunk's end
function M.generation(s)
  local g, a = 0, 0
  for start = 0, s.frames - 1, s.block do
    local c = M.dit_call(s, s.block, start + s.block)
    g = g + (#s.steps + 1) * c.gemm
    a = a + (#s.steps + 1) * c.attn
  end
  return {gemm = g, attn = a, total = g + a}
end

-- seconds at the H100's peak, and at the assumed rates of sfwb's kernels
function M.floor_s(f) return f.total / (M.h100.bf16_tflops * 1e12) end
function M.expected_s(f) return f.gemm / (M.assumed.gemm_tflops * 1e12) + f.attn / (M.assumed.attn_fwd_tflops * 1e12) end

return M
