-- test_train_dmd_rng.lua — the DMD trainer's draws: every random draw goes through tr.rng in the
-- original's order and shapes (model/base.py _run_generator, pipeline/self_forcing_training.py,
-- model/dmd.py), a recorded draw sequence replayed through tr.rng reproduces the step bit for bit, and
-- the public calls generator_loss / critic_loss / run_generator take the API's fields.
local T = require "sfwb.testing"

local TINY = {dim = 32, ffn_dim = 48, num_heads = 2, num_layers = 1, in_dim = 16, out_dim = 16,
              text_dim = 8, text_len = 4, freq_dim = 16}

local function parts(seed)
  sfwb.manual_seed(seed)
  return {generator = sfwb.wan.new(TINY, {causal = true, num_frame_per_block = 3}),
          real_score = sfwb.wan.new(TINY, {causal = false}), fake_score = sfwb.wan.new(TINY, {causal = false}),
          text_encoder = function(prompts) return sfwb.ones({#prompts, 4, 8}) end, dataset = {"a", "b"}}
end

local function config(extra)
  local cfg = {seed = 123, lr = 1e-3, lr_critic = 1e-3, denoising_step_list = {1000, 750, 500, 250},
               warp_denoising_step = true, ts_schedule = false, num_train_timestep = 1000, timestep_shift = 5.0,
               guidance_scale = 3.0, dfake_gen_update_ratio = 1, num_frame_per_block = 3, num_training_frames = 6,
               image_or_video_shape = {1, 6, 16, 2, 4}, model_kwargs = {timestep_shift = 5.0}, ema_weight = 0}
  for k, v in pairs(extra or {}) do cfg[k] = v end
  return cfg
end

-- an rng that records every draw (kind, args, result) while drawing from `inner`
local function recorder(inner, log)
  return {
    randn = function(shape, opts)
      local t = inner.randn(shape, opts)
      log[#log + 1] = {kind = "randn", shape = table.concat(shape, ","), value = t:clone()}
      return t
    end,
    randint = function(lo, hi, shape)
      local t = inner.randint(lo, hi, shape)
      log[#log + 1] = {kind = "randint", lo = lo, hi = hi, shape = table.concat(shape, ","), value = t:clone()}
      return t
    end,
  }
end

-- an rng that hands back a recorded sequence, checking each call's kind and shape
local function replayer(log)
  local i = 0
  local function next_of(kind, shape)
    i = i + 1
    local r = log[i]
    assert(r, "replay: more draws than recorded")
    assert(r.kind == kind and r.shape == table.concat(shape, ","),
      string.format("replay draw %d: %s {%s} requested, %s {%s} recorded", i, kind, table.concat(shape, ","), r.kind, r.shape))
    return r.value:clone()
  end
  return {randn = function(shape) return next_of("randn", shape) end,
          randint = function(_, _, shape) return next_of("randint", shape) end,
          count = function() return i end}
end

T.case("generator_loss draws in the original's order and shapes", function()
  local tr = sfwb.train.dmd(config(), parts(1))
  local log = {}
  tr.rng = recorder(tr.rng, log)
  local B = 1
  local cond, uncond = {prompt_embeds = sfwb.ones({B, 4, 8})}, {prompt_embeds = sfwb.zeros({B, 4, 8})}
  local loss, info = tr:generator_loss{shape = {B, 6, 16, 2, 4}, cond = cond, uncond = uncond}
  T.check(loss:item() == loss:item(), "finite loss")
  T.eq(table.concat(info.timestep:shape(), ","), "1,6", "log.timestep [B, F]")
  T.check(type(info.dmdtrain_gradient_norm) == "number", "log.dmdtrain_gradient_norm")
  -- block count, rollout noise, exit steps of both blocks
  T.eq(log[1].kind .. log[1].shape, "randint1", "number of generated blocks {1}")
  T.eq(log[1].lo, 2); T.eq(log[1].hi, 3)
  T.eq(log[2].kind .. log[2].shape, "randn1,6,16,2,4", "rollout noise [B, F, C, H, W]")
  T.eq(log[3].kind .. log[3].shape, "randint2", "exit steps, one per block")
  T.eq(log[3].lo, 0); T.eq(log[3].hi, 4)
  local exit = log[3].value:totable()[1] -- same_step_across_blocks: block 0's draw for all blocks
  local per_block = exit + 1             -- `exit` re-noise draws + the context pass's draw
  local k = 3
  for _ = 1, 2 do
    for _ = 1, per_block do
      k = k + 1
      T.eq(log[k].kind .. log[k].shape, "randn3,16,2,4", "per-step and context noise [B*nf, C, H, W]")
    end
  end
  T.eq(log[k + 1].kind .. log[k + 1].shape, "randint1,1", "score timestep [B, 1]")
  T.eq(log[k + 1].lo, 0); T.eq(log[k + 1].hi, 1000)
  T.eq(log[k + 2].kind .. log[k + 2].shape, "randn1,6,16,2,4", "DMD noise")
  T.eq(#log, k + 2, "no other draw")
end)

T.case("critic_loss and run_generator: the API's fields, the same draw order", function()
  local tr = sfwb.train.dmd(config({ts_schedule = true}), parts(2))
  local log = {}
  tr.rng = recorder(tr.rng, log)
  local cond = {prompt_embeds = sfwb.ones({1, 4, 8})}
  local x, t_from, t_to, mask = tr:run_generator{shape = {1, 6, 16, 2, 4}, cond = cond}
  T.eq(table.concat(x:shape(), ","), "1,6,16,2,4")
  T.check(x.requires_grad, "the rollout carries the exit steps' graph")
  T.check(t_from > t_to, "exit interval")
  T.eq(mask, nil, "a full-length rollout masks nothing")
  local n0 = #log
  local closs, info = tr:critic_loss{shape = {1, 6, 16, 2, 4}, cond = cond, uncond = cond}
  T.check(closs.requires_grad and closs:item() >= 0, "critic loss with graph")
  T.eq(table.concat(info.critic_timestep:shape(), ","), "1,6")
  T.eq(log[n0 + 1].kind .. log[n0 + 1].shape, "randint1")
  local last = log[#log]
  T.eq(last.kind .. last.shape, "randn1,6,16,2,4", "critic noise last")
  T.eq(log[#log - 1].kind .. log[#log - 1].shape, "randint1,1", "critic timestep before it")
  T.check(log[#log - 1].lo > 0, "ts_schedule: the lower bound is the exit step's t_to")
  T.raises(function() tr:generator_loss{shape = {1, 6, 16, 2, 4}, cond = cond} end, "uncond")
  T.raises(function() tr:run_generator{shape = {1, 6, 16, 2, 4}} end, "cond")
end)

T.case("a recorded draw sequence replayed through tr.rng reproduces the step bit for bit", function()
  local a = sfwb.train.dmd(config({seed = 5}), parts(3))
  local log = {}
  a.rng = recorder(a.rng, log)
  local ia = a:step()
  local b = sfwb.train.dmd(config({seed = 999}), parts(3)) -- another seed: every draw must come from the replay
  local rp = replayer(log)
  b.rng = rp
  local ib = b:step()
  T.eq(rp.count(), #log, "every recorded draw used")
  T.eq(ib.generator_loss, ia.generator_loss, "generator loss")
  T.eq(ib.critic_loss, ia.critic_loss, "critic loss")
  local pa, pb = a.generator:parameters(), b.generator:parameters()
  for k, v in pairs(pa) do T.eq((pb[k] - v):abs():max():item(), 0, "generator " .. k) end
  pa, pb = a.critic:parameters(), b.critic:parameters()
  for k, v in pairs(pa) do T.eq((pb[k] - v):abs():max():item(), 0, "critic " .. k) end
end)

T.case("defaults read from the original", function()
  local cfg = config()
  cfg.timestep_shift, cfg.model_kwargs = nil, nil
  local tr = sfwb.train.dmd(cfg, parts(4))
  T.eq(tr.timestep_shift, 1.0, "dmd.py timestep_shift default 1.0")
  T.eq(tr.G.shift, 8.0, "WanDiffusionWrapper timestep_shift default 8.0")
  T.eq(tr.fake_guidance_scale, 0.0, "no real_guidance_scale: fake guidance 0 (fake_guidance_scale ignored)")
  cfg.fake_guidance_scale = 2.0
  T.eq(sfwb.train.dmd(cfg, parts(4)).fake_guidance_scale, 0.0, "still ignored")
  cfg.real_guidance_scale = 4.0
  local tr2 = sfwb.train.dmd(cfg, parts(4))
  T.eq(tr2.real_guidance_scale, 4.0); T.eq(tr2.fake_guidance_scale, 2.0)
  cfg.fake_guidance_scale = nil
  T.raises(function() sfwb.train.dmd(cfg, parts(4)) end, "fake_guidance_scale")
  cfg.real_guidance_scale, cfg.guidance_scale = nil, nil
  T.raises(function() sfwb.train.dmd(cfg, parts(4)) end, "guidance_scale")
  -- score timesteps without a shift: the integer draw, clamped to [20, 980]
  local t = tr:score_timesteps(2, 3, nil, nil, {5, 500})
  T.eq(t:totable()[1][1], 20); T.eq(t:totable()[2][3], 500)
end)

T.done()
