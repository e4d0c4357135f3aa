-- train_dmd_mpi.lua — run by `mpirun -np 2 build/sfwb tests/lua/dist/train_dmd_mpi.lua`
-- (tests/cmake/train.cmake): two data-parallel DMD ranks draw different noise, average gradients and
-- so keep identical weights after every update.
local T = require "sfwb.testing"
local dist = sfwb.dist
local rank, world = dist.init()

local TINY = {dim = 32, ffn_dim = 48, num_heads = 2, num_layers = 1, in_dim = 16, out_dim = 16,
              text_dim = 8, text_len = 4, freq_dim = 16}

-- the largest difference between the ranks' copies of any parameter (exact: max has no rounding,
-- unlike a checksum summed in pairs() order, which differs between processes)
local function rank_spread(m)
  local worst = 0
  local params, names = m:parameters(), {}
  for k in pairs(params) do names[#names + 1] = k end
  table.sort(names) -- collectives in the same order on every rank (pairs order differs per process)
  for _, k in ipairs(names) do
    local v = params[k]
    local g = dist.all_gather(v:detach():float():reshape({1, v:numel()}))
    worst = math.max(worst, (g[1] - g[2]):abs():max():item())
  end
  return worst
end

T.case("two ranks keep identical weights while drawing different noise", function()
  T.eq(world, 2)
  -- deliberately different initial weights per rank: the trainer must broadcast rank 0's
  sfwb.manual_seed(100 + rank)
  local p = {generator = sfwb.wan.new(TINY, {causal = true, num_frame_per_block = 3}),
             real_score = sfwb.wan.new(TINY, {causal = false}), fake_score = sfwb.wan.new(TINY, {causal = false}),
             text_encoder = function(prompts) return sfwb.ones({#prompts, 4, 8}) end,
             dataset = {"a", "b", "c", "d"}}
  local tr = sfwb.train.dmd({seed = 7, lr = 1e-3, lr_critic = 1e-3, dfake_gen_update_ratio = 1, ema_weight = 0,
    num_frame_per_block = 3, num_training_frames = 3, image_or_video_shape = {1, 3, 16, 2, 4},
    denoising_step_list = {1000, 750, 500, 250}, warp_denoising_step = true, ts_schedule = false, guidance_scale = 3.0}, p)
  T.eq(rank_spread(tr.generator), 0, "initial generator weights broadcast from rank 0")
  local before = tr.generator:parameters()["head.head.weight"]:clone()
  local info = tr:step()
  local losses = dist.all_gather(sfwb.tensor({info.critic_loss}, {dtype = "f64"})):totable()
  T.check(losses[1] ~= losses[2], "ranks see different data/noise")
  T.check((tr.generator:parameters()["head.head.weight"] - before):abs():max():item() > 0, "the generator moved")
  T.eq(rank_spread(tr.generator), 0, "generator identical on both ranks")
  T.eq(rank_spread(tr.critic), 0, "critic identical on both ranks")
end)

T.done()
