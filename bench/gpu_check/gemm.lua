-- gemm.lua — the DiT's bf16 GEMMs as its linear layers run them (sfwb.linear: x [M, K] times W^T [K, N]
-- plus a bias, bf16 in and out, f32 accumulation; on the GPU one cuBLASLt matmul with the bias epilogue):
-- one transformer block's mix per row count (M = a 3-frame chunk, and the 21-frame training sequence), the
-- text-side projection, and the same products without the bias (plain cuBLAS), which should not be faster.
local timing = dofile(GPU_CHECK_DIR .. "timing.lua")

return function(s, dev)
  local D, Fd = s.dim, s.ffn_dim
  local o = {dtype = "bf16", device = dev}
  local shapes = {}
  local mixes = {}
  local function one(M, K, N, count)
    local x, w, b = sfwb.randn({M, K}, o), sfwb.randn({N, K}, o) * (1 / math.sqrt(K)), sfwb.randn({N}, o)
    local wt = w:t()
    local ms = timing.ms(dev, function() return sfwb.linear(x, w, b) end, s.reps)
    local ms_nobias = timing.ms(dev, function() return sfwb.matmul(x, wt) end, s.reps)
    local fl = 2 * M * K * N
    local r = {m = M, k = K, n = N, count = count, ms = ms, tflops = fl / (ms * 1e9), ms_no_bias = ms_nobias,
               tflops_no_bias = fl / (ms_nobias * 1e9)}
    shapes[#shapes + 1] = r
    return r, fl * count, ms * count, ms_nobias * count
  end
  for _, M in ipairs(s.gemm_rows) do
    local fl, ms, msn = 0, 0, 0
    -- one block: self q, k, v, o and cross q, o (D x D), ffn up (D -> F) and down (F -> D)
    for _, sh in ipairs({{M, D, D, 6}, {M, D, Fd, 1}, {M, Fd, D, 1}}) do
      local _, f, t, tn = one(sh[1], sh[2], sh[3], sh[4])
      fl, ms, msn = fl + f, ms + t, msn + tn
    end
    mixes[#mixes + 1] = {rows = M, tflops = fl / (ms * 1e9), tflops_no_bias = fl / (msn * 1e9), ms = ms}
  end
  -- text side, once per prompt: text embedding (text_dim -> D) and the cross-attention K/V (D -> D)
  one(s.text_rows, s.text_dim, D, 1)
  return {
    shapes = shapes, block_mixes = mixes,
    gemm_bf16_tflops = mixes[1].tflops,           -- a 3-frame chunk's block (inference)
    gemm_bf16_tflops_train = mixes[#mixes].tflops, -- the 21-frame sequence (training)
    gemm_bias_overhead = mixes[1].tflops_no_bias / mixes[1].tflops - 1,
  }
end
