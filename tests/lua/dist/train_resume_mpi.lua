-- train_resume_mpi.lua — `mpirun -np 2 build/sfwb tests/lua/dist/train_resume_mpi.lua` (tests/cmake/train.cmake):
-- exact resume under several ranks. Each rank draws its own noise (seed + rank) and its own data shard, so
-- the training state must hold every rank's generator state and data position: 2 steps + save + resume
-- + 2 steps equals 4 straight steps bit for bit (weights, optimizer moments, losses) on every rank; at another
-- world size each rank gets what docs/training.md says (its own stream, or a fresh one for a new rank).
local T = require "sfwb.testing"
local dist = sfwb.dist
local rank, world = dist.init()

local TINY = {dim = 32, ffn_dim = 48, num_heads = 2, num_layers = 1, in_dim = 16, out_dim = 16,
              text_dim = 8, text_len = 4, freq_dim = 16}

-- a text encoder that draws nothing from the RNG: an embedding from the prompt's bytes
local function te(prompts)
  local rows = {}
  for i, p in ipairs(prompts) do
    local v = {}
    for j = 1, 32 do v[j] = ((p:byte((j - 1) % #p + 1) or 0) % 17) / 17 - 0.5 end
    rows[i] = sfwb.tensor(v):view({1, 4, 8})
  end
  return sfwb.cat(rows, 1)
end

local function trainer(seed, init)
  sfwb.manual_seed(100)
  local teacher = sfwb.wan.new(TINY, {causal = false})
  sfwb.manual_seed(init)
  local p = {generator = sfwb.wan.new(TINY, {causal = true, num_frame_per_block = 3}), real_score = teacher,
             fake_score = sfwb.wan.new(TINY, {causal = false}), text_encoder = te,
             dataset = {"a red fox", "waves at night", "a city", "rain", "snow", "a cat", "fog", "sun"}}
  return sfwb.train.dmd({seed = seed, lr = 1e-3, lr_critic = 1e-3, dfake_gen_update_ratio = 2, ema_weight = 0.9,
    ema_start_step = 1, num_frame_per_block = 3, num_training_frames = 3, image_or_video_shape = {1, 3, 16, 2, 4},
    denoising_step_list = {1000, 750, 500, 250}, warp_denoising_step = true, ts_schedule = false,
    guidance_scale = 3.0, negative_prompt = "blurry"}, p)
end

local function sorted(t)
  local r = {}
  for k in pairs(t) do r[#r + 1] = k end
  table.sort(r)
  return r
end

-- the largest |a - b| over every tensor of two name -> tensor tables (exact: 0 means bit for bit)
local function max_diff(a, b, what)
  local worst, n = 0, 0
  for _, k in ipairs(sorted(a)) do
    T.check(b[k] ~= nil, what .. ": " .. k .. " present")
    worst = math.max(worst, (a[k]:float() - b[k]:float()):abs():max():item())
    n = n + 1
  end
  T.check(n > 0, what .. ": some tensors")
  return worst
end

local function moments(tr)
  local out = {}
  for _, name in ipairs({"generator", "critic"}) do
    local sd = tr.optimizers[name]:state_dict()
    for i, e in pairs(sd.state) do
      for k, v in pairs(e) do if type(v) == "userdata" then out[name .. "." .. i .. "." .. k] = v end end
    end
  end
  return out
end

T.case(("%d ranks: 2 steps + save + resume + 2 steps == 4 steps, bit for bit on rank %d"):format(world, rank), function()
  T.eq(world, 2)
  local root = os.getenv("SFWB_RESUME_TMP") or "/tmp"
  -- one folder name for every rank (rank 0's pid): save is collective, rank 0 writes
  local pid = sfwb.tensor({sfwb.fs.pid()}, {dtype = "i64"})
  dist.broadcast(pid, 0)
  local dir = string.format("%s/resume_mpi_%d/ck", root, pid:totable()[1])

  local straight = trainer(11, 1)
  for _ = 1, 4 do straight:step() end

  local first = trainer(11, 1)
  for _ = 1, 2 do first:step() end
  first:save(dir)
  dist.barrier()
  -- another seed and init: everything must come from the checkpoint, on every rank
  local second = trainer(999, 5)
  sfwb.manual_seed(4242 + rank)
  second:resume(dir)
  T.eq(second.step_count, 2, "step from the checkpoint")
  for _ = 1, 2 do second:step() end

  T.eq(max_diff(straight.generator:parameters(), second.generator:parameters(), "generator"), 0, "generator")
  T.eq(max_diff(straight.critic:parameters(), second.critic:parameters(), "critic"), 0, "critic")
  T.eq(max_diff(straight.ema:state_dict(), second.ema:state_dict(), "ema"), 0, "ema")
  T.eq(max_diff(moments(straight), moments(second), "optimizer"), 0, "optimizer moments")
  for i = 3, 4 do
    T.eq(second.log[i - 2].critic_loss, straight.log[i].critic_loss, "critic loss at step " .. i)
  end
  T.eq(second.log[1].generator_loss, straight.log[3].generator_loss, "generator loss at step 3")
  -- the ranks really differ (own noise and data): a resume that gave rank 1 rank 0's state would show
  local losses = dist.all_gather(sfwb.tensor({straight.log[4].critic_loss}, {dtype = "f64"})):totable()
  T.check(losses[1] ~= losses[2], "the ranks' losses differ")
  local st = sfwb.load(dir .. "/training_state.pt")
  T.eq(st["ranks.world"], 2, "the state records the world size")
  T.eq(#st["ranks.seed"]:totable(), 2, "one RNG state per rank")

  -- at another world size (faked per process: rank 0 as a world of 1, rank 1 as rank 2 of 3): a rank the
  -- checkpoint had continues its own RNG stream, a new rank starts a fresh one (rank 0's seed + its rank,
  -- offset 0); both keep the saved count of batches drawn
  local seeds, offsets, drawn = st["ranks.seed"]:totable(), st["ranks.offset"]:totable(), st["ranks.drawn"]:totable()
  local other = trainer(999, 5)
  other.dist, other.world, other.rank = nil, rank == 0 and 1 or 3, rank == 0 and 0 or 2
  other:resume(dir)
  local s, off = sfwb.rng_state()
  if rank == 0 then
    T.eq(s, math.tointeger(seeds[1]), "world 1: rank 0's stream")
    T.eq(off, math.tointeger(offsets[1]), "world 1: rank 0's offset")
  else
    T.eq(s, math.tointeger(seeds[1]) + 2, "a new rank: a fresh stream")
    T.eq(off, 0, "a new rank: from its start")
    for i = 1, 2 do T.check(s ~= math.tointeger(seeds[i]), "a seed no saved rank used") end
  end
  T.eq(other.next_batch.drawn, math.tointeger(drawn[1]), "the saved count of batches")
  dist.barrier()
  if rank == 0 then sfwb.fs.rmtree(root .. "/resume_mpi_" .. pid:totable()[1]) end
end)

T.done()
