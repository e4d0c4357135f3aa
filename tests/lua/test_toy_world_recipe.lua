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
  -- the stages up to the ODE init (Self Forcing's and the baselines' 3x long-video sampling is the slow part;
  -- `--mini` runs them all in ~80 s of CPU), and teacher forcing, which must say why it is pending
  T.eq(R.main({"--out", out, "--mini", "--stages", "data,text,vae,latents,teacher,ode_pairs,ode_init,teacher_forcing"}), 0)
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
  for _, name in ipairs({"data", "text", "vae", "latents", "teacher", "ode_pairs", "ode_init"}) do
    T.eq(j.stages[name].status, "done", name)
  end
  T.eq(#j.videos.ode_init, 2, "ODE-init videos")
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

T.case("--set overrides preset numbers and refuses unknown keys", function()
  local p = R.apply_overrides(R.presets.quick, "teacher.steps=400,vae.lr=0.002")
  T.eq(p.teacher.steps, 400)
  T.eq(p.vae.lr, 0.002)
  T.eq(R.presets.quick.teacher.steps ~= 400, true, "the preset itself is untouched")
  T.raises(function() R.apply_overrides(R.presets.quick, "teacher.stepz=4") end, "unknown preset key 'teacher.stepz'")
  T.raises(function() R.apply_overrides(R.presets.quick, "teacher.steps=x") end, "not key.path=number")
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
