-- bench_dmd_step.lua — one Self-Forcing DMD generator step (rollout + DMD loss + backward) with the KV
-- cache's in-place gradient path (the original's semantics, default) against detach_kv_cache, same run,
-- same draws (replayed through tr.rng), alternating: wall and CPU time (best of N; CPU time is the robust
-- figure on a shared machine) and sfwb's allocator peak above the state before the step. Width: dim 512, 8 heads, 4 layers, 21 latent frames of 8x8 (16 tokens each),
-- 7 blocks of 3 frames, f32 on the CPU. Prints "key value" lines for bench_dmd_step.sh.
local reps = tonumber(arg[1] or "3")
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
local best, bestc, peak, loss = {inplace = math.huge, detach = math.huge}, {inplace = math.huge, detach = math.huge},
  {inplace = 0, detach = 0}, {}
for _, k in ipairs({"inplace", "detach"}) do step(trs[k]) end -- warm-up: gradients allocated
for _ = 1, reps do
  for _, k in ipairs({"inplace", "detach"}) do
    collectgarbage(); collectgarbage()
    local a0 = sfwb.cpu_memory(true).allocated
    local t0, c0 = sfwb.time(), os.clock()
    loss[k] = step(trs[k])
    best[k], bestc[k] = math.min(best[k], sfwb.time() - t0), math.min(bestc[k], os.clock() - c0)
    peak[k] = math.max(peak[k], (sfwb.cpu_memory().peak - a0) / 2 ^ 20)
  end
end
for _, k in ipairs({"inplace", "detach"}) do
  print(string.format("%s_step_s %.4f", k, best[k]))
  print(string.format("%s_step_cpu_s %.4f", k, bestc[k]))
  print(string.format("%s_peak_mb %.2f", k, peak[k]))
  print(string.format("%s_loss %.9g", k, loss[k]))
end
