-- bench_fsdp.lua — `mpirun -np 2 sfwb bench/bench_fsdp.lua [layers]` (bench/bench_dist.sh): one DMD training
-- step (generator + critic update) replicated (data parallel) vs sharding_strategy = "full", on the CPU,
-- same model, same data, same ranks; per-rank parameter+gradient+optimizer bytes after the step.
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
               denoising_step_list = {1000, 750, 500, 250}, warp_denoising_step = true, ts_schedule = false}
  for k, v in pairs(extra or {}) do cfg[k] = v end
  return sfwb.train.dmd(cfg, p)
end

local function timed(tr, n)
  tr:step() -- warm-up (optimizer state allocated)
  dist.barrier()
  local t0 = sfwb.time()
  for _ = 1, n do tr:step() end
  dist.barrier()
  return (sfwb.time() - t0) / n
end

local N = 3
local rep = trainer()
local t_rep = timed(rep, N)
local b_rep = scale.state_bytes(rep)
rep = nil
collectgarbage()
local shd = trainer({sharding_strategy = "full"})
local t_shd = timed(shd, N)
local b_shd = scale.state_bytes(shd)
if rank == 0 then
  local P = 0
  for _, v in pairs(shd.shard_of.generator.params) do P = P + v:numel() end
  print(("model: dim %d, ffn %d, %d layers (%.1fM parameters per net), 3 nets, %d ranks, %d step(s) timed")
    :format(SHAPE.dim, SHAPE.ffn_dim, layers, P / 1e6, world, N))
  print(("%-44s %10s %10s %8s"):format("measure", "replicated", "sharded", "ratio"))
  print(("%-44s %10.3f %10.3f %7.2fx"):format("DMD step (s, generator + critic update)", t_rep, t_shd, t_shd / t_rep))
  print(("%-44s %10.1f %10.1f %7.2fx"):format("params+grads+optimizer per rank (MB)", b_rep / 2^20, b_shd / 2^20, b_shd / b_rep))
end
