-- attention.lua — flash attention at Wan's shapes (head dim 128): the KV-cache case (a 3-frame chunk of
-- queries against 1..21 frames of keys, all visible) forward, and the training case (21 frames,
-- block-causal in 3-frame blocks) forward and backward; the 21-frame KV case backward too (the trainer's
-- exit step). bf16 q/k/v [1, L, heads, 128] with random values.
local F = dofile(GPU_CHECK_DIR .. "flops.lua")
local timing = dofile(GPU_CHECK_DIR .. "timing.lua")

return function(s, dev)
  local T, H, hd, D = s.frame_tokens, s.num_heads, s.head_dim, s.dim
  local o = {dtype = "bf16", device = dev}
  local cases = {}
  local function qkv(lq, lk, grad)
    local q, k, v = sfwb.randn({1, lq, H, hd}, o), sfwb.randn({1, lk, H, hd}, o), sfwb.randn({1, lk, H, hd}, o)
    if grad then q:requires_grad_(true); k:requires_grad_(true); v:requires_grad_(true) end
    return q, k, v
  end
  -- forward (and optionally backward) of one case; visible pairs give the FLOPs
  local function run(name, lq, lk, desc, pairs, bwd)
    local q, k, v = qkv(lq, lk, false)
    local fwd_ms = timing.ms(dev, function() return sfwb.nn.attention(q, k, v, desc) end, s.reps)
    local c = {case = name, q_tokens = lq, k_tokens = lk, fwd_ms = fwd_ms, fwd_tflops = F.attn_fwd(pairs, D) / (fwd_ms * 1e9)}
    if bwd then
      local qg, kg, vg = qkv(lq, lk, true)
      local g = sfwb.randn({1, lq, H, hd}, o)
      -- forward + backward, minus the forward: the backward kernels (dq, dk/dv, delta) alone
      local both = timing.ms(dev, function()
        local out = sfwb.nn.attention(qg, kg, vg, desc)
        out:backward(g)
      end, s.reps_long)
      c.bwd_ms = math.max(both - fwd_ms, 1e-6)
      c.bwd_tflops = F.attn_bwd(pairs, D) / (c.bwd_ms * 1e9)
    end
    cases[#cases + 1] = c
    return c
  end
  local nq = s.block * T
  local kv21
  for _, kf in ipairs(s.attn_key_frames) do
    local lq = math.min(kf, s.block) * T
    local c = run(string.format("kv_cache %d->%d frames", math.min(kf, s.block), kf), lq, kf * T, nil, lq * kf * T,
                  kf == s.frames)
    if kf == s.frames then kv21 = c end
  end
  -- block-causal over the whole video: query block i sees key frames [0, i*block)
  local L, vis, pairs = s.frames * T, {}, 0
  for i = 1, s.frames // s.block do
    vis[i] = {0, i * nq}
    pairs = pairs + nq * i * nq
  end
  local bc = run(string.format("block_causal %d frames", s.frames), L, L, {q_group = nq, visible = vis}, pairs, true)
  return {
    cases = cases,
    attention_fwd_tflops = kv21.fwd_tflops,          -- the inference hot path: a chunk against the full cache
    attention_fwd_tflops_block_causal = bc.fwd_tflops,
    attention_bwd_tflops = bc.bwd_tflops,            -- the training path
    attention_bwd_tflops_kv_cache = kv21.bwd_tflops,
  }
end
