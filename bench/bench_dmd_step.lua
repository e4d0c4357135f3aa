-- bench_dmd_step.lua — one Self-Forcing DMD generator step (rollout + DMD loss + backward) with the KV
-- cache's in-place gradient path (the original's semantics, default) against detach_kv_cache, same run,
-- same draws (replayed through tr.rng), interleaved (A B, B A, ...): median wall and CPU time over N pairs,
-- forward and backward apart, the median of the per-pair time ratios (robust to load drifting between
-- pairs), sfwb's allocator peak above the state before the step, and the machine's load average. Width: dim 512, 8 heads, 4 layers, 21 latent frames of 8x8 (16 tokens each),
-- 7 blocks of 3 frames, f32 on the CPU. Prints "key value" lines for bench_dmd_step.sh.
local reps = tonumber(arg[1] or "5")
local CFG = {dim = 512, ffn_dim = 1024, num_heads = 8, num_layers = 4, in_dim = 16, out_dim = 16,
             text_dim = 64, text_len = 32, freq_dim = 64}
local F, Hl, Wl = 21, 8, 8

local function trainer(detach)
  sfwb.manual_seed(3)
  local p = {generator = sfwb.wan.new(CFG, {causal = true, num_frame_per_block = 3}),
             real_score = sfwb.wan.new(CFG, {causal = false}), fake_score = sfwb.wan.new(CFG, {causal = false}),
             text_encoder = function(prompts) return sfwb.ones({#prompts, 32, 64}) end, dataset = {"a"}}
  return sfwb.train.dmd({seed = 1, denoising_step_list = {1000, 750, 500, 250}, warp_denoising_step = true,
    ts_schedule = false, timestep_shift = 5.0, guidance_scale = 3.0, num_frame_per_block = 3,
    num_training_frames = F, image_or_video_shape = {1, F, 16, Hl, Wl}, model_kwargs = {timestep_shift = 5.0},
    ema_weight = 0, detach_kv_cache = detach}, p)
end

-- the draws of one step, recorded once and replayed for both variants
local rec, log = trainer(false), {}
local inner = rec.rng
rec.rng = {randn = function(s, o) local t = inner.randn(s, o); log[#log + 1] = t; return t end,
           randint = function(a, b, s) local t = inner.randint(a, b, s); log[#log + 1] = t; return t end}
local ctx = sfwb.ones({1, 32, 64})
local args = {shape = {1, F, 16, Hl, Wl}, cond = {prompt_embeds = ctx}, uncond = {prompt_embeds = ctx}}
rec:generator_loss(args)
rec = nil

local trs = {inplace = trainer(false), detach = trainer(true)}
local function step(tr)
  local i = 0
  local function nxt() i = i + 1; return log[i] end
  tr.rng = {randn = nxt, randint = nxt}
  tr.opt_g:zero_grad()
  local loss = tr:generator_loss(args)
  loss:backward()
  return loss:item()
end
local function loadavg()
  local f = io.open("/proc/loadavg")
  local l = f and f:read("l") or "? ? ?"
  if f then f:close() end
  return l:match("^(%S+)") or "?"
end
local function median(t)
  local c = {}
  for i, v in ipairs(t) do c[i] = v end
  table.sort(c)
  local n = #c
  return n % 2 == 1 and c[(n + 1) / 2] or (c[n / 2] + c[n / 2 + 1]) / 2
end

-- interleaved A B / B A pairs (the order alternates so neither variant always runs first), each step timed
-- as forward (rollout + loss) and backward; per pair the in-place/detached ratio, whose median is robust to
-- load that drifts between pairs
local keys = {"inplace", "detach"}
local S = {}
for _, k in ipairs(keys) do S[k] = {wall = {}, cpu = {}, fwd = {}, bwd = {}, fwd_cpu = {}, bwd_cpu = {}, peak = 0} end
local ratio_wall, ratio_cpu, loss = {}, {}, {}
local function timed(k)
  collectgarbage(); collectgarbage()
  local a0 = sfwb.cpu_memory(true).allocated
  local t0, c0 = sfwb.time(), os.clock()
  local tr = trs[k]
  local i = 0
  local function nxt() i = i + 1; return log[i] end
  tr.rng = {randn = nxt, randint = nxt}
  tr.opt_g:zero_grad()
  local l = tr:generator_loss(args)
  local t1, c1 = sfwb.time(), os.clock()
  l:backward()
  local t2, c2 = sfwb.time(), os.clock()
  loss[k] = l:item()
  local s = S[k]
  s.wall[#s.wall + 1], s.cpu[#s.cpu + 1] = t2 - t0, c2 - c0
  s.fwd[#s.fwd + 1], s.bwd[#s.bwd + 1] = t1 - t0, t2 - t1
  s.fwd_cpu[#s.fwd_cpu + 1], s.bwd_cpu[#s.bwd_cpu + 1] = c1 - c0, c2 - c1
  s.peak = math.max(s.peak, (sfwb.cpu_memory().peak - a0) / 2 ^ 20)
end
local load0 = loadavg()
for _, k in ipairs(keys) do step(trs[k]) end -- warm-up: gradients allocated
for r = 1, reps do
  local order = r % 2 == 1 and {"inplace", "detach"} or {"detach", "inplace"}
  for _, k in ipairs(order) do timed(k) end
  ratio_wall[r] = S.inplace.wall[r] / S.detach.wall[r]
  ratio_cpu[r] = S.inplace.cpu[r] / S.detach.cpu[r]
end
print(string.format("reps %d", reps))
print(string.format("load_before %s", load0))
print(string.format("load_after %s", loadavg()))
for _, k in ipairs(keys) do
  local s = S[k]
  print(string.format("%s_step_s %.4f", k, median(s.wall)))
  print(string.format("%s_step_min_s %.4f", k, math.min(table.unpack(s.wall))))
  print(string.format("%s_step_cpu_s %.4f", k, median(s.cpu)))
  print(string.format("%s_fwd_s %.4f", k, median(s.fwd)))
  print(string.format("%s_bwd_s %.4f", k, median(s.bwd)))
  print(string.format("%s_fwd_cpu_s %.4f", k, median(s.fwd_cpu)))
  print(string.format("%s_bwd_cpu_s %.4f", k, median(s.bwd_cpu)))
  print(string.format("%s_peak_mb %.2f", k, s.peak))
  print(string.format("%s_loss %.9g", k, loss[k]))
end
print(string.format("pair_ratio_wall %.4f", median(ratio_wall)))
print(string.format("pair_ratio_cpu %.4f", median(ratio_cpu)))
