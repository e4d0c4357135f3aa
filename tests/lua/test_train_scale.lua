-- test_train_scale.lua — gradient_accumulation_steps (LongLive's whole-cycle accumulation) and the
-- sharding_strategy config checks, in one process (sharded training itself: tests/lua/dist/train_fsdp.lua).
local T = require "sfwb.testing"
local Fsdp = require "sfwb.dist.fsdp"

local TINY = {dim = 32, ffn_dim = 48, num_heads = 2, num_layers = 1, in_dim = 16, out_dim = 16,
              text_dim = 8, text_len = 4, freq_dim = 16}

local function trainer(extra)
  sfwb.manual_seed(5)
  local p = {generator = sfwb.wan.new(TINY, {causal = true, num_frame_per_block = 3}),
             real_score = sfwb.wan.new(TINY, {causal = false}), fake_score = sfwb.wan.new(TINY, {causal = false}),
             text_encoder = function(prompts)
               local e = sfwb.zeros({#prompts, 4, 8})
               for i, s in ipairs(prompts) do e[i] = sfwb.arange(0, 32, 1):view({4, 8}) * (#s / 31) - 0.5 end
               return e
             end,
             dataset = {"a cat", "a dog on a hill"}}
  local cfg = {seed = 3, lr = 1e-3, lr_critic = 1e-3, dfake_gen_update_ratio = 1, ema_weight = 0, guidance_scale = 3.0,
               num_frame_per_block = 3, num_training_frames = 3, image_or_video_shape = {1, 3, 16, 2, 4},
               denoising_step_list = {1000, 750, 500, 250}, warp_denoising_step = true, ts_schedule = false}
  for k, v in pairs(extra or {}) do cfg[k] = v end
  local tr = sfwb.train.dmd(cfg, p)
  -- every micro-batch is the same batch with the same draws: accumulating k of them must give the
  -- gradient of one (the loss is divided by k), so the generator update equals the k = 1 update
  local first = tr.next_batch()
  tr.calls = 0
  tr.next_batch = function() tr.calls = tr.calls + 1; sfwb.manual_seed(77); return first end
  return tr
end

T.case("gradient_accumulation_steps: k identical micro-batches update as one", function()
  local one = trainer()
  local i1 = one:step()
  T.eq(one.calls, 2, "k = 1: a batch for the generator, another for the critic (Self-Forcing)")
  local acc = trainer({gradient_accumulation_steps = 3})
  local i3 = acc:step()
  T.eq(acc.calls, 3, "k = 3: one batch per micro-step, shared by the generator and critic (LongLive)")
  T.eq(acc.gradient_accumulation_steps, 3)
  T.near(i3.generator_loss, i1.generator_loss, 1e-6, "mean generator loss")
  T.near(i3.generator_grad_norm, i1.generator_grad_norm, 1e-5 * i1.generator_grad_norm, "accumulated / k = one gradient")
  local worst = 0
  local pa, pb = one.generator:parameters(), acc.generator:parameters()
  for k, v in pairs(pa) do worst = math.max(worst, (v - pb[k]):abs():max():item()) end
  T.check(worst < 1e-6, ("generator after the update: max diff %g"):format(worst))
  T.check(i3.critic_loss > 0 and i3.critic_grad_norm > 0, "the critic trained")
end)

T.case("config checks", function()
  T.raises(function() trainer({gradient_accumulation_steps = 0}) end, "gradient_accumulation_steps must be an integer >= 1")
  T.raises(function() trainer({gradient_accumulation_steps = 1.5}) end, "gradient_accumulation_steps")
  T.raises(function() trainer({sharding_strategy = "zero3"}) end, "sharding_strategy")
  T.raises(function() Fsdp.strategy({sharding_strategy = "zero3"}, 2) end, "sharding_strategy must be one of full")
  -- one rank: sharding is a no-op, as FSDP on a world of one
  T.eq(Fsdp.strategy({sharding_strategy = "full"}, 1), nil)
  T.eq(Fsdp.strategy({sharding_strategy = "hybrid"}, 2), "hybrid_full")
  T.eq(Fsdp.strategy({sharding_strategy = "no_shard"}, 4), nil)
  local tr = trainer({sharding_strategy = "full"})
  T.eq(tr.shards, nil)
end)

T.case("the one-network trainers refuse sharding and accumulation by name", function()
  local scale = require "sfwb.train.scale"
  T.raises(function() scale.refuse({sharding_strategy = "full"}, "train.diffusion", 2) end,
           "train.diffusion: sharding_strategy full is not implemented")
  T.raises(function() scale.refuse({sharding_strategy = "hybrid"}, "train.ode", 4) end, "train.ode: sharding_strategy hybrid")
  scale.refuse({sharding_strategy = "full"}, "train.ode", 1) -- one rank: FSDP is a no-op, as in torch
  scale.refuse({sharding_strategy = "no_shard"}, "train.ode", 4)
  T.raises(function() sfwb.train.diffusion({gradient_accumulation_steps = 2}) end,
           "train.diffusion: gradient_accumulation_steps 2 is not implemented")
  T.raises(function() sfwb.train.ode({gradient_accumulation_steps = 4, denoising_step_list = {1000}}) end,
           "train.ode: gradient_accumulation_steps 4")
end)

T.done()
