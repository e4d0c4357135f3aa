-- bench_wan.lua — one Wan DiT forward at real Wan2.1-1.3B block sizes (dim 1536, 12 heads, ffn 8960,
-- 1 latent frame of 60x104 = 1560 tokens, text 512) on the CPU: time, peak memory above the weights,
-- and the cost of capturing every layer's self-attention. Prints "key value" lines for bench_wan.sh.
local layers = tonumber(arg[1] or "2")
local reps = tonumber(arg[2] or "3")
local procmem = require "sfwb.procmem"
local status, reset_peak = procmem.status, procmem.reset_peak
local m, x, t, ctx = dofile(arg[0]:gsub("[^/]*$", "") .. "wan_block_sizes.lua")(layers)
-- memory: the first forward of a fresh process (high-water mark above the weights and inputs), so
-- neither side's allocator cache hides the working set; time: the best of the following runs
collectgarbage()
local base = status("VmRSS")
reset_peak()
m:forward(x, t, ctx)
local peak = status("VmHWM") - base
collectgarbage()
-- best of `reps` interleaved runs without and with a capture of every layer's self-attention, so
-- machine load hits both alike
local cap = m:capture_attention{layers = "all", attn = "self", what = "mass"}
cap:remove() -- re-attached per run below
local tf, tc = math.huge, math.huge
for _ = 1, reps do
  collectgarbage()
  local t0 = sfwb.time()
  local out = m:forward(x, t, ctx)
  tf = math.min(tf, sfwb.time() - t0)
  out = nil
  local c = m:capture_attention{layers = "all", attn = "self", what = "mass"}
  collectgarbage()
  t0 = sfwb.time()
  out = m:forward(x, t, ctx)
  tc = math.min(tc, sfwb.time() - t0)
  out = nil
  c:remove()
end
print(string.format("forward_s %.4f", tf))
print(string.format("peak_extra_mb %.1f", peak / 2 ^ 20))
print(string.format("capture_s %.4f", tc))
