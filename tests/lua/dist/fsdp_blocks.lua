-- fsdp_blocks.lua — `mpirun -np N build/sfwb tests/lua/dist/fsdp_blocks.lua [device]` (tests/cmake/dist.cmake):
-- per-block FSDP (torch FULL_SHARD with each transformer block its own unit): under gradient
-- checkpointing a sharded DMD step gathers each block's parameters only around its forward and its
-- recomputation in backward (never more than two blocks of a model at once: the one running and the
-- prefetched next), reduce-scatters its gradients as its backward ends, trains to the replicated run's
-- weights, and peaks (allocator high-water mark during the step) well below the replica.
local T = require "sfwb.testing"
local U = dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/fsdp_util.lua")
local dist = sfwb.dist
local rank, world = dist.init()
local dev = arg[1] or "cpu"

-- parameters dominate the step's memory here, as in the real models (few tokens)
local CFG = {dim = 64, ffn_dim = 256, num_heads = 2, num_layers = 4, in_dim = 16, out_dim = 16,
             text_dim = 8, text_len = 4, freq_dim = 16}

local function trainer(extra)
  sfwb.manual_seed(100)
  local p = {generator = sfwb.wan.new(CFG, {causal = true, num_frame_per_block = 3, device = dev}),
             real_score = sfwb.wan.new(CFG, {causal = false, device = dev}),
             fake_score = sfwb.wan.new(CFG, {causal = false, device = dev}),
             text_encoder = function(prompts) return sfwb.ones({#prompts, 4, 8}, {device = dev}) end,
             dataset = {"a", "b", "c", "d", "e", "f", "g", "h"}}
  local cfg = {seed = 7, lr = 1e-3, lr_critic = 1e-3, dfake_gen_update_ratio = 1, ema_weight = 0, device = dev,
               num_frame_per_block = 3, num_training_frames = 3, image_or_video_shape = {1, 3, 16, 2, 4},
               denoising_step_list = {1000, 750, 500, 250}, warp_denoising_step = true, ts_schedule = false,
               guidance_scale = 3.0, gradient_checkpointing = true, generator_fsdp_wrap_strategy = "transformer",
               real_score_fsdp_wrap_strategy = "transformer", fake_score_fsdp_wrap_strategy = "transformer"}
  for k, v in pairs(extra or {}) do cfg[k] = v end
  return sfwb.train.dmd(cfg, p)
end

local function mem()
  collectgarbage(); collectgarbage()
  if dev == "cpu" then return sfwb.cpu_memory() end
  return sfwb.cuda.memory(dev)
end
local function reset_peak()
  collectgarbage(); collectgarbage()
  if dev == "cpu" then sfwb.cpu_memory(true) else sfwb.cuda.reset_peak_memory_stats(dev) end
end

local full_state = U.full_state

-- the first step's peak (the optimizer moments are made in it) and what is live before it, both above
-- what was live before the trainer was made. SFWB_FSDP_STEPS=2 measures the second step instead.
local function step_peak(tr, base)
  for _ = 2, tonumber(os.getenv("SFWB_FSDP_STEPS") or "1") do tr:step() end
  local before = mem().allocated - base
  reset_peak()
  tr:step()
  return mem().peak - base, before
end

local base = mem().allocated
local rep = trainer()
local rep_peak, rep_before = step_peak(rep, base)
local want = full_state(rep)
local rep_state = require("sfwb.train.scale").state_bytes(rep)
rep = nil

base = mem().allocated
local shd = trainer({sharding_strategy = "full"})
local g = shd.shard_of.generator
local shd_peak, shd_before = step_peak(shd, base)

T.case(("%d ranks on %s: per-block gathering"):format(world, dev), function()
  T.check(g.per_block, "the generator is sharded per block")
  T.eq(#g.units, CFG.num_layers + 1, "one unit per block and one for the rest")
  T.check(g.max_held_blocks <= 2, ("at most two blocks held at once, saw %d"):format(g.max_held_blocks))
  -- the critic runs checkpointed (the generator's rollout takes the KV path, which is never recomputed)
  local c = shd.shard_of.critic
  T.check((c.recomputes or 0) >= CFG.num_layers, ("every critic block gathered for its recomputation in backward (%d)")
    :format(c.recomputes or 0))
  T.check(c.max_held_blocks <= 2, ("critic: at most two blocks held at once, saw %d"):format(c.max_held_blocks))
  T.check(g.gathers > 2 * CFG.num_layers, ("blocks gathered per forward call (%d gathers)"):format(g.gathers))
  for _, s in ipairs(shd.shards) do T.eq(s.sh:all_gathered(), false, s.name .. " released after the step") end
end)

T.case(("%d ranks on %s: the replicated run's weights"):format(world, dev), function()
  local got, worst = full_state(shd), 0
  for k, v in pairs(want) do worst = math.max(worst, (v - got[k]):abs():max():item()) end
  T.check(worst <= 1e-5, ("max |sharded - replicated| = %g"):format(worst))
end)

T.case(("%d ranks on %s: peak memory during a step"):format(world, dev), function()
  local ratio = shd_peak / rep_peak
  if rank == 0 then
    print(("FSDP-PEAK %d ranks on %s: allocator peak during a step (gradient checkpointing, %d blocks, step %s): replicated %d B, "
      .. "per-block sharded %d B (%.3fx); live before the step: %d B vs %d B"):format(world, dev, CFG.num_layers,
      os.getenv("SFWB_FSDP_STEPS") or "1", rep_peak, shd_peak, ratio, rep_before, shd_before))
  end
  local limit = world == 2 and 0.75 or 0.5
  T.check(ratio <= limit, ("peak %.3fx of the replica's, limit %.2fx"):format(ratio, limit))
end)

-- hybrid (HYBRID_SHARD): 4 ranks as 2 nodes x 2; gathers within the node, gradients reduce-scattered
-- within it and all-reduced across; the replicated run's weights, half the replica's state per rank
if world == 4 then
  shd = nil
  collectgarbage()
  for _, strat in ipairs({"hybrid", "hybrid_zero2"}) do
  local hb = trainer({sharding_strategy = strat, ranks_per_node = 2})
  T.case(("4 ranks as 2 nodes x 2, %s: the replicated run's weights"):format(strat), function()
    local h = hb.shard_of.generator
    T.eq(h.strategy, strat == "hybrid" and "hybrid_full" or strat)
    T.eq(h.nshard, 2)
    T.eq(h.intra:size(), 2)
    T.eq(h.inter:size(), 2)
    T.eq(h.intra:world_rank(0), (rank // 2) * 2, "a node is 2 consecutive ranks")
    for _ = 1, tonumber(os.getenv("SFWB_FSDP_STEPS") or "1") do hb:step() end -- as many as the replicated run
    local got, worst = full_state(hb), 0
    for k, v in pairs(want) do worst = math.max(worst, (v - got[k]):abs():max():item()) end
    T.check(worst <= 1e-5, ("max |hybrid - replicated| = %g"):format(worst))
    local scale = require "sfwb.train.scale"
    local b = scale.state_bytes(hb)
    if rank == 0 then
      print(("FSDP-HYBRID %s 2 nodes x 2: max |hybrid - replicated| %g; state per rank %d B = %.3fx of the replica's")
        :format(strat, worst, b, b / rep_state))
    end
    T.check(b <= 0.6 * rep_state, ("hybrid state per rank %.3fx of the replica's"):format(b / rep_state))
    T.check(b >= 0.4 * rep_state, "sharded 2 ways, not 4")
    if strat == "hybrid_zero2" then T.check(h.max_held_blocks == CFG.num_layers, "ZeRO-2 keeps the blocks through the step") end
  end)
  hb = nil
  collectgarbage()
  end
end

T.done()
