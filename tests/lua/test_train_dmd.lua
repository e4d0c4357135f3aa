-- test_train_dmd.lua — the DMD trainer on tiny random Wan models: update schedule (generator every
-- dfake_gen_update_ratio steps, critic every step), parameters move, the teacher stays frozen, EMA
-- starts at ema_start_step, checkpoints in Self-Forcing's layout load in torch and resume.
local T = require "sfwb.testing"

local TINY = {dim = 32, ffn_dim = 48, num_heads = 2, num_layers = 1, in_dim = 16, out_dim = 16,
              text_dim = 8, text_len = 4, freq_dim = 16}

local function parts(seed)
  sfwb.manual_seed(seed)
  local g = sfwb.wan.new(TINY, {causal = true, num_frame_per_block = 3})
  local r = sfwb.wan.new(TINY, {causal = false})
  local f = sfwb.wan.new(TINY, {causal = false})
  -- a deterministic "text encoder": one embedding per distinct prompt
  local cache = {}
  local function te(prompts)
    local rows = {}
    for i, p in ipairs(prompts) do
      if not cache[p] then cache[p] = sfwb.randn({1, 4, 8}) end
      rows[i] = cache[p]
    end
    return sfwb.cat(rows, 1)
  end
  return {generator = g, real_score = r, fake_score = f, text_encoder = te,
          dataset = {"a red fox in snow", "waves at night", "a city timelapse"}}
end

local function config(extra)
  local cfg = {
    seed = 123, lr = 1e-3, lr_critic = 1e-3, beta1 = 0.0, beta2 = 0.999, weight_decay = 0.01,
    denoising_step_list = {1000, 750, 500, 250}, warp_denoising_step = true, ts_schedule = false,
    num_train_timestep = 1000, timestep_shift = 5.0, guidance_scale = 3.0, batch_size = 1,
    ema_weight = 0.99, ema_start_step = 2, dfake_gen_update_ratio = 2, num_frame_per_block = 3,
    num_training_frames = 6, image_or_video_shape = {1, 6, 16, 2, 4}, model_kwargs = {timestep_shift = 5.0},
    negative_prompt = "blurry", context_noise = 0,
  }
  for k, v in pairs(extra or {}) do cfg[k] = v end
  return cfg
end

local function snapshot(m)
  local s = {}
  for k, v in pairs(m:parameters()) do s[k] = v:clone() end
  return s
end

local function max_change(m, snap)
  local d = 0
  for k, v in pairs(m:parameters()) do d = math.max(d, (v - snap[k]):abs():max():item()) end
  return d
end

T.case("update schedule: generator every ratio steps, critic every step, teacher frozen", function()
  local p = parts(1)
  local tr = sfwb.train.dmd(config(), p)
  T.eq(tr.step_count, 0)
  local g0, c0, r0 = snapshot(tr.generator), snapshot(tr.critic), snapshot(p.real_score)
  local info = tr:step()                       -- step 0: generator + critic
  T.check(info.generator_loss and info.generator_loss == info.generator_loss, "generator loss is a number")
  T.check(info.critic_loss == info.critic_loss and info.critic_loss >= 0, "critic loss is finite")
  T.check(max_change(tr.generator, g0) > 0, "generator moved at step 0")
  T.check(max_change(tr.critic, c0) > 0, "critic moved at step 0")
  T.eq(max_change(p.real_score, r0), 0, "teacher frozen")
  local g1 = snapshot(tr.generator)
  info = tr:step()                             -- step 1: critic only
  T.check(info.generator_loss == nil, "no generator update at step 1")
  T.eq(max_change(tr.generator, g1), 0, "generator unchanged at step 1")
  T.eq(tr.step_count, 2)
  T.check(tr.ema ~= nil, "EMA created when step_count reaches ema_start_step")
end)

T.case("checkpoint: Self-Forcing layout, torch-loadable, resume restores weights", function()
  local p = parts(2)
  local tr = sfwb.train.dmd(config({ema_start_step = 1}), p)
  tr:train{steps = 3, quiet = true}
  local dir = T.tmpdir("dmd-ckpt") .. "/checkpoint_model_000003"
  local path = tr:save(dir)
  local ck = sfwb.load(path)
  T.check(ck["generator.model.patch_embedding.weight"] ~= nil, "generator.model.* keys")
  T.check(ck["critic.model.head.head.weight"] ~= nil, "critic.model.* keys")
  T.check(ck["generator_ema.model.patch_embedding.weight"] ~= nil, "generator_ema present after ema_start_step")
  local ok = os.execute(string.format([[%s -c "
import torch
ck = torch.load('%s', map_location='cpu')
assert set(ck) == {'generator', 'critic', 'generator_ema'}, list(ck)
assert all(k.startswith('model.') for k in ck['generator'])
print('torch reads', len(ck['generator']), 'generator tensors')
"]], T.python, path))
  T.check(ok, "torch.load reads the checkpoint")
  -- a fresh trainer resumed from the folder has the saved weights and step
  local tr2 = sfwb.train.dmd(config({ema_start_step = 1}), parts(3))
  tr2:resume(dir)
  T.eq(tr2.step_count, 3)
  local saved = tr.generator:parameters()
  for k, v in pairs(tr2.generator:parameters()) do T.eq((v - saved[k]):abs():max():item(), 0, k) end
  T.raises(function() tr2:resume(T.tmpdir("empty")) end, "model.pt")
end)

T.case("rollout: one forward with grad per block (the exit step), context re-run without", function()
  local Wrapper = require "sfwb.train.wrapper"
  local Rollout = require "sfwb.train.rollout"
  sfwb.manual_seed(5)
  local g = sfwb.wan.new(TINY, {causal = true, num_frame_per_block = 3})
  local calls = {}
  -- a proxy that records (start frame, timestep, grad mode) of every generator call
  local proxy = setmetatable({config = g.config}, {__index = function(_, k)
    if k == "forward" then
      return function(_, x, t, ctx, extra)
        calls[#calls + 1] = {start = extra.current_start_frame, t = t:select(1, 1):select(1, 1):item(),
                             grad = sfwb.is_grad_enabled()}
        return g:forward(x, t, ctx, extra)
      end
    end
    local v = g[k]
    if type(v) == "function" then return function(_, ...) return v(g, ...) end end
    return v
  end})
  local G = Wrapper.new(proxy, 5.0, {causal = true})
  local steps = G.scheduler:warp({1000, 750, 500, 250}):totable()
  T.near(steps[2], 937.5, 1e-4, "warped step 2")
  for _, exit_last in ipairs({true, false}) do
    calls = {}
    local o = {generator = G, steps = steps, nfpb = 3, independent_first_frame = false, same_step_across_blocks = true,
               last_step_only = exit_last, context_noise = 0, grad_window = 21}
    local noise = sfwb.randn({1, 6, 16, 2, 4})
    local out = Rollout.inference_with_trajectory(o, noise, {ctx = sfwb.randn({1, 4, 8})})
    T.eq(table.concat(out:shape(), ","), "1,6,16,2,4")
    local per_block = #calls // 2
    T.eq(#calls % 2, 0, "both blocks make the same number of calls")
    if exit_last then T.eq(per_block, 5, "4 denoising steps + 1 context re-run per block") end
    local grads = 0
    for i, c in ipairs(calls) do
      if c.grad then grads = grads + 1 end
      local k = (i - 1) % per_block
      T.eq(c.start, i <= per_block and 0 or 3, "absolute start frame")
      if k == per_block - 1 then
        T.check(not c.grad, "context re-run has no grad")
        T.near(c.t, 0, 0, "context re-run at context_noise = 0")
      else
        T.near(c.t, steps[k + 1], 1e-4, "step timestep")
        T.eq(c.grad, k == per_block - 2, "only the exit step carries grad")
      end
    end
    T.eq(grads, 2, "one grad forward per block")
  end
end)

T.case("DMD and critic losses match the PyTorch transcription (fixed draws)", function()
  local dir = T.tmpdir("dmd-ref")
  assert(os.execute(string.format("%s tests/ref/dmd_ref.py '%s'", T.python, dir)), "tests/ref/dmd_ref.py failed")
  local man = dofile(dir .. "/manifest.lua")
  local d = sfwb.load(dir .. "/data.safetensors")
  sfwb.manual_seed(9)
  local p = {generator = sfwb.wan.new(TINY, {causal = true, num_frame_per_block = 3}),
             real_score = sfwb.wan.load(dir .. "/real"), fake_score = sfwb.wan.load(dir .. "/fake"),
             text_encoder = function() error("not used") end, dataset = {"x"}}
  local tr = sfwb.train.dmd(config(), p)
  local B, F = 2, 3
  local t = tr:score_timesteps(B, F, nil, nil, man.t_int)
  T.close(t, d.t, 1e-6, "shifted, clamped score timesteps")
  -- generator: the gradient reaches x only, and equals the reference's
  local x = d.x:clone():requires_grad_(true)
  local loss, gnorm = tr:dmd_loss_from(x, t, d.noise, d.ctx, {negative = d.neg})
  T.near(loss:item(), man.dmd_loss, 1e-5, "DMD loss")
  T.near(gnorm, man.dmd_gradient_norm, 1e-5, "mean |g|")
  loss:backward()
  T.close(x.grad, d.dmd_grad_x, 1e-5, "dLoss/dx")
  -- critic: flow loss with the generator-grid conversion, parameter gradients as torch autograd
  tr.opt_c:zero_grad()
  local closs = tr:critic_loss_from(d.x, t, d.noise, d.ctx)
  T.near(closs:item(), man.critic_loss, 1e-5, "critic loss")
  closs:backward()
  local P = tr.critic:parameters()
  T.close(P["head.head.weight"].grad, d.critic_grad_head, 1e-4, "critic grad head")
  T.close(P["blocks.0.ffn.0.weight"].grad, d.critic_grad_ffn, 1e-4, "critic grad ffn")
  T.close(P["patch_embedding.weight"].grad, d.critic_grad_patch, 1e-4, "critic grad patch embedding")
end)

T.case("a training step on emu:0 (or $SFWB_TEST_DEVICE) matches the cpu step", function()
  local dev = T.test_device()
  if not dev then print("  (skipped: no emu device)") return end
  local function run(dev)
    sfwb.manual_seed(1)
    local p = {generator = sfwb.wan.new(TINY, {causal = true, num_frame_per_block = 3, device = dev}),
               real_score = sfwb.wan.new(TINY, {causal = false, device = dev}),
               fake_score = sfwb.wan.new(TINY, {causal = false, device = dev}),
               text_encoder = function(prompts) return sfwb.ones({#prompts, 4, 8}, {device = dev}) end,
               dataset = {"a", "b"}}
    local tr = sfwb.train.dmd(config({device = dev, dfake_gen_update_ratio = 1, num_training_frames = 3,
                                      image_or_video_shape = {1, 3, 16, 2, 4}}), p)
    local info = tr:step()
    return info, tr.generator:parameters()["head.head.weight"]:cpu()
  end
  local a, wa = run("cpu")
  local b, wb = run(dev)
  T.near(b.generator_loss, a.generator_loss, 1e-5, "generator loss")
  T.near(b.critic_loss, a.critic_loss, 1e-5, "critic loss")
  T.close(wb, wa, 1e-5, "updated generator weights")
end)

T.case("gradient_checkpointing gives the same step", function()
  local function run(ck)
    local p = parts(4)
    local tr = sfwb.train.dmd(config({gradient_checkpointing = ck, dfake_gen_update_ratio = 1}), p)
    local info = tr:step()
    return info, tr.generator:parameters()["blocks.0.ffn.0.weight"]
  end
  local a, wa = run(false)
  local b, wb = run(true)
  T.near(b.generator_loss, a.generator_loss, 1e-6, "generator loss")
  T.close(wb, wa, 1e-6, "updated weights")
end)

T.done()
