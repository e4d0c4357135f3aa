-- dit.lua — the causal Wan DiT (random weights in the real layout, bf16, built on the device) and one
-- forward of a 3-frame chunk at the last position of a full 21-frame KV cache (keys of all 21 frames),
-- cross-attention K/V cached, timestep 250: the call chunk-wise generation makes most.
local F = dofile(GPU_CHECK_DIR .. "flops.lua")
local timing = dofile(GPU_CHECK_DIR .. "timing.lua")

local M = {}

function M.config(s)
  return {dim = s.dim, ffn_dim = s.ffn_dim, num_heads = s.num_heads, num_layers = s.num_layers, text_len = s.text_len,
          text_dim = s.text_dim, freq_dim = s.freq_dim, in_dim = s.in_dim, out_dim = s.in_dim}
end

function M.model(s, dev, causal)
  sfwb.manual_seed(0)
  return sfwb.wan.new(M.config(s), {causal = causal, num_frame_per_block = s.block, dtype = "bf16", device = dev})
end

function M.context(s, dev) return sfwb.randn({1, s.text_len, s.text_dim}, {dtype = "bf16", device = dev}) end

function M.forward(s, dev, m)
  local o = {dtype = "bf16", device = dev}
  local kv, ca = m:kv_cache{batch = 1, frames = s.frames}, m:crossattn_cache{batch = 1}
  local x = sfwb.randn({1, s.in_dim, s.block, s.lat_h, s.lat_w}, o)
  local t = sfwb.full({1, s.block}, 250, {dtype = "f32", device = dev})
  local ctx = M.context(s, dev)
  local start = s.frames - s.block
  local ms = sfwb.no_grad(function()
    return timing.ms(dev, function()
      return m:forward(x, t, ctx, {kv_cache = kv, crossattn_cache = ca, current_start_frame = start})
    end, s.reps_long)
  end)
  local f = F.dit_call(s, s.block, s.frames)
  return {dit_forward_ms = ms, dit_forward_tflop = f.total / 1e12, dit_forward_tflops = f.total / (ms * 1e9),
          dit_forward_floor_ms = F.floor_s(f) * 1e3, dit_forward_expected_ms = F.expected_s(f) * 1e3}
end

return M
