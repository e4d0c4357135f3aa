-- sfwb/demo.lua — `make demo`: builds (once, in a cache folder) a tiny model set in the real formats,
-- then runs generate -> extract_attention -> compare end to end and prints where every output is.
-- SFWB_WAN_DIR / SFWB_CKPT (and optionally SFWB_CONFIG) point the same run at real weights.
local sfwb = require "sfwb"
local tiny = require "sfwb.tiny"

local M = {}

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
    print("usage: sfwb recipes/demo.lua [--help]\n\nBuilds a tiny model set (once) and runs generate -> extract_attention -> compare." ..
          "\nEnvironment: SFWB_CACHE (cache root), SFWB_WAN_DIR + SFWB_CKPT (+ SFWB_CONFIG) for real weights.")
    return 0
  end
  local real = os.getenv("SFWB_WAN_DIR")
  local cache = M.cache_dir()
  local P, frames, height, width, prompts
  if real and real ~= "" then
    P = {wan_dir = real, checkpoint = os.getenv("SFWB_CKPT"), config = os.getenv("SFWB_CONFIG")}
    if P.checkpoint == "" then P.checkpoint = nil end
    frames, height, width = 21, 480, 832
    prompts = {tiny.prompts[1]}
    say("sfwb %s demo on real weights: %s%s", sfwb.version, real, P.checkpoint and (" + " .. P.checkpoint) or "")
  else
    say("sfwb %s demo: tiny model set in %s", sfwb.version, cache)
    local built, secs
    P, built, secs = tiny.build(cache)
    if built then say("   built the tiny set in %.1fs (DiT safetensors, umT5 .pth + spm tokenizer, VAE .pth, Self-Forcing .pt)", secs)
    else say("   reusing the tiny set (delete %s/READY to rebuild)", cache) end
    frames, height, width = tiny.video.num_frames, tiny.video.height, tiny.video.width
    prompts = {tiny.prompts[1], tiny.prompts[2]}
  end
  local out = cache .. "/outputs"
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
  local g = stage("generate (recipes/generate.lua)", function() return require("sfwb.recipes.generate").main(args(gen)) end)

  local ex = {"--output_dir", out .. "/attention", "--num_frames", frames, "--seed", 42, "--prompt", prompts[1],
              "--layers", real and "0,4,15,29" or "all", "--steps", "1", "--passes", "denoise", "--what", "logits"}
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
  if c then
    say("compare     %s/compare/compare.json   PSNR %s dB, latent MSE %.4g", out,
        c.identical and "inf" or string.format("%.2f", c.psnr), c.latent_mse)
    say("figure      %s/compare/summary.png", out)
    say("figure      %s/compare/attention_diff.png", out)
  end
  say("\ndemo done in %.1fs", sfwb.time() - t0)
  return 0
end

return M
