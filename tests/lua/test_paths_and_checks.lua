-- test_paths_and_checks.lua — no path reaches a shell: every path option of the recipes and the trainer
-- takes quotes, `;`, `$()`, spaces and unicode (and nothing runs); the tiny demo set is the same on every
-- build (fixed sha256 of its files, and the same files from a second process whose table order differs);
-- the demo config trains as written; recipes check their outputs, fps, colormap, sizes and steps before work.
local T = require "sfwb.testing"
local C = require "sfwb.recipes.common"

local base = T.tmpdir("paths")
-- every character a shell would act on; `touch PWNED` would create base/PWNED if a shell ran it
local odd = base .. "/it's; $(touch PWNED) `touch PWNED` \"q\" ünï 日本"
sfwb.fs.mkdir(odd)
local function no_shell() T.check(sfwb.fs.stat(base .. "/PWNED") == nil and sfwb.fs.stat("PWNED") == nil, "no command ran") end

local P = require("sfwb.tiny").build(odd .. "/tiny")

-- sha256 of the tiny set's files: the weights are drawn in a fixed order from a fixed seed, so they are
-- the same on every build and machine (the tokenizer is compared between two builds: spm's own bytes)
local EXPECTED = {
  ["Wan2.1-T2V-tiny/Wan2.1_VAE.pth"] = "d470aa048af7bc6e2f903dd6dedf663eb4767c4c6adf8db0ee6c715dd99dc201",
  ["Wan2.1-T2V-tiny/config.json"] = "0ccad0a0ae7295f055f2bb0ec8d3fa42ae1ac57654f090d5f89655218f5f8247",
  ["Wan2.1-T2V-tiny/diffusion_pytorch_model.safetensors"] = "57ad60af1c224bcb835814c7af33c3b3fd1ef81592992fdaf5dc4195ee83a29d",
  ["Wan2.1-T2V-tiny/models_t5_umt5-xxl-enc-bf16.pth"] = "86c94f300350ae4b9ab4d612aa660e4ee939a6240dbfe90d507a51178b577fed",
  ["checkpoints/self_forcing_tiny.pt"] = "dae3daff6f03002e55f8c46509cdc4892e6cb9aebfaf470b9b8c8c4f19afb62a",
  ["prompts.txt"] = "154b891e627f7da98e41e727b43b14ca5dd8ac0b8589f1d03d13771d7be915d0",
}

local function hashes(dir)
  local out = {}
  local function walk(d, rel)
    for _, n in ipairs(sfwb.fs.listdir(d)) do
      local p = d .. "/" .. n
      if sfwb.fs.stat(p).kind == "dir" then walk(p, rel .. n .. "/")
      elseif n ~= "READY" and n ~= "spm_train.log" then out[rel .. n] = sfwb.fs.sha256(p) end
    end
  end
  walk(dir, "")
  return out
end

T.case("the tiny set: fixed sha256, identical from a second process", function()
  local mine = hashes(odd .. "/tiny")
  for name, h in pairs(EXPECTED) do T.eq(mine[name], h, name) end
  -- a second process: another string-hash seed, so another pairs() order
  local other = base .. "/tiny2"
  local script = base .. "/build.lua"
  local f = io.open(script, "w")
  f:write(string.format("package.path = %q\nrequire('sfwb.tiny').build(%q)\n", package.path, other))
  f:close()
  T.eq(sfwb.fs.run({arg[-1], script}), 0, "second build")
  local theirs = hashes(other)
  local n = 0
  for name, h in pairs(mine) do
    if not name:match("%.yaml$") then T.eq(theirs[name], h, name .. " identical") n = n + 1 end
  end
  T.check(n >= 9, "all files compared")
  no_shell()
end)

T.case("train_dmd on the demo config as written; odd paths for config, logdir and resume", function()
  local TR = require "sfwb.recipes.train_dmd"
  local logdir = odd .. "/logs ü"
  local cwd_independent = {"--config_path", P.config, "--logdir", logdir, "--steps", "4"}
  T.eq(TR.main(cwd_independent), 0)
  T.check(sfwb.fs.stat(logdir .. "/checkpoint_model_000004/model.pt"), "checkpoint at log_iters (4)")
  T.check(sfwb.fs.stat(logdir .. "/metrics.jsonl"), "metrics.jsonl")
  T.eq(TR.main({"--config_path", P.config, "--logdir", logdir, "--steps", "4", "--resume", logdir .. "/checkpoint_model_000004"}), 0)
  T.check(sfwb.fs.stat(logdir .. "/checkpoint_model_000008/training_state.pt"), "resumed run saved at step 8")
  T.raises(function() TR.main({"--config_path", P.config, "--steps", "-1"}) end, "--steps must be a whole number >= 0")
  -- an unusable logdir fails before any model is loaded
  local file = odd .. "/a file"
  io.open(file, "w"):close()
  T.raises(function() TR.main({"--config_path", P.config, "--logdir", file, "--steps", "1"}) end, "--logdir")
  no_shell()
end)

T.case("recipes: odd output folders work; bad options fail before any compute", function()
  local G = require "sfwb.recipes.generate"
  local out = odd .. "/videos"
  local code, s = G.main({"--wan_dir", P.wan_dir, "--config_path", P.config, "--checkpoint_path", P.checkpoint,
    "--prompt", "a bird", "--num_output_frames", "3", "--height", "32", "--width", "48", "--output_folder", out, "--quiet"})
  T.eq(code, 0)
  T.check(sfwb.fs.stat(s.outputs[1]), "video written under the odd folder")
  local EX = require "sfwb.recipes.extract_attention"
  local code2 = EX.main({"--wan_dir", P.wan_dir, "--config_path", P.config, "--no_checkpoint", "--prompt", "x",
    "--num_frames", "3", "--height", "32", "--width", "48", "--layers", "0", "--output_dir", odd .. "/attn"})
  T.eq(code2, 0)
  no_shell()
  -- each of these must fail in well under the time a model load takes, naming the option
  local file = odd .. "/not a folder"
  io.open(file, "w"):close()
  local gen = {"--wan_dir", P.wan_dir, "--no_checkpoint", "--prompt", "x", "--num_output_frames", "3",
               "--height", "32", "--width", "48", "--quiet"}
  local function with(t, extra)
    local a = {}
    for _, v in ipairs(t) do a[#a + 1] = v end
    for _, v in ipairs(extra) do a[#a + 1] = v end
    return a
  end
  local cases = {
    {G, with(gen, {"--output_folder", file}), "--output_folder"},
    {G, with(gen, {"--output_folder", out, "--fps", "0"}), "--fps must be a number > 0"},
    {G, with(gen, {"--output_folder", out, "--height", "4"}), "--height must be a positive multiple of 16"},
    {G, with(gen, {"--output_folder", out, "--width", "0"}), "--width must be"},
    {G, with(gen, {"--output_folder", out, "--num_output_frames", "0"}), "--num_output_frames must be"},
    {EX, {"--wan_dir", P.wan_dir, "--no_checkpoint", "--prompt", "x", "--cmap", "nope", "--output_dir", out}, "--cmap: unknown colormap 'nope'"},
    {EX, {"--wan_dir", P.wan_dir, "--no_checkpoint", "--prompt", "x", "--steps", "0", "--output_dir", out}, "--steps"},
    {EX, {"--wan_dir", P.wan_dir, "--no_checkpoint", "--prompt", "x", "--output_dir", file}, "--output_dir"},
  }
  for _, c in ipairs(cases) do
    local t0 = sfwb.time()
    T.raises(function() c[1].main(c[2]) end, c[3])
    T.check(sfwb.time() - t0 < 0.5, "failed before loading: " .. c[3])
  end
end)

T.case("sfwb.fs: folders, listing, hashing and programs without a shell", function()
  local d = odd .. "/a/b/c"
  T.eq(sfwb.fs.mkdir(d), d)
  T.eq(sfwb.fs.stat(d).kind, "dir")
  sfwb.fs.mkdir(d) -- exists: fine
  local f = io.open(d .. "/x y", "w") f:write("abc") f:close()
  T.eq(sfwb.fs.sha256(d .. "/x y"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
  T.eq(table.concat(sfwb.fs.listdir(d), "|"), "x y")
  T.raises(function() sfwb.fs.mkdir(d .. "/x y/z") end, "cannot create folder")
  T.eq(sfwb.fs.run({"sh", "-c", "exit 3"}), 3)
  T.eq(sfwb.fs.run({"touch", odd .. "/$(touch PWNED)"}), 0)
  T.check(sfwb.fs.stat(odd .. "/$(touch PWNED)"), "the argument is a file name")
  sfwb.fs.rmtree(odd .. "/a")
  T.check(sfwb.fs.stat(odd .. "/a") == nil, "rmtree")
  no_shell()
end)

sfwb.fs.rmtree(base)
T.done()
