-- fsdp_resize.lua — a sharded run's checkpoint resumed at another world size (tests/cmake/dist.cmake):
--   mpirun -np 2 build/sfwb tests/lua/dist/fsdp_resize.lua write <dir>   sharded training, 2 ranks: one
--       step, then the full-state-dict checkpoint (rank 0 writes the original's files + training state)
--   mpirun -np 4 build/sfwb tests/lua/dist/fsdp_resize.lua read <dir>    4 ranks: a sharded trainer resumes
--       it (weights = the file's, optimizer moments and step resharded 4 ways), and its next step equals
--       the next step of a replicated 4-rank trainer resumed from the same files
local T = require "sfwb.testing"
local U = dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/fsdp_util.lua")
local dist = sfwb.dist
local rank, world = dist.init()
local mode, dir = arg[1], arg[2]
assert((mode == "write" or mode == "read") and dir, "usage: fsdp_resize.lua write|read <dir>")

local TINY = {dim = 32, ffn_dim = 48, num_heads = 2, num_layers = 2, in_dim = 16, out_dim = 16,
              text_dim = 8, text_len = 4, freq_dim = 16}

local function trainer(extra)
  sfwb.manual_seed(100)
  local p = {generator = sfwb.wan.new(TINY, {causal = true, num_frame_per_block = 3}),
             real_score = sfwb.wan.new(TINY, {causal = false}),
             fake_score = sfwb.wan.new(TINY, {causal = false}),
             text_encoder = function(prompts) return sfwb.ones({#prompts, 4, 8}) end,
             dataset = {"a", "b", "c", "d", "e", "f", "g", "h"}}
  local cfg = {seed = 7, lr = 1e-3, lr_critic = 1e-3, dfake_gen_update_ratio = 1, ema_weight = 0,
               num_frame_per_block = 3, num_training_frames = 3, image_or_video_shape = {1, 3, 16, 2, 4},
               denoising_step_list = {1000, 750, 500, 250}, warp_denoising_step = true, ts_schedule = false,
               guidance_scale = 3.0, generator_fsdp_wrap_strategy = "transformer",
               fake_score_fsdp_wrap_strategy = "transformer", real_score_fsdp_wrap_strategy = "transformer"}
  for k, v in pairs(extra or {}) do cfg[k] = v end
  return sfwb.train.dmd(cfg, p)
end

local full_state = U.full_state

local max_diff = U.max_diff

if mode == "write" then
  T.case(("%d ranks: a sharded step, then the checkpoint"):format(world), function()
    local tr = trainer({sharding_strategy = "full"})
    tr:step()
    if rank == 0 then pcall(sfwb.fs.rmtree, dir) end
    dist.barrier()
    tr:save(dir)
    dist.barrier()
    local f = io.open(dir .. "/model.pt", "rb")
    T.check(f ~= nil, "model.pt written")
    if f then f:close() end
  end)
  T.done()
end

T.case(("%d ranks: resume a checkpoint another world size wrote"):format(world), function()
  local shd = trainer({sharding_strategy = "full"})
  shd:resume(dir)
  T.eq(shd.step_count, 1)
  local ck = sfwb.load(dir .. "/model.pt")
  local got, worst = full_state(shd), 0
  for k, v in pairs(got) do
    local m, name = k:match("^(%a+)%.(.*)$")
    worst = math.max(worst, (ck[m .. ".model." .. name]:float() - v):abs():max():item())
  end
  T.check(worst == 0, ("resumed weights vs the file: %g"):format(worst))
  local rep = trainer()
  rep:resume(dir)
  rep:step()
  local want = full_state(rep)
  shd:resume(dir) -- the checkpoint's RNG and data position again
  shd:step()
  local d, n = max_diff(want, full_state(shd))
  T.check(n > 20, "compared every parameter")
  T.check(d <= 1e-5, ("sharded vs replicated, one step after resuming: %g"):format(d))
  if rank == 0 then print(("FSDP-RESIZE 2 -> %d ranks: max |sharded - replicated| after the resumed step %g"):format(world, d)) end
end)

T.case(("%d ranks: the one-network trainers refuse sharding by name"):format(world), function()
  T.raises(function() sfwb.train.diffusion({sharding_strategy = "full"}) end, "train.diffusion: sharding_strategy full")
  T.raises(function() sfwb.train.ode({sharding_strategy = "hybrid", denoising_step_list = {1000}}) end,
           "train.ode: sharding_strategy hybrid")
end)

dist.barrier()
if rank == 0 then pcall(sfwb.fs.rmtree, dir) end
T.done()
