-- train_fsdp.lua — `mpirun -np N build/sfwb tests/lua/dist/train_fsdp.lua [device]` (tests/cmake/dist.cmake):
-- sharding_strategy = "full" trains to the same weights as the replicated (data-parallel) run, holds
-- <= 0.6x (2 ranks) / <= 0.35x (4 ranks) of the replica's parameter, gradient and optimizer bytes after a
-- step, and writes full-state-dict checkpoints that load anywhere.
local T = require "sfwb.testing"
local U = dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/fsdp_util.lua")
local scale = require "sfwb.train.scale"
local dist = sfwb.dist
local rank, world = dist.init()
local dev = arg[1] or "cpu"
local dir = os.getenv("SFWB_FSDP_TMP") or "/tmp"

local TINY = {dim = 32, ffn_dim = 48, num_heads = 2, num_layers = 1, in_dim = 16, out_dim = 16,
              text_dim = 8, text_len = 4, freq_dim = 16}

local function trainer(extra)
  sfwb.manual_seed(100) -- the same initial weights on every rank and in every run
  local p = {generator = sfwb.wan.new(TINY, {causal = true, num_frame_per_block = 3, device = dev}),
             real_score = sfwb.wan.new(TINY, {causal = false, device = dev}),
             fake_score = sfwb.wan.new(TINY, {causal = false, device = dev}),
             text_encoder = function(prompts) return sfwb.ones({#prompts, 4, 8}, {device = dev}) end,
             dataset = {"a", "b", "c", "d", "e", "f", "g", "h"}}
  local cfg = {seed = 7, lr = 1e-3, lr_critic = 1e-3, dfake_gen_update_ratio = 1, ema_weight = 0, device = dev,
               num_frame_per_block = 3, num_training_frames = 3, image_or_video_shape = {1, 3, 16, 2, 4},
               denoising_step_list = {1000, 750, 500, 250}, warp_denoising_step = true, ts_schedule = false,
               guidance_scale = 3.0, max_grad_norm_generator = 0.05} -- small enough that clipping happens
  for k, v in pairs(extra or {}) do cfg[k] = v end
  return sfwb.train.dmd(cfg, p)
end

local function full_state(tr) return U.full_state(tr, {"generator", "critic", "teacher"}) end

local max_diff = U.max_diff

-- bytes the allocator holds (live tensors) on this rank's device
local function allocated()
  collectgarbage(); collectgarbage()
  return dev == "cpu" and sfwb.cpu_memory().allocated or sfwb.cuda.memory(dev).allocated
end

local STEPS = tonumber(os.getenv("SFWB_FSDP_STEPS") or "2") -- emu runs take 1 (the emulator is slow)
local base = allocated()
local rep = trainer()
for _ = 1, STEPS do rep:step() end
local want = full_state(rep)
local rep_bytes, rep_alloc = scale.state_bytes(rep), allocated() - base
rep = nil

base = allocated()
local shd = trainer({sharding_strategy = "full"})
T.case("sharded parameters between steps", function()
  T.eq(shd.sharding_strategy, "full")
  local w = shd.generator:parameters()["blocks.0.ffn.0.weight"]
  T.eq(dist.bound(w), false, "full parameters released")
end)
local infos = {}
for i = 1, STEPS do infos[i] = shd:step() end
local shd_alloc = allocated() - base

T.case(("%d ranks on %s: the same weights as the replicated run"):format(world, dev), function()
  local got = full_state(shd)
  local d, n = max_diff(want, got)
  T.check(n > 20, "compared every parameter")
  T.check(d <= 1e-5, ("max |sharded - replicated| = %g"):format(d))
  T.check(infos[1].generator_grad_norm > 0.05, "the generator's gradient was clipped")
  T.eq(#infos, STEPS)
end)

T.case("per-rank memory after a step", function()
  local b = scale.state_bytes(shd)
  local ratio, aratio = b / rep_bytes, shd_alloc / rep_alloc
  local limit = world == 2 and 0.6 or world == 4 and 0.35 or 1.2 / world
  if rank == 0 then
    print(("%d ranks on %s: parameters+gradients+optimizer bytes per rank: replicated %d, sharded %d (%.3fx); "
      .. "allocator bytes held after the steps: replicated %d, sharded %d (%.3fx)")
      :format(world, dev, rep_bytes, b, ratio, rep_alloc, shd_alloc, aratio))
  end
  T.check(ratio <= limit, ("state: %.3fx of the replica's, limit %.2fx"):format(ratio, limit))
  T.check(aratio <= limit, ("allocator: %.3fx of the replica's, limit %.2fx"):format(aratio, limit))
end)

T.case("full-state-dict checkpoint by rank 0, resumable", function()
  local path = ("%s/sfwb_fsdp_%d_%s"):format(dir, world, dev:gsub(":", ""))
  if rank == 0 then pcall(sfwb.fs.rmtree, path) end
  dist.barrier()
  local written = shd:save(path) -- collective: every rank gathers, rank 0 writes
  dist.barrier()
  local ck = sfwb.load(path .. "/model.pt")
  local d = 0
  for k, v in pairs(want) do
    local m, name = k:match("^(%a+)%.(.*)$")
    if m ~= "teacher" then
      local t = ck[m .. ".model." .. name]
      T.check(t ~= nil, "checkpoint has " .. m .. ".model." .. name)
      d = math.max(d, (t:float() - v):abs():max():item())
    end
  end
  T.check(d <= 1e-5, ("checkpoint vs replicated run: %g"):format(d))
  -- resume: a sharded trainer takes the full files (any world size wrote them: weights, optimizer
  -- moments, step, RNG, data position) and reshards them; one more step then equals one more step of
  -- the run that never stopped
  local again = trainer({sharding_strategy = "full"})
  again:resume(path)
  T.eq(again.step_count, STEPS)
  local got = full_state(again)
  local worst = 0
  for k, v in pairs(got) do
    if not k:match("^teacher") then worst = math.max(worst, (v - want[k]):abs():max():item()) end
  end
  T.check(worst <= 1e-5, ("resumed weights: %g"):format(worst))
  local rng_seed, rng_off = sfwb.rng_state()
  shd:step()
  local cont = full_state(shd)
  sfwb.set_rng_state(rng_seed, rng_off)
  again:resume(path) -- the RNG and data position of the checkpoint again
  again:step()
  local d2 = max_diff(cont, full_state(again))
  T.check(d2 <= 1e-5, ("resumed + 1 step vs 3 steps: %g"):format(d2))
  dist.barrier()
  if rank == 0 then sfwb.fs.rmtree(path) end
  T.check(written ~= nil)
end)

T.done()
