-- test_train_gan.lua — sfwb.train.gan (model/gan.py, trainer/gan.py) against our PyTorch transcription
-- (tests/ref/gan_ref.py) on tiny Wan DiTs: one generator loss and one critic loss end to end (the rollout,
-- the critic timestep, the noises, the discriminator heads, R1/R2), every draw replayed through tr.rng; the
-- losses (<= 1e-5), every generator parameter gradient of the generator loss and every critic parameter gradient
-- (body and heads) of the critic loss (<= 1e-4), on cpu and emu:0. Then steps with the warm-up, save, the
-- checkpoint's layout and an exact resume.
local sfwb = require "sfwb"
local T = require "sfwb.testing"

if not T.have_torch then print("SKIP: needs python3-torch"); T.done() end

local root = T.tmpdir("gan")
assert(os.execute(string.format("%s tests/ref/gan_ref.py '%s'", T.python, root)), "gan_ref.py failed")

-- tr.rng handing back the reference's draws in order (kind, shape and range checked)
local function replay(D, draws, device)
  return T.replay_rng(draws, function(i) return D["draw_" .. i] end, device)
end

-- max |a - b| / max(max|b|, floor) <= tol: a tensor whose gradient cancels analytically (the last bias of the
-- relativistic loss, a key bias under the softmax) is measured against 1e-2 of its network's largest gradient
local function close(a, b, floor, tol, msg)
  local diff = (a:cpu():double() - b:double()):abs():max():item()
  local scale = math.max(b:double():abs():max():item(), floor, 1e-30)
  if not (diff / scale <= tol) then
    error(string.format("%s: relative error %.3g > %.3g (max abs diff %.3g, scale %.3g)", msg, diff / scale, tol, diff,
                        scale), 2)
  end
  return diff / scale
end

local function floor_of(D, prefix)
  local m = 0
  for k, v in pairs(D) do
    if k:sub(1, #prefix) == prefix then m = math.max(m, v:double():abs():max():item()) end
  end
  return 1e-2 * m
end

local function config(man, extra)
  local cfg = {trainer = "gan", generator_type = "bidirectional", model_kwargs = {timestep_shift = man.shift},
               critic_timestep_shift = man.critic_shift, denoising_step_list = {1000, 750, 500, 250},
               warp_denoising_step = true, num_frame_per_block = man.nfpb, image_or_video_shape = {man.B, man.F, 16, 4, 4},
               num_training_frames = man.F, ts_schedule = false, seed = 2, gen_lr = 1e-3, critic_lr = 1e-3,
               num_class = man.num_class, relativistic_discriminator = man.relativistic,
               concat_time_embeddings = man.concat, gan_feature_blocks = man.blocks, r1_weight = man.r1,
               r2_weight = man.r2, r1_sigma = man.r1_sigma, r2_sigma = man.r2_sigma, gan_g_weight = man.gw,
               gan_d_weight = man.dw}
  for k, v in pairs(extra or {}) do cfg[k] = v end
  return cfg
end

local function build(case, device, extra)
  local dir = root .. "/" .. case
  local man = dofile(dir .. "/manifest.lua")
  local D = sfwb.load(dir .. "/data.safetensors")
  local p = {generator = sfwb.wan.load(dir .. "/gen"), fake_score = sfwb.wan.load(dir .. "/fake"),
             text_encoder = function(prompts) return D.context:narrow(1, 1, #prompts) end, dataset = {"x"}}
  if device ~= "cpu" then p.generator:to(device); p.fake_score:to(device) end
  local cfg = config(man, extra)
  cfg.device = device
  local tr = sfwb.train.new(cfg, p)
  local heads = {}
  for k, v in pairs(D) do
    local n = k:match("^h%.(.*)$")
    if n then heads[n] = v:to(device) end
  end
  tr.critic:load_state_dict(heads, {strict = false})
  return tr, man, D
end

local function run(case, device)
  local tr, man, D = build(case, device)
  T.eq(tr.objective, "gan")
  local count
  tr.rng, count = replay(D, man.draws, device)
  local args = {shape = {man.B, man.F, 16, 4, 4}, cond = {prompt_embeds = D.context:to(device)},
                uncond = {prompt_embeds = D.context:to(device)}, clean_latent = D.clean_latent:to(device)}
  -- the generator step: the critic frozen (trainer/gan.py)
  tr.critic:requires_grad_(false)
  local gl, glog = tr:generator_loss(args)
  T.near(gl:item(), man.generator_loss, 1e-5, "generator loss")
  T.close(glog.critic_timestep:cpu(), D.gen_timestep, 1e-4, "critic timestep (generator loss)")
  gl:backward()
  local worst = 0
  local gf, cf = floor_of(D, "g."), floor_of(D, "cg.")
  for k, prm in pairs(tr.generator:parameters()) do
    worst = math.max(worst, close(prm.grad, D["g." .. k], gf, 1e-4, "generator grad " .. k))
  end
  -- the critic step: the generator frozen, the critic (body and heads) trains
  tr.generator:requires_grad_(false)
  tr.critic:requires_grad_(true)
  local cl, clog = tr:critic_loss(args)
  T.eq(count(), #man.draws, "number of draws")
  T.near(cl:item(), man.critic_loss, 1e-5, "critic loss")
  T.near(clog.gan_D_loss, man.gan_D_loss, 1e-5, "gan_D_loss")
  T.near(clog.r1_loss, man.r1_loss, 1e-5, "r1_loss")
  T.near(clog.r2_loss, man.r2_loss, 1e-5, "r2_loss")
  T.close(clog.noisy_real_logit:cpu(), D.real_logit, 1e-4, "real logits")
  T.close(clog.noisy_fake_logit:cpu(), D.fake_logit, 1e-4, "fake logits")
  cl:backward()
  local n = 0
  for k, prm in pairs(tr.critic:parameters()) do
    local want = D["cg." .. k]
    assert(want, "no reference gradient for critic parameter " .. k)
    local g = prm.grad and prm.grad:cpu() or sfwb.zeros(want:shape())
    -- a key bias's gradient cancels in the softmax up to the RMS norm: measured against its layer's weight gradient
    local f = cf
    if k:match("cross_attn%.k%.bias$") then f = math.max(f, D["cg." .. k:gsub("bias$", "weight")]:abs():max():item()) end
    worst = math.max(worst, close(g, want, f, 1e-4, "critic grad " .. k))
    n = n + 1
  end
  T.check(n > 60, "the heads are critic parameters (" .. n .. ")")
  print(string.format("  %s on %s: generator loss %.6g, critic loss %.6g (D %.4g, r1 %.3g, r2 %.3g), worst gradient error %.3g",
                      case, device, gl:item(), cl:item(), clog.gan_D_loss, clog.r1_loss, clog.r2_loss, worst))
end

T.case("GAN (R1, R2, critic timestep shift): losses and every gradient equal the transcription (cpu)", function() run("gan", "cpu") end)
T.case("GAN relativistic, time embeddings concatenated, r1 = r2 = 0 (cpu)", function() run("gan_rel", "cpu") end)
local dev = T.test_device() -- emu:0, or $SFWB_TEST_DEVICE
if dev then
  T.case("GAN on " .. dev, function() run("gan", dev) end)
  T.case("GAN relativistic on " .. dev, function() run("gan_rel", dev) end)
end

-- a dataset of real latents (what the LMDB rows hold)
local function rows(D, n)
  local r = {}
  for i = 1, n do
    r[i] = {prompts = "p" .. i, idx = i - 1, ode_latent = (D.clean_latent + i * 0.01):unsqueeze(2):expand({1, 2, 3, 16, 4, 4}):squeeze(1):contiguous()}
  end
  return r
end

T.case("GAN trains: warm-up, generator every dfake_gen_update_ratio, checkpoint layout, exact resume", function()
  local extra = {dfake_gen_update_ratio = 2, discriminator_warmup_steps = 1, discriminator_lr_multiplier = 2.0,
                 beta1_critic = 0.0, ema_weight = 0.9, ema_start_step = 1}
  local function fresh()
    sfwb.manual_seed(11)
    local tr, _, D = build("gan", "cpu", extra)
    tr.next_batch = sfwb.data.loader(rows(D, 3), {batch = 1, shuffle = true, seed = 0}):cycle()
    return tr
  end
  local tr = fresh()
  local before = tr.generator:parameters()["blocks.0.ffn.0.weight"]:clone()
  local head0 = tr.critic:parameters()["_cls_pred_branch.1.weight"]:clone()
  local body0 = tr.critic:parameters()["blocks.0.ffn.0.weight"]:clone()
  local i1 = tr:step()  -- warm-up: only the discriminator heads train, no generator update
  T.check(i1.generator_loss == nil and i1.warmup_status == 1.0, "step 1 is a warm-up step")
  T.check(sfwb.max_abs_diff(tr.generator:parameters()["blocks.0.ffn.0.weight"], before) == 0, "warm-up: generator unchanged")
  T.check(sfwb.max_abs_diff(tr.critic:parameters()["blocks.0.ffn.0.weight"], body0) == 0, "warm-up: critic body unchanged")
  T.check(sfwb.max_abs_diff(tr.critic:parameters()["_cls_pred_branch.1.weight"], head0) > 0, "warm-up: heads trained")
  T.eq(tr.opt_d.param_groups[1].lr, 2e-3, "discriminator lr = critic_lr * multiplier")
  local i2 = tr:step()  -- step 1 % 2 ~= 0: critic only, with the reset optimizer
  T.check(i2.generator_loss == nil and i2.critic_loss == i2.critic_loss, "step 2: critic only")
  T.eq(tr.opt_c.param_groups[1].betas[1], 0.0, "after the warm-up: beta1_critic")
  local i3 = tr:step()
  T.check(i3.generator_loss ~= nil and i3.generator_loss == i3.generator_loss, "step 3 trains the generator")
  T.check(sfwb.max_abs_diff(tr.generator:parameters()["blocks.0.ffn.0.weight"], before) > 0, "generator trained")
  local dir = T.tmpdir("gan-ck") .. "/checkpoint_model_000003"
  tr:save(dir)
  local ck = sfwb.load(dir .. "/model.pt")
  T.check(ck["critic._cls_pred_branch.0.weight"] and ck["critic.model.blocks.0.ffn.0.weight"]
          and ck["generator.model.blocks.0.ffn.0.weight"] and ck["generator_ema.model.blocks.0.ffn.0.weight"],
          "model.pt = {generator, critic (heads beside model.*), generator_ema}")
  T.check(ck["critic.model._cls_pred_branch.0.weight"] == nil, "the heads are not under model.")
  T.raises(function() tr:save(dir) end, "refusing to overwrite")
  tr:step(); tr:step()
  local want = tr.generator:parameters()["blocks.0.ffn.0.weight"]:clone()
  local wantc = tr.critic:parameters()["_gan_ca_blocks.1.ffn.0.weight"]:clone()
  local tr2 = fresh()
  tr2:resume(dir)
  T.eq(tr2.step_count, 3, "step from the checkpoint")
  tr2:step(); tr2:step()
  T.eq(sfwb.max_abs_diff(tr2.generator:parameters()["blocks.0.ffn.0.weight"], want), 0, "exact resume (generator)")
  T.eq(sfwb.max_abs_diff(tr2.critic:parameters()["_gan_ca_blocks.1.ffn.0.weight"], wantc), 0, "exact resume (heads)")
end)

T.case("GAN refusals name what is missing", function()
  local dir = root .. "/gan"
  local man = dofile(dir .. "/manifest.lua")
  local function parts() return {generator = sfwb.wan.load(dir .. "/gen"), fake_score = sfwb.wan.load(dir .. "/fake"),
                                 text_encoder = function() error("not used") end, dataset = {"x"}} end
  local cfg = config(man); cfg.num_class = nil
  T.raises(function() sfwb.train.new(cfg, parts()) end, "num_class")
  cfg = config(man); cfg.gen_lr = nil
  T.raises(function() sfwb.train.new(cfg, parts()) end, "gen_lr")
  cfg = config(man); cfg.gan_feature_blocks = nil
  T.raises(function() sfwb.train.new(cfg, parts()) end, "gan_feature_blocks")
  cfg = config(man); cfg.i2v = true
  T.raises(function() sfwb.train.new(cfg, parts()) end, "I2V")
end)

T.done()
