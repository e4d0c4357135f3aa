-- test_toy_world_recipe.lua — the toy world recipe in miniature (recipes/toy_world.lua --mini): every
-- stage runs or says why it is pending, DIR/toy_world.json has the issue's shape, the files it names
-- exist, a second run resumes (finished stages skipped, the VAE continues from its last save), the
-- latents LMDB reads back as Self-Forcing's ODE layout, and the VAE's normalisation fold keeps the
-- decoder's input exactly while rescaling the latents.
local sfwb = require "sfwb"
local T = require "sfwb.testing"
local json = require "sfwb.json"
local R = require "sfwb.recipes.toy_world"
local VAE = require "sfwb.recipes.toy_world_vae"

local out = T.tmpdir("toy_world_recipe")

local function exists(p)
  local f = io.open(p, "rb")
  if f then f:close() return true end
  return false
end

T.case("the miniature runs end to end and writes toy_world.json", function()
  -- every stage (`--mini`: seconds on a quiet machine)
  T.eq(R.main({"--out", out, "--mini"}), 0)
  local j = json.read(out .. "/toy_world.json")
  T.eq(j.fps, 16)
  T.eq(j.train_frames, R.presets.mini.train_frames)
  T.eq(#j.prompts, 2)
  for _, name in ipairs(R.stage_names) do
    local s = j.stages[name]
    if not s then goto continue end
    T.check(s.status == "done" or (s.status == "pending" and s.note and #s.note > 0), name .. ": done, or pending with a reason")
    for _, k in ipairs({"steps", "seconds", "loss_first", "loss_last"}) do T.check(type(s[k]) == "number", name .. "." .. k) end
    ::continue::
  end
  for _, name in ipairs(R.stage_names) do T.eq(j.stages[name].status, "done", name) end
  for _, name in ipairs({"self_forcing", "teacher_forcing", "diffusion_forcing"}) do
    T.eq(#j.videos[name], 2, name .. " videos")
    T.eq(#j.long_videos[name], 2, name .. " long videos")
    T.check(type(j.measurements[name .. "_long"].last_third) == "number", name .. ": the 3x mark measured")
  end
  T.eq(#j.videos.ode_init, 2, "ODE-init videos")
  T.eq(json.read(out .. "/stages/self_forcing.json").weights, "generator_ema", "the student measured with its EMA")
  T.eq(#sfwb.data.lmdb(out .. "/data/ode_lmdb")[1].ode_latent:shape(), 5, "ODE pairs [S, F, C, h, w]")
  T.eq(sfwb.data.lmdb(out .. "/data/ode_lmdb")[1].ode_latent:size(1), 5, "five states per trajectory")
  T.eq(#j.videos.teacher, 2, "teacher videos")
  T.check(exists(out .. "/checkpoints/teacher/model/config.json"), "the teacher as a Wan folder")
  T.check(exists(out .. "/figures/loss_teacher.png") and exists(out .. "/figures/error_accumulation.png"), "figures")
  -- the teacher-forcing baseline trains through sfwb.train.diffusion{teacher_forcing=true} since it landed
  T.eq(j.stages.teacher_forcing.status, "done", "teacher_forcing")
  T.check(j.stages.vae.loss_last < j.stages.vae.loss_first, "the VAE's loss falls")
  for _, name in ipairs({"data", "vae"}) do
    T.eq(#j.videos[name], 2, name .. " videos")
    for _, rel in ipairs(j.videos[name]) do T.check(exists(out .. "/" .. rel) or exists(out .. "/" .. rel:gsub("%.mp4$", "")), rel) end
  end
  T.eq(j.measurements.data.frames_ok, 1.0, "ground truth measures right")
  for _, f in ipairs({"figures/loss_vae.png", "figures/frames_data.png", "figures/frames_vae.png",
                      "checkpoints/vae/Wan2.1_VAE.pth", "data/prompts.txt"}) do
    T.check(exists(out .. "/" .. f), f)
  end
  local ds = sfwb.data.lmdb(out .. "/data/latents_lmdb")
  T.eq(#ds, R.presets.mini.n_train)
  T.eq(table.concat(ds[1].ode_latent:shape(), ","), "1,3,16,8,8")
  T.eq(ds[1].prompts, sfwb.data.text_file(out .. "/data/prompts.txt")[1].prompts)
end)

T.case("the bundle is the originals' layout, and the demo runs on it (generate, measure, attention, EMA vs raw)", function()
  local B = require "sfwb.recipes.toy_world_bundle"
  local P = B.paths(out .. "/bundle")
  for _, f in ipairs({P.wan_dir .. "/config.json", P.wan_dir .. "/diffusion_pytorch_model.safetensors",
                      P.wan_dir .. "/models_t5_umt5-xxl-enc-bf16.pth", P.wan_dir .. "/Wan2.1_VAE.pth",
                      P.wan_dir .. "/google/umt5-xxl/spiece.model", P.checkpoint, P.config, P.long_config, P.prompts}) do
    T.check(exists(f), f)
  end
  T.check(exists(out .. "/figures/attention_self_forcing/layers_mosaic.png"), "the trained student's attention maps")
  local ck = sfwb.load(P.checkpoint)
  local g, e, other = 0, 0, 0
  for k, v in pairs(ck) do
    if k:find("^generator%.model%.") then g = g + 1 elseif k:find("^generator_ema%.model%.") then e = e + 1 else other = other + 1 end
    T.eq(v:dtype(), "bf16", k .. " stored in bf16")
  end
  T.check(g > 0 and g == e and other == 0, "generator and generator_ema only, same keys")
  -- the student with its config and the base folder loads as any Self-Forcing checkpoint does
  local m = sfwb.wan.load(P.wan_dir, {causal = true, num_frame_per_block = 3})
  m:load_checkpoint(P.checkpoint, {ema = true})
  local home = T.tmpdir("toy_world_demo")
  local Demo = require "sfwb.demo"
  T.eq(Demo.main({"--toy_world", out .. "/bundle", "--out", home}), 0)
  T.check(exists(home .. "/compare/compare.json") and exists(home .. "/compare/summary.png"), "compare EMA vs raw")
  T.check(exists(home .. "/attention/layers_mosaic.png"), "attention figures")
  T.raises(function() Demo.main({"--toy_world", out}) end, "is not a toy-world bundle")
  T.raises(function() Demo.main({"--frobnicate"}) end, "unknown argument")
end)

T.case("make demo's shipped toy world (assets/toy_world): the student draws balls, EMA and raw differ", function()
  local Demo = require "sfwb.demo"
  local dir = Demo.toy_world_dir()
  T.check(dir ~= nil and dir:find("assets/toy_world$") ~= nil, "the repository ships assets/toy_world (found: " .. tostring(dir) .. ")")
  local home = T.tmpdir("toy_world_shipped_demo")
  local code, r = Demo.main({"--out", home})
  T.eq(code, 0)
  -- random weights draw no ball at all (0 %); the shipped student (run G2, the default preset's) draws the
  -- prompted balls in 83 % of the demo's frames and moves 7 of its 8 videos' balls the prompted way (cpu, seed 0,
  -- the same with 1 or 2 BLAS threads and another OpenBLAS core type; docs/toy_world.md): the issue's marks, the
  -- directions with one video of slack (6 of 8 = 75 %) for a machine whose BLAS rounds apart
  T.check(r.measured.frames_ok >= 0.8, string.format("frames with the prompted balls: %.2f", r.measured.frames_ok))
  T.check(r.measured.direction >= 0.7, string.format("videos moving the prompted way: %.2f", r.measured.direction))
  T.check(r.compare and not r.compare.identical and r.compare.latent_mse > 0, "generator_ema differs from generator")
end)

T.case("the teacher probe runs on the miniature (SDEdit, whole video vs frames alone, words swapped)", function()
  local P = require "sfwb.recipes.toy_world_probe"
  local code, r = P.main({out, "--videos", "2"})
  T.eq(code, 0)
  T.eq(#r.sdedit, 3)
  T.eq(#r.frames, 3)
  for _, e in ipairs(r.sdedit) do T.check(e.frames_ok >= 0 and e.frames_ok <= 1 and e.direction >= 0 and e.direction <= 1, "fractions") end
  for _, e in ipairs(r.frames) do T.check(e.whole > 0 and e.alone > 0 and e.zeros > 0, "errors measured") end
  local _, last = P.main({out, "--videos", "1", "--weights", "last_ema"})
  T.eq(#last.frames, 3, "the last training save's EMA loads through checkpoints/teacher/config.json")
  T.raises(function() P.main({out, "--weights", "best"}) end, "--weights must be")
  T.raises(function() P.main({}) end, "usage")
end)

T.case("the validation recipe draws a model as its stage does, on prompts apart from the evaluation set", function()
  local V = require "sfwb.recipes.toy_world_validate"
  local evalp = {}
  for _, p in ipairs(R.default_eval_prompts) do evalp[p] = true end
  local ones = 0
  for _, p in ipairs(V.prompts) do
    T.check(not evalp[p], "a validation prompt is not an evaluation prompt: " .. p)
    if not p:find(" and ") then ones = ones + 1 end
  end
  T.eq(#V.prompts, 12)
  T.eq(ones, 4, "4 one-ball validation prompts")
  -- on the run's own evaluation prompts and seeds (seed 0 + i) it measures exactly what the stage recorded (the
  -- miniature's nets draw no ball, so these are zeros on both sides: the video checks below are the sharp ones)
  local j = json.read(out .. "/toy_world.json")
  for _, model in ipairs({"teacher", "self_forcing", "diffusion_forcing"}) do
    local r = V.run({dir = out, model = model, weights = "ema", seeds = 1, preset = R.presets.mini, prompts = j.prompts,
      seed_of = function(_, i) return i end})
    local rec = json.read(out .. "/stages/" .. model .. ".json").measurements.videos
    T.eq(#r.videos, #rec, model .. ": one video a prompt")
    for i, m in ipairs(r.videos) do
      T.eq(m.frames_ok, rec[i].frames_ok, model .. " video " .. i .. ": frames right as the stage measured")
      T.eq(m.direction_ok, rec[i].direction_ok, model .. " video " .. i .. ": direction as the stage measured")
    end
    T.eq(r.one_ball.videos + r.two_ball.videos, #rec)
  end
  -- the weights it loads: the saved teacher is the EMA of its last save; the student's generator_ema is not its generator
  local function video(model, weights)
    local v
    V.run({dir = out, model = model, weights = weights, seeds = 1, preset = R.presets.mini, prompts = {j.prompts[1]},
      on_video = function(_, _, _, x) v = x end})
    return v
  end
  local function same(a, b, tol) return sfwb.allclose(a, b, {rtol = tol, atol = tol}) end
  T.check(same(video("teacher", "ema"), video("teacher", "ema"), 0), "the same seed draws the same video")
  T.check(not same(video("teacher", "ema"), video("teacher", "raw"), 1e-6), "teacher: EMA and raw differ")
  local Probe = require "sfwb.recipes.toy_world_probe"
  local vae = sfwb.vae.load(out .. "/checkpoints/vae/Wan2.1_VAE.pth")
  local last_ema = R.sampler("teacher", Probe.load_teacher(out, "last_ema"), R.presets.mini, R.load_text_encoder(out), vae)
  T.check(same(last_ema:generate({prompts = {j.prompts[1]}, num_frames = 3, seed = 1001, height = 64, width = 64}).video,
    video("teacher", "ema"), 0), "the saved teacher is the EMA of its last save")
  T.check(not same(video("self_forcing", "ema"), video("self_forcing", "raw"), 1e-6), "student: generator_ema is loaded")
  local code, r = V.main({out, "--mini", "--seeds", "1", "--model", "ode_init", "--detail"})
  T.eq(code, 0)
  T.eq(#r.videos, 12)
  T.eq(r.one_ball.videos, 4)
  T.eq(r.two_ball.videos, 8)
  T.check(r.frames_ok >= 0 and r.frames_ok <= 1 and r.direction >= 0 and r.direction <= 1, "fractions")
  local _, e = V.main({out, "--mini", "--seeds", "1", "--model", "teacher", "--prompts", "evaluation"})
  T.eq(#e.videos, #R.default_eval_prompts, "--prompts evaluation: the recipe's held-out prompts")
  local bad = T.tmpdir("toy_world_validate") .. "/prompts.txt"
  local f = io.open(bad, "w") f:write("a red ball moving right\na purple ball moving left\n") f:close()
  T.raises(function() V.main({out, "--mini", "--prompts", bad}) end, "purple")
  T.raises(function() V.main({out, "--mini", "--model", "vae"}) end, "--model must be")
  T.raises(function() V.main({out, "--mini", "--weights", "best"}) end, "--weights must be")
  T.raises(function() V.main({out, "--mini", "--seeds", "0"}) end, "--seeds must be")
  T.raises(function() V.main({out .. "/data", "--mini"}) end, "no checkpoints/self_forcing/model")
  T.raises(function() V.main({}) end, "usage")
end)

T.case("a second run resumes: finished stages are skipped, the VAE continues from its save", function()
  local before = json.read(out .. "/stages/vae.json")
  R.main({"--out", out, "--mini", "--stages", "data"})
  T.eq(json.read(out .. "/stages/data.json").seconds, json.read(out .. "/stages/data.json").seconds)
  -- two more VAE steps on top of the three done: the first three losses are kept, not recomputed
  R.main({"--out", out, "--mini", "--stages", "vae", "--redo", "vae", "--vae_steps", "5"})
  local after = json.read(out .. "/stages/vae.json")
  T.eq(after.steps, 5)
  T.eq(after.loss_first, before.loss_first, "resumed, not restarted")
  T.raises(function() R.main({"--out", out, "--mini", "--eval_prompts", "tests/lua/test_toy_world_recipe.lua"}) end,
    "not a toy-world prompt")
end)

T.case("the normalisation fold rescales the latents and keeps the decoder's input", function()
  sfwb.manual_seed(4)
  local sd = sfwb.tiny.vae_state_dict({dim = 4, z_dim = 16, dim_mult = {1, 2, 4, 4}, num_res_blocks = 1})
  local a = sfwb.vae.load(sd)
  local x = sfwb.rand({1, 3, 5, 16, 16}) * 2 - 1
  local lat = a:encode(x)
  local m, s = {}, {}
  for c = 1, 16 do m[c], s[c] = 0.3 * math.sin(c), 0.5 + 0.1 * c end
  local V = sfwb.vae_train.new(sd)
  local folded = VAE.fold_normalisation(V:state_dict(), m, s, V.mean, V.std)
  local b = sfwb.vae.load(folded)
  local lat2 = b:encode(x)
  local mt, st = sfwb.tensor(m):view({1, 1, 16, 1, 1}), sfwb.tensor(s):view({1, 1, 16, 1, 1})
  T.close(lat2, (lat - mt) / st, 1e-4, "latents")
  T.close(b:decode(lat2), a:decode(lat), 1e-4, "decoded video")
end)

T.case("ODE pairs: per_prompt noises for each distinct training prompt, each its own trajectory", function()
  local ODE = require "sfwb.recipes.toy_world_ode"
  local t = json.read(out .. "/stages/text.json")
  local t5 = sfwb.t5.load(out .. "/" .. t.checkpoint, {tokenizer = out .. "/" .. t.tokenizer, text_len = t.text_len})
  local path = out .. "/ode_per_prompt_lmdb"
  local rows = ODE.pairs({teacher = sfwb.wan.load(out .. "/checkpoints/teacher/model", {causal = false}),
    text_encoder = t5, prompts = {"a red ball moving left", "a red ball moving left", "a blue ball moving up"},
    steps = 4, frames = 3, h = 8, w = 8, seed = 3, path = path, per_prompt = 2})
  T.eq(rows, 4, "2 distinct prompts x 2 noises")
  local ds = sfwb.data.lmdb(path)
  T.eq(#ds, 4)
  T.eq(ds[1].prompts, ds[2].prompts)
  T.check((ds[1].ode_latent - ds[2].ode_latent):abs():max():item() > 1e-3, "two noises, two trajectories")
  T.eq(ds[3].prompts, "a blue ball moving up")
end)

T.case("--set overrides preset numbers and refuses unknown keys", function()
  local p = R.apply_overrides(R.presets.quick, "teacher.steps=400,vae.lr=0.002")
  T.eq(p.teacher.steps, 400)
  T.eq(p.vae.lr, 0.002)
  T.eq(R.presets.quick.teacher.steps ~= 400, true, "the preset itself is untouched")
  T.raises(function() R.apply_overrides(R.presets.quick, "teacher.stepz=4") end, "unknown preset key 'teacher.stepz'")
  T.raises(function() R.apply_overrides(R.presets.quick, "teacher.steps=x") end, "not key.path=number")
end)

T.case("the preset's cfg is the guidance of the ODE pairs (the default's 2, --quick's 3)", function()
  T.eq(R.presets.full.cfg, 2, "the default guides with 2 (docs/toy_world.md, runs G2 and G25)")
  T.eq(R.presets.quick.cfg, 3, "--quick keeps 3")
  -- the miniature again up to its ODE pairs with another guidance: the same teacher (every stage before
  -- reads no cfg, and is seeded), other trajectories — so the number reaches the teacher's sampler there
  local o2 = T.tmpdir("toy_world_recipe_cfg")
  T.eq(R.main({"--out", o2, "--mini", "--set", "cfg=1", "--stages", "data,text,vae,latents,teacher,ode_pairs"}), 0)
  local w1 = sfwb.load(out .. "/checkpoints/teacher/model/diffusion_pytorch_model.safetensors")
  local w2 = sfwb.load(o2 .. "/checkpoints/teacher/model/diffusion_pytorch_model.safetensors")
  for k, v in pairs(w1) do T.eq((v - w2[k]):abs():max():item(), 0, "teacher " .. k .. ": the same at cfg 1") end
  local a, b = sfwb.data.lmdb(out .. "/data/ode_lmdb")[1], sfwb.data.lmdb(o2 .. "/data/ode_lmdb")[1]
  T.eq(a.prompts, b.prompts)
  local n = a.ode_latent:size(1)
  T.eq(n, 5, "five states")
  local function state(x, i) return x.ode_latent:narrow(1, i, 1) end
  T.eq((state(a, 1) - state(b, 1)):abs():max():item(), 0, "the same starting noise")
  T.check((state(a, n) - state(b, n)):abs():max():item() > 1e-4, "cfg 3 and cfg 1 end apart")
end)

T.case("--set t5_bias: the text stage's context heads peak by that much more, nothing else in the T5 moves", function()
  local function pos_bias(bias)
    local d = T.tmpdir("toy_world_t5_bias_" .. bias)
    T.eq(R.main({"--out", d, "--mini", "--stages", "data,text", "--set", "t5_bias=" .. bias}), 0)
    return sfwb.load(d .. "/checkpoints/text/models_t5_umt5-xxl-enc-bf16.pth")
  end
  local a, b = pos_bias(4), pos_bias(6)
  local n = 0
  for k, v in pairs(a) do
    local diff = (b[k]:float() - v:float()):abs()
    if k:match("pos_embedding") then
      -- head h's row at the bucket of its offset: +2 (bf16 rounds values near 6 to 1/32)
      for h, off in ipairs(R.t5_config.context_offsets) do
        local row = sfwb._t5.bucket(off, R.t5_config.buckets) + 1
        local x = diff[row][h]
        T.near(type(x) == "number" and x or x:item(), 2, 0.07, k .. " head " .. h)
        n = n + 1
      end
      T.near(diff:sum():item(), 2 * #R.t5_config.context_offsets, 0.3, k .. ": only the context buckets")
    else
      T.eq(diff:max():item(), 0, k .. " unchanged")
    end
  end
  T.eq(n, #R.t5_config.context_offsets * R.t5_config.layers, "every layer's table checked")
end)

T.case("the VAE's decoder phase: the encoder (so the latents) stays, the decoder learns, resume is exact", function()
  local dirs = {}
  local function D(name) dirs[name] = dirs[name] or T.tmpdir(name) return dirs[name] end
  local function cfg(dir, dsteps, stop_at)
    return {dir = D(dir), seed = 1, steps = 2, batch = 1, clip = 5, span = 9, lr = 2e-3, dim = 4, save_every = 1,
      crop = 32, probe = 1, decoder_steps = dsteps, decoder_td = 3,
      progress = stop_at and function(step) if step == stop_at then error("interrupted", 0) end end}
  end
  VAE.train(cfg("vae_joint", 0))
  VAE.train(cfg("vae_dec", 3))
  local joint, dec = sfwb.load(D("vae_joint") .. "/last.pth"), sfwb.load(D("vae_dec") .. "/last.pth")
  local same_enc, moved = true, 0
  for k, v in pairs(joint) do
    local d = (v - dec[k]):abs():max():item()
    if k:match("^encoder%.") or k:match("^conv1%.") then same_enc = same_enc and d == 0 end
    if k:match("^decoder%.") and d > 0 then moved = moved + 1 end
  end
  T.check(same_enc, "the decoder phase leaves every encoder weight as the joint phases left it")
  T.check(moved > 5, "the decoder's weights move")
  -- killed in the middle of the decoder phase (after step 4's save), run again: the same weights as straight
  local c = cfg("vae_resumed", 3, 4)
  T.raises(function() VAE.train(c) end, "interrupted")
  c.progress = nil
  VAE.train(c)
  local res = sfwb.load(D("vae_resumed") .. "/last.pth")
  local exact = true
  for k, v in pairs(dec) do exact = exact and (v - res[k]):abs():max():item() == 0 end
  T.check(exact, "resumed inside the decoder phase = uninterrupted")
  local bad = cfg("vae_resumed", 3)
  bad.steps = 3
  T.raises(function() VAE.train(bad) end, "decoder phase began after 2 steps")
  -- the difference term adds to the reconstruction loss, which it returns unchanged
  local V = sfwb.vae_train.new(sfwb.load(D("vae_dec") .. "/last.pth"))
  local x = VAE.batch(3, 0, 1, 5, 9, 32)
  local l0, r0 = VAE.decoder_loss(V, x, 0)
  local l1, r1 = VAE.decoder_loss(V, x, 3)
  T.close(r0, r1, 1e-7, "reconstruction term")
  T.check(l1:item() > l0:item() and math.abs(l0:item() - r0:item()) < 1e-9, "td adds, td 0 is the reconstruction")
end)

T.case("the VAE's training init: a latent is its last frame's image encoding, per-frame convs stay so", function()
  sfwb.manual_seed(2)
  local sd = VAE.init_for_training(sfwb.tiny.vae_state_dict({dim = 4, z_dim = 16, dim_mult = {1, 2, 4, 4},
    num_res_blocks = 1}))
  local V = sfwb.vae_train.new(sd)
  local x = sfwb.rand({1, 3, 5, 16, 16}) * 2 - 1
  local l = V:encode(x)
  T.close(l:narrow(2, 2, 1), V:encode(x:narrow(3, 5, 1)), 1e-6, "latent 1 = encode(frame 4)")
  T.eq(#VAE.per_frame(V:parameters()) > 10, true, "per-frame convs found")
  T.check(math.abs(VAE.lr_at(1, 0, 100, 10) - 0.1) < 1e-12, "warm-up")
  T.check(math.abs(VAE.lr_at(1, 50, 100, 10) - 1) < 1e-12, "plateau")
  T.check(math.abs(VAE.lr_at(1, 100, 100, 10) - 0.1) < 1e-12, "cosine tail ends at a tenth")
end)

T.done()
