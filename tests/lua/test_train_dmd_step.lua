-- test_train_dmd_step.lua — one DMD generator step and one critic step equal our PyTorch transcription
-- of the original (tests/ref/dmd_step_ref.py), draw for draw (the reference's draws replayed through
-- tr.rng): losses and EVERY parameter gradient, for the original's gradient paths (the KV cache
-- written in place with gradient; with gradient_checkpointing the cross-attention K/V recomputed from
-- the text context) and for detach_kv_cache against the detached transcription; cpu and emu:0.
local T = require "sfwb.testing"

if not T.have_torch then
  print("skip: python3-torch not importable")
  T.done()
  return
end

local function replayer(man, d) -- tr.rng handing back the reference's draws in order (kind and shape checked)
  return (T.replay_rng(man.draws, function(i) return d[string.format("draw_%03d", i)] end))
end

local refs = {} -- one reference run per variant, shared by the devices
local function ref_dir(variant)
  if not refs[variant] then
    local dir = T.tmpdir("dmd-step-" .. variant)
    assert(os.execute(string.format("%s tests/ref/dmd_step_ref.py '%s' %s", T.python, dir, variant)),
      "tests/ref/dmd_step_ref.py failed")
    refs[variant] = dir
  end
  return refs[variant]
end

local function run(variant, dev, detach)
  local dir = ref_dir(variant)
  local man = dofile(dir .. "/manifest.lua")
  local d = sfwb.load(dir .. "/data.safetensors")
  local p = {generator = sfwb.wan.load(dir .. "/gen", {causal = true, num_frame_per_block = 3, device = dev}),
             real_score = sfwb.wan.load(dir .. "/real", {device = dev}),
             fake_score = sfwb.wan.load(dir .. "/fake", {device = dev}),
             text_encoder = function() error("not used") end, dataset = {"x"}}
  local cfg = {seed = 1, lr = 1e-3, lr_critic = 1e-3, denoising_step_list = {1000, 750, 500, 250},
               warp_denoising_step = true, ts_schedule = false, num_train_timestep = 1000, timestep_shift = 5.0,
               guidance_scale = 3.0, num_frame_per_block = 3, num_training_frames = 6, batch_size = 2,
               image_or_video_shape = {2, 6, 16, 2, 4}, model_kwargs = {timestep_shift = 5.0}, context_noise = 0,
               ema_weight = 0, device = dev, gradient_checkpointing = variant == "inplace_ckpt",
               detach_kv_cache = detach == nil and variant == "detach" or detach}
  local tr = sfwb.train.dmd(cfg, p)
  local rp = replayer(man, d)
  tr.rng = rp
  local ctx, neg = d.ctx:to(dev), d.neg:to(dev)
  local args = {shape = {2, 6, 16, 2, 4}, cond = {prompt_embeds = ctx}, uncond = {prompt_embeds = neg}}
  local where = variant .. " on " .. dev .. ": "

  tr.opt_g:zero_grad()
  local loss = tr:generator_loss(args)
  T.eq(rp.count(), man.n_gen_draws, where .. "generator step draws")
  T.near(loss:item(), man.generator_loss, 1e-5, where .. "generator loss")
  loss:backward()
  local worst = 0
  for k, v in pairs(tr.generator:parameters()) do
    local ref = d["gen." .. k]
    local g = v.grad or sfwb.zeros(v:shape())
    worst = math.max(worst, T.close(g, ref, 1e-4, where .. "generator grad " .. k))
  end

  tr.opt_c:zero_grad()
  local closs = tr:critic_loss(args)
  T.eq(rp.count(), #man.draws, where .. "every draw used")
  T.near(closs:item(), man.critic_loss, 1e-5, where .. "critic loss")
  closs:backward()
  for k, v in pairs(tr.critic:parameters()) do
    local g = v.grad or sfwb.zeros(v:shape())
    worst = math.max(worst, T.close(g, d["critic." .. k], 1e-4, where .. "critic grad " .. k))
  end
  return tr, worst
end

T.case("the comparison can fail: the detached variant differs from the original's gradient", function()
  local ok, err = pcall(run, "inplace", "cpu", true)
  T.check(not ok and tostring(err):find("generator grad", 1, true), "detached gradients must not match: " .. tostring(err))
end)

for _, dev in ipairs({"cpu", "emu:0"}) do
  T.case("in-place KV cache semantics: generator and critic step equal the original's (" .. dev .. ")", function()
    local tr, worst = run("inplace", dev)
    print(string.format("  worst relative gradient difference %.2g", worst))
    -- the cache's gradient path reaches the self-attention k/v of earlier blocks' exit steps
    T.check(tr.generator:parameters()["blocks.0.self_attn.k.weight"].grad ~= nil, "self_attn.k has a gradient")
  end)
  T.case("gradient_checkpointing: cross-attention K/V recomputed with gradient (" .. dev .. ")", function()
    local tr = run("inplace_ckpt", dev)
    local g = tr.generator:parameters()["text_embedding.0.weight"].grad
    T.check(g ~= nil and g:abs():max():item() > 0, "text_embedding gets a gradient under checkpointing")
  end)
  T.case("detach_kv_cache equals the detached transcription (" .. dev .. ")", function()
    run("detach", dev)
  end)
end

T.done()
