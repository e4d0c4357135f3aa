-- bench_fsdp.lua — `mpirun -np 2 sfwb bench/bench_fsdp.lua [layers]` (bench/bench_dist.sh): one DMD training
-- step (generator + critic update, gradient checkpointing on) replicated (data parallel) vs
-- sharding_strategy = "full" with one FSDP unit per model (*_fsdp_wrap_strategy "size": these blocks are
-- under torch's 5e7 threshold) and with one unit per transformer block ("transformer"); on the CPU, same
-- model, same data, same ranks: step time, the allocator's peak during a step, and the per-rank
-- parameter+gradient+optimizer bytes after it.
local scale = require "sfwb.train.scale"
local dist = sfwb.dist
local rank, world = dist.init()
local layers = tonumber(arg[1] or "4")
local SHAPE = {dim = 256, ffn_dim = 1024, num_heads = 4, num_layers = layers, in_dim = 16, out_dim = 16,
               text_dim = 64, text_len = 16, freq_dim = 64}

local function trainer(extra)
  sfwb.manual_seed(1)
  local p = {generator = sfwb.wan.new(SHAPE, {causal = true, num_frame_per_block = 3}),
             real_score = sfwb.wan.new(SHAPE, {causal = false}), fake_score = sfwb.wan.new(SHAPE, {causal = false}),
             text_encoder = function(prompts) return sfwb.randn({#prompts, 16, 64}) end, dataset = {"a", "b", "c", "d"}}
  local cfg = {seed = 3, lr = 1e-4, dfake_gen_update_ratio = 1, ema_weight = 0, guidance_scale = 3.0,
               num_frame_per_block = 3, num_training_frames = 3, image_or_video_shape = {1, 3, 16, 8, 8},
               denoising_step_list = {1000, 750, 500, 250}, warp_denoising_step = true, ts_schedule = false,
               gradient_checkpointing = true}
  for k, v in pairs(extra or {}) do cfg[k] = v end
  return sfwb.train.dmd(cfg, p)
end

local function alloc() collectgarbage(); collectgarbage(); return sfwb.cpu_memory().allocated end

-- mean step time over n steps after a warm-up; the highest allocator peak of those steps above `base`
local function measure(tr, n, base)
  tr:step() -- warm-up (optimizer state allocated)
  dist.barrier()
  local t, peak = 0, 0
  for _ = 1, n do
    collectgarbage(); collectgarbage()
    sfwb.cpu_memory(true)
    dist.barrier()
    local t0 = sfwb.time()
    tr:step()
    t = t + sfwb.time() - t0
    peak = math.max(peak, sfwb.cpu_memory().peak - base)
  end
  return t / n, peak, scale.state_bytes(tr)
end

local N = 3
local WRAP = {generator_fsdp_wrap_strategy = "transformer", real_score_fsdp_wrap_strategy = "transformer",
              fake_score_fsdp_wrap_strategy = "transformer"}
local runs = {{"replicated", {}}, {"full, unit per model", {sharding_strategy = "full"}},
              {"full, unit per block", {sharding_strategy = "full"}, WRAP}}
local res = {}
for i, r in ipairs(runs) do
  local extra = {}
  for k, v in pairs(r[2]) do extra[k] = v end
  for k, v in pairs(r[3] or {}) do extra[k] = v end
  local base = alloc()
  local tr = trainer(extra)
  res[i] = {measure(tr, N, base)}
  tr = nil
end
if rank == 0 then
  local P = 0
  for _, v in pairs(sfwb.wan.new(SHAPE, {causal = true}):parameters()) do P = P + v:numel() end
  print(("model: dim %d, ffn %d, %d layers (%.1fM parameters per net), 3 nets, f32, gradient checkpointing, %d ranks, "
    .. "%d step(s) timed"):format(SHAPE.dim, SHAPE.ffn_dim, layers, P / 1e6, world, N))
  print(("%-24s %10s %8s %14s %8s %16s %8s"):format("run", "step (s)", "ratio", "peak/step (MB)", "ratio",
    "state/rank (MB)", "ratio"))
  for i, r in ipairs(runs) do
    local t, pk, b = table.unpack(res[i])
    print(("%-24s %10.3f %7.2fx %14.1f %7.2fx %16.1f %7.2fx"):format(r[1], t, t / res[1][1], pk / 2^20, pk / res[1][2],
      b / 2^20, b / res[1][3]))
  end
end
