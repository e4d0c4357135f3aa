-- test_train_objectives.lua — sfwb.train.new's dispatch and the one-network objectives (diffusion, ode)
-- against our PyTorch transcription (tests/ref/objectives_ref.py) on tiny Wan DiTs: every draw replayed
-- through tr.rng, the loss (<= 1e-5) and every generator parameter gradient (<= 1e-4), on cpu and emu:0;
-- a few optimizer steps, save and an exact resume.
local sfwb = require "sfwb"
local T = require "sfwb.testing"

if not T.have_torch then print("SKIP: needs python3-torch"); T.done() end

local root = T.tmpdir("objectives")
assert(os.execute(string.format("%s tests/ref/objectives_ref.py '%s'", T.python, root)), "reference failed")

-- tr.rng handing back the reference's draws in order (kind, shape and range checked)
local function replay(D, draws, device)
  return T.replay_rng(draws, function(i) return D["draw_" .. i] end, device)
end

local function config_of(man)
  local cfg = {trainer = man.kind, model_kwargs = {timestep_shift = man.shift}, num_frame_per_block = man.nfpb,
               independent_first_frame = man.indep, generator_type = man.causal and "causal" or "bidirectional",
               seed = 5, lr = 1e-3, beta1 = 0.9, beta2 = 0.999}
  if man.kind == "diffusion" then cfg.noise_augmentation_max_timestep = man.nam; cfg.teacher_forcing = man.tf end
  if man.kind == "ode" then
    cfg.denoising_step_list = man.steps; cfg.warp_denoising_step = man.warp; cfg.i2v = man.i2v
  end
  return cfg
end

local function run(name, device)
  local dir = root .. "/" .. name
  local man = dofile(dir .. "/manifest.lua")
  local D = sfwb.load(dir .. "/data.safetensors")
  local m = sfwb.wan.load(dir, {causal = man.causal, num_frame_per_block = man.nfpb,
                                independent_first_frame = man.indep})
  if device ~= "cpu" then m:to(device) end
  local tr = sfwb.train.new(config_of(man), {generator = m})
  local count
  tr.rng, count = replay(D, man.draws, device)
  local cond = {prompt_embeds = D.context:to(device)}
  local loss, log
  if man.kind == "diffusion" then
    loss, log = tr:generator_loss{clean_latent = D.clean_latent:to(device), cond = cond}
  else
    loss, log = tr:generator_loss{ode_latent = D.ode_latent:to(device), cond = cond}
  end
  T.eq(count(), #man.draws, "number of draws")
  T.close(loss:cpu():float():reshape({1}), D.loss, 1e-5, name .. " loss")
  T.close((log.timesteps or log.timestep):cpu(), D.timestep, 1e-6, name .. " timesteps")
  if man.kind == "ode" then T.close(log.timestep:cpu(), D.timestep:mean(2), 1e-6, name .. " logged mean timestep") end
  loss:backward()
  local worst, n = 0, 0
  for k, p in pairs(m:parameters()) do
    local ref = D["g." .. k]
    assert(ref, "no reference gradient for " .. k)
    assert(p.grad, "no gradient reached " .. k)
    worst = math.max(worst, T.close(p.grad:cpu(), ref, 1e-4, name .. " grad " .. k))
    n = n + 1
  end
  print(string.format("  %s on %s: loss %.6g, %d parameter gradients, worst relative error %.3g", name, device,
                      loss:item(), n, worst))
end

for _, name in ipairs({"diff_causal", "diff_aug_indep", "diff_tf", "diff_tf_aug", "diff_bidir", "ode_causal", "ode_i2v"}) do
  T.case(name .. ": loss and gradients equal the transcription (cpu)", function() run(name, "cpu") end)
end
local function run_causvid(device, case)
  case = case or "causvid"
  local dir = root .. "/" .. case
  local man = dofile(dir .. "/manifest.lua")
  local D = sfwb.load(dir .. "/data.safetensors")
  local m = sfwb.wan.load(dir, {causal = true, num_frame_per_block = man.nfpb})
  local p = {generator = m, real_score = sfwb.wan.load(dir .. "/real"), fake_score = sfwb.wan.load(dir .. "/fake"),
             text_encoder = function() error("not used") end, dataset = {"x"}}
  if device ~= "cpu" then for _, k in ipairs({"generator", "real_score", "fake_score"}) do p[k]:to(device) end end
  local cfg = {trainer = "score_distillation", distribution_loss = "causvid", model_kwargs = {timestep_shift = man.shift},
               timestep_shift = man.score_shift, guidance_scale = man.g, denoising_step_list = man.steps,
               warp_denoising_step = man.warp, num_frame_per_block = man.nfpb, image_or_video_shape = {1, 4, 16, 4, 4},
               num_training_frames = 4, seed = 2, teacher_forcing = man.tf}
  local tr = sfwb.train.new(cfg, p)
  T.eq(tr.objective, "causvid")
  local count
  tr.rng, count = replay(D, man.draws, device)
  local args = {clean_latent = D.clean_latent:to(device), cond = {prompt_embeds = D.context:to(device)},
                uncond = {prompt_embeds = D.negative:to(device)}}
  local loss, log = tr:generator_loss(args)
  T.close(loss:cpu():float():reshape({1}), D.loss, 1e-5, "causvid generator loss")
  T.close(log.timestep:cpu(), D.timestep, 1e-6, "score timesteps")
  loss:backward()
  local worst = 0
  for k, prm in pairs(m:parameters()) do worst = math.max(worst, T.close(prm.grad:cpu(), D["g." .. k], 1e-4, "generator grad " .. k)) end
  local closs, clog = tr:critic_loss(args)
  T.eq(count(), #man.draws, "number of draws")
  T.close(closs:cpu():float():reshape({1}), D.critic_loss, 1e-5, "causvid critic loss")
  T.close(clog.critic_timestep:cpu(), D.critic_timestep, 1e-6, "critic timesteps")
  closs:backward()
  for k, prm in pairs(tr.critic:parameters()) do worst = math.max(worst, T.close(prm.grad:cpu(), D["cg." .. k], 1e-4, "critic grad " .. k)) end
  print(string.format("  " .. case .. " on %s: generator loss %.6g, critic loss %.6g, worst gradient error %.3g", device,
                      loss:item(), closs:item(), worst))
end
-- Self-Forcing-Plus: DMD with a bidirectional generator (BidirectionalTrainingPipeline's rollout)
-- case "dmd_bidir": the exit at the first step; "dmd_bidir_exit2": two steps without gradient, then the exit
local function run_dmd_bidir(device, case, tol)
  local dir = root .. "/" .. case
  local man = dofile(dir .. "/manifest.lua")
  local D = sfwb.load(dir .. "/data.safetensors")
  local m = sfwb.wan.load(dir, {causal = false})
  local p = {generator = m, real_score = sfwb.wan.load(dir .. "/real"), fake_score = sfwb.wan.load(dir .. "/fake"),
             text_encoder = function() error("not used") end, dataset = {"x"}}
  if device ~= "cpu" then for _, k in ipairs({"generator", "real_score", "fake_score"}) do p[k]:to(device) end end
  local cfg = {trainer = "score_distillation", distribution_loss = "dmd", generator_type = "bidirectional",
               model_kwargs = {timestep_shift = man.shift}, timestep_shift = man.score_shift, guidance_scale = man.g,
               denoising_step_list = man.steps, warp_denoising_step = man.warp, num_frame_per_block = man.nfpb,
               image_or_video_shape = {1, man.F, 16, 4, 4}, num_training_frames = man.F, ts_schedule = false, seed = 2,
               device = device}
  local tr = sfwb.train.new(cfg, p)
  T.eq(tr.generator_type, "bidirectional")
  local count
  tr.rng, count = replay(D, man.draws, device)
  local loss, log = tr:generator_loss{shape = {1, man.F, 16, 4, 4}, cond = {prompt_embeds = D.context:to(device)},
                                      uncond = {prompt_embeds = D.negative:to(device)}}
  T.eq(count(), #man.draws, "number of draws")
  T.close(loss:cpu():float():reshape({1}), D.loss, 1e-5, "bidirectional DMD loss")
  T.close(log.timestep:cpu(), D.timestep, 1e-6, "score timesteps")
  loss:backward()
  local worst = 0
  for k, prm in pairs(m:parameters()) do worst = math.max(worst, T.close(prm.grad:cpu(), D["g." .. k], tol, "generator grad " .. k)) end
  print(string.format("  " .. case .. " on %s (exit step %d): loss %.6g, worst gradient error %.3g", device, man.exit,
                      loss:item(), worst))
end
T.case("DMD with a bidirectional generator: loss and gradients equal the transcription (cpu)", function()
  run_dmd_bidir("cpu", "dmd_bidir", 1e-4)
  run_dmd_bidir("cpu", "dmd_bidir_exit2", 1e-4)
end)

T.case("causvid: generator and critic losses and gradients equal the transcription (cpu)", function() run_causvid("cpu") end)
T.case("causvid with teacher forcing (cpu)", function() run_causvid("cpu", "causvid_tf") end)

local dev = T.test_device() -- emu:0, or $SFWB_TEST_DEVICE
if dev then
  T.case("diff_aug_indep on " .. dev, function() run("diff_aug_indep", dev) end)
  T.case("diff_tf_aug (teacher forcing) on " .. dev, function() run("diff_tf_aug", dev) end)
  T.case("ode_causal on " .. dev, function() run("ode_causal", dev) end)
  T.case("causvid on " .. dev, function() run_causvid(dev) end)
  T.case("dmd_bidir on " .. dev, function() run_dmd_bidir(dev, "dmd_bidir", 1e-4) end)
end

T.case("train.new: dispatch on trainer / distribution_loss, refusals name key and value", function()
  T.raises(function() sfwb.train.new({trainer = "frobnicate"}) end, "trainer: frobnicate is not one of")
  T.raises(function() sfwb.train.new({trainer = "score_distillation", distribution_loss = "xyz"}) end,
           "distribution_loss: xyz is not one of")
  T.raises(function() sfwb.train.new({}) end, "no 'trainer' key")
  T.raises(function() sfwb.train.new({trainer = "gan"}) end, "gen_lr")  -- the GAN trainer: its required keys
  do -- several ranks: refused before anything is built (its loop averages no gradients)
    local ws = sfwb.dist.world_size
    sfwb.dist.world_size = function() return 2 end
    local ok, err = pcall(sfwb.train.new, {trainer = "gan", gen_lr = 1e-5, critic_lr = 1e-5, num_class = 1})
    sfwb.dist.world_size = ws
    T.check(not ok and tostring(err):match("2 ranks") and tostring(err):match("run one process"), tostring(err))
  end
  T.eq(sfwb.train.objective({trainer = "score_distillation", distribution_loss = "dmd"}), "dmd")
  T.eq(sfwb.train.objective({trainer = "ode"}), "ode")
  T.raises(function() sfwb.train.new({trainer = "ode"}, {}) end, "denoising_step_list")
  -- config honesty: wrong types and values the original would not run are named with key and value
  local g = sfwb.wan.new({dim = 32, ffn_dim = 48, num_heads = 2, num_layers = 1, text_dim = 8, text_len = 4, freq_dim = 16},
                         {causal = true})
  T.raises(function() sfwb.train.new({trainer = "ode", denoising_step_list = {1000, 0}, lr = "fast"}, {generator = g}) end,
           "'lr' must be a number")
  T.raises(function() sfwb.train.new({trainer = "ode", distribution_loss = "dmd", denoising_step_list = {1000, 0}},
                                     {generator = g}) end, "asserts distribution_loss")
  T.raises(function() sfwb.train.new({trainer = "diffusion", i2v = true}, {generator = g}) end, "no I2V")
  local gb = sfwb.wan.new({dim = 32, ffn_dim = 48, num_heads = 2, num_layers = 1, text_dim = 8, text_len = 4, freq_dim = 16})
  T.raises(function() sfwb.train.new({trainer = "diffusion", teacher_forcing = true, generator_type = "bidirectional"},
                                     {generator = gb}) end, "teacher_forcing: true needs a causal generator")
  T.raises(function() sfwb.train.new({trainer = "diffusion", teacher_forcing = true, independent_first_frame = true},
                                     {generator = g}) end, "NotImplementedError")
  -- the model's teacher-forcing forward refuses what it cannot run, by name
  local x, ctx = sfwb.randn({1, 16, 2, 4, 4}), sfwb.randn({1, 3, 8})
  T.raises(function() g:forward(x, sfwb.zeros({1, 2}), ctx, {clean_x = sfwb.randn({1, 16, 1, 4, 4})}) end,
           "must have x's shape")
  T.raises(function() g:forward(x, sfwb.zeros({1}), ctx, {clean_x = x}) end, "per-frame timesteps")
  T.raises(function() gb:forward(x, sfwb.zeros({1, 2}), ctx, {clean_x = x}) end, "needs a causal model")
end)

T.case("diffusion and ode trainers: steps from a dataset, save in the original's layout, exact resume", function()
  for _, name in ipairs({"diff_causal", "diff_tf", "ode_causal"}) do
    local dir = root .. "/" .. name
    local man = dofile(dir .. "/manifest.lua")
    local D = sfwb.load(dir .. "/data.safetensors")
    local function fresh()
      local m = sfwb.wan.load(dir, {causal = man.causal, num_frame_per_block = man.nfpb,
                                    independent_first_frame = man.indep})
      local ode = D.ode_latent or D.clean_latent:unsqueeze(2)
      local rows = {}
      for b = 1, ode:size(1) do rows[b] = {prompts = "p" .. b, ode_latent = ode:select(1, b):contiguous(), idx = b - 1} end
      local cfg = config_of(man)
      cfg.batch_size = 1
      cfg.ema_weight = 0.9
      -- no 0 in the list: a batch whose frames all sit at t = 0 gives the original's NaN loss (0/0)
      if cfg.denoising_step_list then cfg.denoising_step_list = {1000, 750, 500, 250} end
      local ctx = D.context:narrow(1, 1, 1)
      return sfwb.train.new(cfg, {generator = m, dataset = rows, text_encoder = function(p) return ctx end})
    end
    local a = fresh()
    a:train{steps = 2, quiet = true}
    local ck = root .. "/" .. name .. "_ck/checkpoint_model_000002"
    a:save(ck)
    local saved = sfwb.load(ck .. "/model.pt")
    local has_gen, has_ema = false, false
    for k in pairs(saved) do
      if k:find("^generator%.model%.") then has_gen = true end
      if k:find("^generator_ema%.model%.") then has_ema = true end
    end
    T.check(has_gen and has_ema, name .. ": model.pt holds generator and generator_ema with model. keys")
    -- the shared loop's checkpoint (sfwb.train.base): its training state, never overwritten
    T.check(sfwb.fs.stat(ck .. "/training_state.pt") ~= nil and sfwb.fs.stat(ck .. "/sfwb_state.safetensors") == nil,
            name .. ": training_state.pt beside model.pt")
    T.raises(function() a:save(ck) end, "refusing to overwrite")
    local b = fresh()
    b:resume(ck)
    T.eq(b.step_count, 2)
    for k, p in pairs(a.generator:parameters()) do T.close(b.generator:parameters()[k], p, 0, name .. " " .. k) end
    T.check(a.log[2].generator_loss == a.log[2].generator_loss, "finite loss")
    -- the history keeps numbers only (a long run kept every step's x0 and predictions: ~1 MB a step)
    local function tensors_in(t)
      local n = 0
      for _, v in pairs(t) do
        if type(v) == "userdata" then n = n + 1 elseif type(v) == "table" then n = n + tensors_in(v) end
      end
      return n
    end
    T.eq(tensors_in(a.log), 0, name .. ": no tensors kept in tr.log")
    T.check(type(a.log[2].step) == "number" and type(a.log[2].seconds) == "number", "step and seconds kept")
    -- exact resume: 2 steps + save + resume + 1 step == 3 uninterrupted steps (weights, EMA, optimizer, RNG, data)
    b:train{steps = 1, quiet = true}
    local c = fresh()
    c:train{steps = 3, quiet = true}
    for k, p in pairs(c.generator:parameters()) do T.close(b.generator:parameters()[k], p, 0, name .. " resumed " .. k) end
    for k, v in pairs(c.ema:state_dict()) do T.close(b.ema:state_dict()[k], v, 0, name .. " resumed EMA " .. k) end
  end
end)

T.case("diffusion trainer text_dropout (sfwb's CFG training option): prompts become negative_prompt at the rate", function()
  local g = sfwb.wan.new({dim = 32, ffn_dim = 48, num_heads = 2, num_layers = 1, text_dim = 8, text_len = 4, freq_dim = 16})
  local rows = {}
  for b = 1, 4 do rows[b] = {prompts = "p" .. b, ode_latent = sfwb.randn({2, 1, 16, 4, 4}), idx = b - 1} end
  local seen = {}
  local function enc(ps)
    for _, p in ipairs(ps) do seen[#seen + 1] = p end
    return sfwb.zeros({#ps, 4, 8})
  end
  local function trainer(rate, neg)
    seen = {}
    return sfwb.train.new({trainer = "diffusion", generator_type = "bidirectional", batch_size = 4, text_dropout = rate,
      negative_prompt = neg}, {generator = g, dataset = rows, text_encoder = enc})
  end
  local tr = trainer(0.5, "NEG")
  for _ = 1, 50 do tr:batch_args(tr:batches()()) end
  local dropped = 0
  for _, p in ipairs(seen) do
    T.check(p == "NEG" or p:match("^p%d$"), "a prompt or the negative prompt, got " .. p)
    if p == "NEG" then dropped = dropped + 1 end
  end
  T.eq(#seen, 200)
  -- 200 draws at 0.5: 100 +- 3 sigma (sigma ~7)
  T.check(dropped > 79 and dropped < 121, "about half dropped, got " .. dropped)
  tr = trainer(0) -- the default draws nothing and keeps every prompt (the original's behaviour)
  local s0, o0 = sfwb.rng_state()
  for _ = 1, 5 do tr:batch_args(tr:batches()()) end
  local s1, o1 = sfwb.rng_state()
  T.check(s0 == s1 and o0 == o1, "text_dropout 0 draws no random numbers")
  for _, p in ipairs(seen) do T.check(p:match("^p%d$"), "kept " .. p) end
  T.raises(function() trainer(1) end, "text_dropout must be in")
end)

T.case("diffusion trainer timestep_weighting: none (sfwb option) is the original's loss without the bump weight", function()
  local g = sfwb.wan.new({dim = 32, ffn_dim = 48, num_heads = 2, num_layers = 1, text_dim = 8, text_len = 4, freq_dim = 16})
  local x, ctx = sfwb.randn({1, 2, 16, 4, 4}), sfwb.randn({1, 4, 8})
  local function loss(weighting)
    local tr = sfwb.train.new({trainer = "diffusion", generator_type = "bidirectional", seed = 3, timestep_weighting = weighting},
                              {generator = g, dataset = {}, text_encoder = function() return ctx end})
    local l, log = tr:generator_loss({clean_latent = x, cond = {prompt_embeds = ctx}})
    return l:item(), log.timestep, tr
  end
  local lo, t1, tr = loss("original")
  local ln, t2 = loss("none")
  T.close(t1, t2, 0, "same draws")
  -- one sample, one timestep for every frame (bidirectional): the original's loss is w(t) x the unweighted one
  local w = tr.scheduler:training_weight(t1):reshape({-1}):totable()[1]
  T.check(math.abs(lo - w * ln) <= 1e-6 * math.abs(lo) + 1e-9, string.format("original %.8g = w %.6g x none %.8g", lo, w, ln))
  T.check(math.abs(w - 1) > 1e-3, "the draw's weight is not 1 (the check can fail)")
  T.raises(function() loss("uniform") end, "timestep_weighting")
end)

T.done()
