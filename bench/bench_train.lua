-- bench_train.lua — forward + backward of the Wan DiT at real Wan2.1-1.3B block width (dim 1536, 12 heads,
-- ffn 8960, 1 latent frame of 60x104 = 1560 tokens, text 512), f32 on the CPU, loss = mean(out^2):
-- time and peak memory above the weights, without and with per-block checkpointing.
-- Prints "key value" lines for bench_train.sh.
local layers = tonumber(arg[1] or "2")
local reps = tonumber(arg[2] or "2")
local procmem = require "sfwb.procmem"
local status, reset_peak = procmem.status, procmem.reset_peak
local m, x, t, ctx = dofile(arg[0]:gsub("[^/]*$", "") .. "wan_block_sizes.lua")(layers)
m:requires_grad_(true)
local function step(ck)
  local out = m:forward(x, t, ctx, {checkpoint = ck})
  local loss = (out * out):mean()
  loss:backward()
end
step(false) -- warm-up; the gradients stay allocated (as in training), so they are not in the peak
for _, ck in ipairs({false, true}) do
  collectgarbage()
  collectgarbage()
  local base = status("VmRSS")
  reset_peak()
  local cpu0 = sfwb.cpu_memory(true).allocated
  local best, bestc = math.huge, math.huge
  for _ = 1, reps do
    local t0, c0 = sfwb.time(), os.clock()
    step(ck)
    best, bestc = math.min(best, sfwb.time() - t0), math.min(bestc, os.clock() - c0)
    collectgarbage()
  end
  local key = ck and "ckpt_" or ""
  print(string.format("%sfwdbwd_s %.4f", key, best))
  print(string.format("%sfwdbwd_cpu_s %.4f", key, bestc))
  print(string.format("%speak_extra_mb %.1f", key, (status("VmHWM") - base) / 2 ^ 20))
  print(string.format("%salloc_peak_mb %.1f", key, (sfwb.cpu_memory().peak - cpu0) / 2 ^ 20))
end
