-- test_recipes.lua — the recipes end to end on the tiny model set (built by sfwb.tiny in the real
-- formats): outputs exist, PNGs decode, numbers are finite, provenance is recorded, an A/B of identical
-- weights reports zero difference and of different weights a non-zero one.
local sfwb = require "sfwb"
local T = require "sfwb.testing"

local ok = pcall(function() return sfwb.wan.load and sfwb.t5.load and sfwb.vae.load and sfwb.scheduler.flow_match end)
if not ok then
  print("SKIP: needs sfwb.wan, sfwb.t5, sfwb.vae and sfwb.scheduler on this build")
  T.done()
end

local json = require "sfwb.json"
local C = require "sfwb.recipes.common"
local root = T.tmpdir("recipes")
local P = require("sfwb.tiny").build(root .. "/tiny")
local SIZE = {"--height", "32", "--width", "48"}

local function args(t)
  local a = {"--wan_dir", P.wan_dir, "--config_path", P.config}
  for _, v in ipairs(t) do a[#a + 1] = tostring(v) end
  for _, v in ipairs(SIZE) do a[#a + 1] = v end
  return a
end

local function finite(x) return type(x) == "number" and x == x and x ~= math.huge and x ~= -math.huge end
local function png_ok(path)
  local w, h = sfwb.plot.size(path)
  return w > 0 and h > 0
end

T.case("every recipe answers --help", function()
  for _, r in ipairs({"generate", "extract_attention", "compare", "train", "generate_ode_pairs"}) do
    T.eq(require("sfwb.recipes." .. r).main({"--help"}), 0, r)
  end
  T.raises(function() require("sfwb.recipes.generate").main({"--frobnicate"}) end, "unknown option")
end)

T.case("sha256 of weights: right, cached on disk, recomputed when the file changes", function()
  local f = root .. "/h.bin"
  local h = io.open(f, "wb") h:write("abc") h:close()
  T.eq(C.sha256(f), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
  local g = root .. "/h2.bin"
  h = io.open(g, "wb") h:write("abc") h:close()
  T.eq(C.sha256(g), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
  h = io.open(g, "wb") h:write("abcd") h:close()
  os.execute("touch -d '2001-01-01' '" .. g .. "'")
  package.loaded["sfwb.recipes.common"] = nil -- a new process: only the disk cache survives
  local C2 = require "sfwb.recipes.common"
  T.eq(C2.sha256(g), "88d4266fd4e6338d13b845fcf289579d209c897823b9217da3e161936f031589")
  T.eq(C2.sha256(f), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
end)

T.case("generate: videos, latents, timings", function()
  local out = root .. "/gen"
  local code, s = require("sfwb.recipes.generate").main(args({"--checkpoint_path", P.checkpoint, "--use_ema",
    "--prompt", "a red bird", "--num_output_frames", 6, "--output_folder", out, "--save_latents", "--quiet"}))
  T.eq(code, 0)
  T.eq(#s.outputs, 2)
  T.check(C.exists(s.outputs[1]) or os.execute("test -d '" .. s.outputs[1] .. "'"), "video written: " .. s.outputs[1])
  local lat = sfwb.load(s.outputs[2])
  T.eq(lat.latents:size(1), 6)
  T.check(finite(lat.latents:abs():max():item()), "latents finite")
  local g = json.read(out .. "/generate.json")
  T.check(finite(g.runs[1].timings.denoise) and g.runs[1].timings.denoise > 0, "denoise time recorded")
  T.eq(g.provenance.checkpoint_key, "generator_ema")
  T.eq(#g.provenance.checkpoint_sha256, 64)
end)

T.case("generate: a config without denoising_step_list runs the multi-step sampler (inference.py)", function()
  local cfgp = root .. "/multistep.yaml"
  local f = assert(io.open(cfgp, "w"))
  f:write("num_frame_per_block: 3\nindependent_first_frame: false\ntimestep_shift: 5.0\n")
  f:close()
  local out = root .. "/gen_ms"
  local base = {"--wan_dir", P.wan_dir, "--config_path", cfgp, "--no_checkpoint", "--prompt", "a red bird",
                "--num_output_frames", "3", "--output_folder", out, "--quiet", "--num_inference_steps", "3",
                "--height", "32", "--width", "48"}
  T.raises(function() require("sfwb.recipes.generate").main(base) end, "guidance_scale")
  local a = {table.unpack(base)}
  a[#a + 1] = "--guidance_scale"; a[#a + 1] = "2.0"
  local ext = root .. "/ext.txt"
  f = assert(io.open(ext, "w")); f:write("a red bird flying over a long calm sea\n"); f:close()
  a[#a + 1] = "--extended_prompt_path"; a[#a + 1] = ext
  local code, s = require("sfwb.recipes.generate").main(a)
  T.eq(code, 0)
  T.check(s.sampler:find("CausalDiffusionPipeline", 1, true), "sampler: " .. tostring(s.sampler))
  T.check(s.sampler:find("steps=3", 1, true), "steps recorded")
  T.eq(s.runs[1].model_prompt, "a red bird flying over a long calm sea")
  T.check(C.exists(s.outputs[1]) or os.execute("test -d '" .. s.outputs[1] .. "'"), "video written")
  local bad = {table.unpack(a)}
  f = assert(io.open(ext, "w")); f:write("one\ntwo\n"); f:close()
  T.raises(function() require("sfwb.recipes.generate").main(bad) end, "2 lines for 1 prompts")
end)

T.case("generate_ode_pairs writes the original's LMDB; train.lua trains the ode objective on it", function()
  local lm = root .. "/ode_lmdb"
  local caps = root .. "/caps.txt"
  local f = assert(io.open(caps, "w")); f:write("a red bird\na blue car\na red bird\n"); f:close()
  local code, r = require("sfwb.recipes.generate_ode_pairs").main({"--caption_path", caps, "--output_folder", lm,
    "--wan_dir", P.wan_dir, "--num_steps", "4", "--keep", "0,2,-1", "--num_frames", "2", "--height", "32",
    "--width", "48", "--quiet"})
  T.eq(code, 0)
  T.eq(r.rows, 2)                                             -- the duplicate prompt is skipped
  local ds = sfwb.data.lmdb(lm)
  T.eq(#ds, 2)
  T.eq(table.concat(ds[1].ode_latent:shape(), "x"), "3x2x16x4x6")
  T.eq(ds[2].prompts, "a blue car")
  local cfgp = root .. "/ode.yaml"
  f = assert(io.open(cfgp, "w"))
  f:write("trainer: ode\ndistribution_loss: ode\ngenerator_type: causal\nnum_frame_per_block: 1\n",
          "denoising_step_list: [1000, 500, 0]\nwarp_denoising_step: false\nbatch_size: 1\nlr: 1.0e-5\n",
          "data_path: ", lm, "\nwan_models_dir: ", P.wan_dir:gsub("/[^/]*$", ""), "\nseed: 3\n",
          "model_kwargs:\n  model_name: ", P.wan_dir:match("[^/]*$"), "\n  timestep_shift: 5.0\n")
  f:close()
  local code2, tr = require("sfwb.recipes.train").main({"--config_path", cfgp, "--steps", "2", "--no_save"})
  T.eq(code2, 0)
  T.eq(tr.step_count, 2)
  T.check(tr.log[2].generator_loss == tr.log[2].generator_loss, "finite loss")
  -- the DMD recipe refuses a config that names another objective
  T.raises(function() require("sfwb.recipes.train_dmd").main({"--config_path", cfgp, "--steps", "1"}) end,
           "names trainer: ode")
end)

T.case("generate --png writes a PNG folder; prompts from a file", function()
  local out = root .. "/genpng"
  local code, s = require("sfwb.recipes.generate").main(args({"--no_checkpoint", "--data_path", P.prompts,
    "--num_output_frames", 3, "--output_folder", out, "--png", "--quiet", "--save_with_index"}))
  T.eq(code, 0)
  T.eq(#s.outputs, 4, "one per prompt in the file")
  T.check(s.outputs[1]:match("/0%-0_regular$") ~= nil, "inference.py naming with --save_with_index: " .. s.outputs[1])
  T.check(png_ok(s.outputs[1] .. "/00000.png"), "first frame decodes")
end)

T.case("generate a long video with a windowed cache and sink frames", function()
  local code, s = require("sfwb.recipes.generate").main(args({"--no_checkpoint", "--prompt", "a long ride",
    "--num_output_frames", 12, "--local_attn_size", 6, "--sink_size", 3, "--output_folder", root .. "/long", "--quiet"}))
  T.eq(code, 0)
  T.eq(s.runs[1].latent_frames, 12); T.eq(s.runs[1].video_frames, 45)
  T.eq(s.settings.local_attn_size, 6)
end)

T.case("generate --bidirectional (joint denoising, the 14B path)", function()
  local code, s = require("sfwb.recipes.generate").main(args({"--checkpoint_path", P.checkpoint, "--bidirectional",
    "--prompt", "a red bird", "--num_output_frames", 5, "--output_folder", root .. "/bidir", "--quiet"}))
  T.eq(code, 0)
  T.eq(s.runs[1].latent_frames, 5); T.eq(s.runs[1].video_frames, 17)
  T.check(finite(s.runs[1].timings.denoise), "timed")
end)

T.case("generate --image (I2V: the image pre-fills the cache as the first latent frame)", function()
  local img = sfwb.zeros({32, 48, 3}, {dtype = "u8"})
  img:narrow(2, 1, 24):fill_(200)
  sfwb.image.write(root .. "/first.png", img)
  local code, s = require("sfwb.recipes.generate").main(args({"--no_checkpoint", "--prompt", "a red bird",
    "--image", root .. "/first.png", "--independent_first_frame", "--num_output_frames", 4, "--save_latents",
    "--output_folder", root .. "/i2v", "--quiet"}))
  T.eq(code, 0)
  T.eq(s.runs[1].latent_frames, 4); T.eq(s.runs[1].video_frames, 13)
  local lat = sfwb.load(s.outputs[2]).latents
  local vae = sfwb.vae.load(P.wan_dir .. "/Wan2.1_VAE.pth")
  local x = (sfwb.image.read(root .. "/first.png"):float() / 127.5 - 1):permute({3, 1, 2}):contiguous():view({1, 3, 1, 32, 48})
  T.close(lat:narrow(1, 1, 1), vae:encode(x):select(1, 1), 1e-6, "first latent frame is the encoded image")
  -- another size is resized bicubic (upstream's image2video rule) before the encode
  local code2, s2 = require("sfwb.recipes.generate").main({"--wan_dir", P.wan_dir, "--no_checkpoint", "--prompt", "x",
    "--image", root .. "/first.png", "--independent_first_frame", "--num_output_frames", 4, "--height", "64", "--width", "96",
    "--save_latents", "--output_folder", root .. "/i2v2", "--quiet"})
  T.eq(code2, 0)
  local big = sfwb.clip.resize_bicubic(x:view({3, 32, 48}), 64, 96):view({1, 3, 1, 64, 96})
  T.close(sfwb.load(s2.outputs[2]).latents:narrow(1, 1, 1), vae:encode(big):select(1, 1), 1e-6, "resized image encoded")
end)

T.case("a missing checkpoint is an error, never a fallback", function()
  T.raises(function()
    require("sfwb.recipes.generate").main(args({"--checkpoint_path", root .. "/nope.pt", "--prompt", "x",
      "--num_output_frames", 3, "--output_folder", root .. "/gen2", "--quiet"}))
  end, "nope.pt")
end)

T.case("extract_attention: one rollout, all layers, provenance, figures", function()
  local out = root .. "/att"
  local code, r = require("sfwb.recipes.extract_attention").main(args({"--checkpoint_path", P.checkpoint,
    "--use_ema", "--prompt", "a red bird", "--num_frames", 6, "--layers", "all", "--steps", "1,4",
    "--passes", "denoise,refresh", "--output_dir", out, "--seed", 5}))
  T.eq(code, 0)
  local meta = C.safetensors_metadata(r.path)
  T.eq(meta.prompt, "a red bird"); T.eq(meta.seed, "5"); T.eq(meta.ema, "true")
  T.eq(#meta.weights_sha256, 64); T.eq(#meta.checkpoint_sha256, 64)
  T.eq(meta.sfwb_version, sfwb.version)
  T.eq(json.decode(meta.chunk_sizes)[2], 3)
  T.eq(#json.decode(meta.layers), 4)
  T.eq(meta.what, "logits"); T.eq(meta.reduce, "frame")
  local D = sfwb.load(r.path)
  local A = D["attn.layer3.step5.refresh"]
  T.check(D["attn.layer1.step4.denoise"] ~= nil, "step 4 denoise kept")
  T.eq(table.concat(A:shape(), "x"), "4x6x6")
  local v = A:totable()
  T.check(v[1][1][4] ~= v[1][1][4], "a key a query cannot see is NaN")
  T.check(finite(v[1][6][1]), "visible cells finite")
  T.eq(table.concat(D["last_chunk.layer0.step1.denoise"]:shape(), "x"), "4x6")
  local pngs = 0
  for _, f in ipairs(r.files) do
    if f:match("%.png$") then T.check(png_ok(f), "PNG decodes: " .. f) pngs = pngs + 1 end
  end
  T.eq(#r.stats, 12, "stats per layer and capture")
  local st = r.stats[1]
  T.check(finite(st.head_mean.first) and finite(st.head_mean.sink) and finite(st.diag_mean), "stats finite")
  T.near(st.head_mean.sink, st.head_mean.first - st.head_mean.middle, 1e-6)
  T.eq(#st.heads, 4)
  T.eq(pngs, 4 * 3 * 2 + 2, "per (layer, step 1 + 4 + refresh): head grid + profile; mosaic + layer profile")
end)

T.case("extract_attention: several prompts, one rollout and one folder each, an index", function()
  local code, r = require("sfwb.recipes.extract_attention").main(args({"--no_checkpoint", "--prompt", "a red bird",
    "--prompt", "a blue car", "--num_frames", 3, "--layers", "0", "--output_dir", root .. "/att_multi"}))
  T.eq(code, 0)
  T.eq(#r.runs, 2)
  local idx = json.read(r.index)
  T.eq(idx.runs[2].prompt, "a blue car")
  T.eq(C.safetensors_metadata(idx.runs[2].path).prompt, "a blue car")
  T.check(idx.runs[1].folder ~= idx.runs[2].folder, "separate folders")
end)

T.case("extract_attention: mass with query_mean reduction, per-layer scale", function()
  local out = root .. "/att_qm"
  local code, r = require("sfwb.recipes.extract_attention").main(args({"--no_checkpoint", "--prompt", "a red bird",
    "--num_frames", 6, "--layers", "1,2", "--what", "mass", "--reduce", "query_mean", "--scale", "layer",
    "--output_dir", out}))
  T.eq(code, 0)
  local D = sfwb.load(r.path)
  local A = D["attn.layer2.step1.denoise"]
  T.eq(A:dim(), 2, "[heads, Fk]")
  T.eq(A:size(2), 6)
  local meta = C.safetensors_metadata(r.path)
  T.eq(meta.ema, "false"); T.eq(meta.checkpoint, ""); T.eq(meta.reduce, "query_mean")
  for _, f in ipairs(r.files) do if f:match("%.png$") then T.check(png_ok(f), f) end end
end)

T.case("extract_attention: cross-attention probabilities over the text tokens", function()
  local code, r = require("sfwb.recipes.extract_attention").main(args({"--no_checkpoint", "--prompt", "a red bird",
    "--num_frames", 3, "--layers", "0", "--attn", "cross", "--what", "probs", "--output_dir", root .. "/att_x"}))
  T.eq(code, 0)
  local A = sfwb.load(r.path)["attn.layer0.step1.denoise"]
  T.eq(table.concat(A:shape(), "x"), "4x3x512")
  T.near(A:sum(3):mean():item(), 1.0, 1e-4, "probabilities over the 512 text tokens sum to 1")
end)

T.case("pipeline: block-by-block decode equals the one-shot decode; prompts through T5", function()
  local m = sfwb.wan.load(P.wan_dir, {causal = true, num_frame_per_block = 3})
  local t5 = sfwb.t5.load(P.wan_dir .. "/models_t5_umt5-xxl-enc-bf16.pth", {tokenizer = P.wan_dir .. "/google/umt5-xxl"})
  local vae = sfwb.vae.load(P.wan_dir .. "/Wan2.1_VAE.pth")
  local p = sfwb.pipeline.causal{generator = m, text_encoder = t5, vae = vae, num_frame_per_block = 3}
  local a = p:generate{prompts = {"a red bird"}, num_frames = 6, latent_size = {4, 6}, seed = 3}
  local blocks = 0
  local b = p:generate{prompts = {"a red bird"}, num_frames = 6, latent_size = {4, 6}, seed = 3, decode = "block",
                       on_block = function(i, lat, rec) blocks = blocks + 1 T.check(rec.video ~= nil, "block video") end}
  T.eq(blocks, 2)
  T.eq(table.concat(a.video:shape(), "x"), "1x21x3x32x48")
  T.eq((a.latents - b.latents):abs():max():item(), 0, "same latents")
  T.close(b.video, a.video, 1e-5, "streamed decode")
end)

T.case("compare: identical weights -> zero difference; EMA vs raw -> non-zero", function()
  local cmp = require("sfwb.recipes.compare")
  local code, same = cmp.main(args({"--a", "base", "--b", "base", "--num_frames", 3,
    "--layers", "0,3", "--output_dir", root .. "/cmp_same"}))
  T.eq(code, 0)
  T.eq(same.identical, true)
  T.eq(same.latent_mse, 0); T.eq(same.pixel_mse, 0)
  for _, row in ipairs(same.attention.layers) do T.eq(row.max_abs_diff, 0, "layer " .. row.layer) end
  local code2, diff = cmp.main(args({"--ema_vs_raw", P.checkpoint, "--num_frames", 3, "--layers", "0,3",
    "--output_dir", root .. "/cmp_diff"}))
  T.eq(code2, 0)
  T.eq(diff.identical, false)
  T.check(diff.latent_mse > 0 and finite(diff.latent_mse), "latent MSE > 0")
  T.check(finite(diff.psnr), "PSNR finite")
  for _, fr in ipairs(diff.video_frames) do T.check(finite(fr.pixel_mse), "per-frame MSE finite") end
  T.check(diff.attention.layers[1].mean_abs_diff > 0, "attention differs")
  local j = json.read(root .. "/cmp_diff/compare.json")
  T.eq(j.a.provenance.checkpoint_key, "generator"); T.eq(j.b.provenance.checkpoint_key, "generator_ema")
  for _, f in ipairs({"summary.png", "psnr_per_frame.png", "latent_mse_per_frame.png", "attention_diff.png"}) do
    T.check(png_ok(root .. "/cmp_diff/" .. f), f)
  end
end)

T.done()
