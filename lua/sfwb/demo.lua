-- sfwb/demo.lua — `make demo`: generate -> extract_attention -> compare end to end on the trained toy world
-- shipped in assets/toy_world (bouncing balls: recipes/toy_world.lua trained it; the originals' file layout),
-- measures the generated videos against their prompts, and prints where every output is.
-- --tiny runs the same on a tiny random model set in the real formats (built once in a cache folder);
-- SFWB_WAN_DIR / SFWB_CKPT (and optionally SFWB_CONFIG) point the same run at real weights.
local sfwb = require "sfwb"
local tiny = require "sfwb.tiny"

local M = {}

-- the shipped toy world: assets/toy_world beside the lua/ folder this file is in (or $SFWB_TOY_WORLD)
function M.toy_world_dir()
  local env = os.getenv("SFWB_TOY_WORLD")
  if env and env ~= "" then return env end
  local here = package.searchpath("sfwb.demo", package.path)
  if not here then return nil end
  local root = here:gsub("/lua/sfwb/demo%.lua$", "")
  for _, d in ipairs({root .. "/assets/toy_world", root .. "/../assets/toy_world"}) do
    if sfwb.fs.stat(d .. "/checkpoints/self_forcing_dmd.pt") then return d end
  end
  return nil
end

-- the toy world's measurements of a generated video (decoded from its saved latents): balls by colour,
-- direction and smoothness against the prompt (sfwb.toy_world, docs/toy_world.md)
local function measure_outputs(outputs, vae_path, prompts)
  local W = sfwb.toy_world
  local vae = sfwb.vae.load(vae_path)
  local res = {}
  local i = 0
  for _, f in ipairs(outputs) do
    if f:match("%.latents%.safetensors$") then
      i = i + 1
      local lat = sfwb.load(f).latents
      local v = vae:decode(lat:unsqueeze(1))
      if type(v) == "table" then v = v[1] end
      if v:dim() == 5 then v = v:select(1, 1) end
      res[#res + 1] = W.measure(v, prompts[i])
    end
  end
  return res, W.summarize(res)
end

local function say(fmt, ...) io.write(string.format(fmt, ...), "\n") io.flush() end

function M.cache_dir()
  local c = os.getenv("SFWB_CACHE")
  if c and c ~= "" then return c .. "/demo" end
  return (os.getenv("HOME") or "/tmp") .. "/.cache/sfwb/demo"
end

local function stage(name, fn)
  say("\n== %s", name)
  local t = sfwb.time()
  local ok, code, res = xpcall(fn, debug.traceback)
  if not ok then error(name .. " failed: " .. tostring(code), 0) end
  if code ~= 0 then error(name .. " exited with " .. tostring(code), 0) end
  say("   (%s: %.1fs)", name, sfwb.time() - t)
  return res
end

function M.main(argv)
  local t0 = sfwb.time()
  if argv and (argv[1] == "-h" or argv[1] == "--help") then
    print("usage: sfwb recipes/demo.lua [--tiny | --toy_world DIR] [--out DIR] [--help]\n\nRuns generate -> extract_attention -> compare on the trained toy world" ..
          " (assets/toy_world), or with --tiny on a tiny random model set built once." ..
          "\nEnvironment: SFWB_CACHE (cache root), SFWB_TOY_WORLD (another bundle from recipes/toy_world.lua: DIR/bundle)," ..
          "\nSFWB_WAN_DIR + SFWB_CKPT (+ SFWB_CONFIG) for real weights.")
    return 0
  end
  local real = os.getenv("SFWB_WAN_DIR")
  local cache = M.cache_dir()
  local tiny_only, toy_arg, out_arg = false, nil, nil
  local ai = 1
  while argv and argv[ai] do
    local a, nxt = argv[ai], argv[ai + 1]
    if a == "--tiny" then tiny_only = true
    elseif a == "--toy_world" and nxt then toy_arg = nxt; ai = ai + 1
    elseif a == "--out" and nxt then out_arg = nxt; ai = ai + 1
    else error("demo: unknown argument " .. tostring(a) .. " (see --help)", 0) end
    ai = ai + 1
  end
  local toy = not tiny_only and (toy_arg or M.toy_world_dir())
  if toy and not sfwb.fs.stat(toy .. "/checkpoints/self_forcing_dmd.pt") then
    error("demo: " .. toy .. " is not a toy-world bundle (no checkpoints/self_forcing_dmd.pt; recipes/toy_world.lua writes DIR/bundle)", 0)
  end
  local P, frames, height, width, prompts
  if real and real ~= "" then
    P = {wan_dir = real, checkpoint = os.getenv("SFWB_CKPT"), config = os.getenv("SFWB_CONFIG")}
    if P.checkpoint == "" then P.checkpoint = nil end
    frames, height, width = 21, 480, 832
    prompts = {tiny.prompts[1]}
    say("sfwb %s demo on real weights: %s%s", sfwb.version, real, P.checkpoint and (" + " .. P.checkpoint) or "")
  elseif toy then
    local B = require "sfwb.recipes.toy_world_bundle"
    P = B.paths(toy)
    frames, height, width = 9, sfwb.toy_world.size, sfwb.toy_world.size
    prompts = {}
    for line in io.lines(P.prompts) do if line ~= "" and #prompts < 8 then prompts[#prompts + 1] = line end end
    say("sfwb %s demo on the trained toy world (bouncing balls): %s", sfwb.version, toy)
    say("   a Self-Forcing student, 4 steps, 9 latent frames = 33 frames of 64 x 64 (recipes/toy_world.lua trained it)")
  else
    say("sfwb %s demo: tiny model set in %s", sfwb.version, cache)
    local built, secs
    P, built, secs = tiny.build(cache)
    if built then say("   built the tiny set in %.1fs (DiT safetensors, umT5 .pth + spm tokenizer, VAE .pth, Self-Forcing .pt)", secs)
    else say("   reusing the tiny set (delete %s/READY to rebuild)", cache) end
    frames, height, width = tiny.video.num_frames, tiny.video.height, tiny.video.width
    prompts = {tiny.prompts[1], tiny.prompts[2]}
  end
  local out = out_arg or (cache .. "/outputs")
  sfwb.fs.mkdir(out)
  local common = {"--wan_dir", P.wan_dir}
  if P.config then common[#common + 1] = "--config_path"; common[#common + 1] = P.config end
  local function args(extra)
    local a = {}
    for _, v in ipairs(common) do a[#a + 1] = v end
    for _, v in ipairs(extra) do a[#a + 1] = tostring(v) end
    return a
  end
  local size = {"--height", height, "--width", width}
  local ck = P.checkpoint and {"--checkpoint_path", P.checkpoint, "--use_ema"} or {"--no_checkpoint"}

  local gen = {"--output_folder", out .. "/generate", "--num_output_frames", frames, "--seed", 0}
  for _, p in ipairs(prompts) do gen[#gen + 1] = "--prompt"; gen[#gen + 1] = p end
  for _, v in ipairs(size) do gen[#gen + 1] = v end
  for _, v in ipairs(ck) do gen[#gen + 1] = v end
  if toy then gen[#gen + 1] = "--save_latents" end
  local g = stage("generate (recipes/generate.lua)", function() return require("sfwb.recipes.generate").main(args(gen)) end)

  local measured
  if toy then
    local per, sum = measure_outputs(g.outputs, P.wan_dir .. "/Wan2.1_VAE.pth", prompts)
    say("\n== measured (sfwb.toy_world.measure: the prompted balls by colour, their direction and smoothness)")
    for i, r in ipairs(per) do
      say("   %-58s frames right %3.0f%%  direction %s  smooth %s", prompts[i], 100 * r.frames_ok,
          r.direction_ok and "yes" or "no", r.smooth and "yes" or "no")
    end
    measured = sum
  end

  local ex = {"--output_dir", out .. "/attention", "--num_frames", frames, "--seed", 42, "--prompt", prompts[1],
              "--layers", real and "0,4,15,29" or "all", "--steps", toy and "1,4" or "1", "--passes", "denoise",
              "--what", toy and "probs" or "logits"}
  for _, v in ipairs(size) do ex[#ex + 1] = v end
  for _, v in ipairs(ck) do ex[#ex + 1] = v end
  local e = stage("extract_attention (recipes/extract_attention.lua)",
                  function() return require("sfwb.recipes.extract_attention").main(args(ex)) end)

  local c
  if P.checkpoint then
    local cmp = {"--output_dir", out .. "/compare", "--num_frames", frames, "--seed", 42, "--prompt", prompts[1],
                 "--ema_vs_raw", P.checkpoint, "--layers", real and "0,15,29" or "all"}
    for _, v in ipairs(size) do cmp[#cmp + 1] = v end
    c = stage("compare EMA vs raw (recipes/compare.lua)", function() return require("sfwb.recipes.compare").main(args(cmp)) end)
  else
    say("\n== compare skipped: no checkpoint (set SFWB_CKPT)")
  end

  say("\n== outputs")
  say("videos      %s/generate/  (%d files)", out, #g.outputs)
  for _, f in ipairs(g.outputs) do say("            %s", f) end
  say("attention   %s", e.path)
  say("            (tensors + provenance in the safetensors metadata; read with sfwb.load)")
  for i = 2, #e.files do say("%-11s %s", e.files[i]:match("%.png$") and "figure" or "numbers", e.files[i]) end
  if measured then
    say("measured    frames right %.0f%%, directions %.0f%%, smooth %.0f%% of %d videos (the issue's marks: 80, 70, -)",
        100 * measured.frames_ok, 100 * measured.direction, 100 * measured.smooth, #prompts)
  end
  if c then
    say("compare     %s/compare/compare.json   PSNR %s dB, latent MSE %.4g", out,
        c.identical and "inf" or string.format("%.2f", c.psnr), c.latent_mse)
    say("figure      %s/compare/summary.png", out)
    say("figure      %s/compare/attention_diff.png", out)
  end
  say("\ndemo done in %.1fs", sfwb.time() - t0)
  return 0, {measured = measured, generate = g, attention = e, compare = c}
end

return M
