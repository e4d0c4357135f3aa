-- test_recipe_checks.lua — every recipe checks what it is given before it loads or computes anything:
-- configs (sfwb/recipes/schema.lua: a typo warned once, naming the key, the file and the nearest key; a
-- wrong type or an unsupported value an error naming the key and the file), output folders, sizes, frame,
-- sample and step counts, fps, colormaps, enumerated options, device and dtype. The Wan folder given
-- does not exist, so a recipe that got past its checks would fail loading it instead (never silently).
local T = require "sfwb.testing"
local check = require "sfwb.config_check"

local dir = T.tmpdir("recipe_checks")
local NOWAN = dir .. "/no such wan folder"
local file = dir .. "/a file, not a folder"
io.open(file, "w"):close()
local prompts = dir .. "/prompts.txt"
do local f = io.open(prompts, "w") f:write("a fox\n") f:close() end

local function write(name, text)
  local p = dir .. "/" .. name
  local f = io.open(p, "w")
  f:write(text)
  f:close()
  return p
end

-- runs fn with stderr captured; returns the captured text and fn's error (nil when it returned)
local function capture(fn)
  local real = io.stderr
  local buf = {}
  io.stderr = {write = function(self, ...) for _, s in ipairs({...}) do buf[#buf + 1] = tostring(s) end return self end}
  local ok, err = pcall(fn)
  io.stderr = real
  return table.concat(buf), (not ok) and tostring(err) or nil
end

local function count(s, pat)
  local n = 0
  for _ in s:gmatch(pat) do n = n + 1 end
  return n
end

local R = {
  generate = require "sfwb.recipes.generate",
  extract_attention = require "sfwb.recipes.extract_attention",
  compare = require "sfwb.recipes.compare",
  interactive = require "sfwb.recipes.interactive",
  generate_ode_pairs = require "sfwb.recipes.generate_ode_pairs",
  train = require "sfwb.recipes.train",
  toy_world = require "sfwb.recipes.toy_world",
}

-- the arguments of a run of `name` with config `cfg` that would reach the weights
local function args(name, cfg, extra)
  local a = ({
    generate = {"--wan_dir", NOWAN, "--no_checkpoint", "--prompt", "x", "--num_output_frames", "3", "--height", "32",
                "--width", "48", "--output_folder", dir .. "/gen", "--quiet"},
    extract_attention = {"--wan_dir", NOWAN, "--no_checkpoint", "--prompt", "x", "--num_frames", "3", "--height", "32",
                         "--width", "48", "--output_dir", dir .. "/attn"},
    compare = {"--wan_dir", NOWAN, "--a", "base", "--b", "base", "--num_frames", "3", "--height", "32", "--width", "48",
               "--output_dir", dir .. "/cmp"},
    interactive = {"--wan_dir", NOWAN, "--prompt", "x", "--num_output_frames", "3", "--height", "32", "--width", "48",
                   "--output_folder", dir .. "/inter", "--quiet"},
    generate_ode_pairs = {"--wan_dir", NOWAN, "--caption_path", prompts, "--output_folder", dir .. "/lmdb",
                          "--num_frames", "3", "--height", "32", "--width", "48", "--quiet"},
    train = {"--logdir", dir .. "/logs", "--steps", "1", "--wan_models_dir", NOWAN},
    toy_world = {"--out", dir .. "/toy", "--mini", "--stages", "none"},
  })[name]
  if name == "interactive" and not cfg then -- it needs a config (LongLive's)
    cfg = write("interactive_ok.yaml", "denoising_step_list: [1000, 750, 500, 250]\nglobal_sink: true\n")
  end
  local out = {}
  for _, v in ipairs(a) do out[#out + 1] = v end
  if cfg then out[#out + 1] = "--config_path" out[#out + 1] = cfg end
  for _, v in ipairs(extra or {}) do out[#out + 1] = v end
  return out
end

local CONFIG_RECIPES = {"generate", "extract_attention", "compare", "interactive"}

T.case("a config key typo is warned once, naming the key, the file and the nearest key", function()
  for _, name in ipairs(CONFIG_RECIPES) do
    local cfg = write(name .. "_typo.yaml", "timestep_shfit: 5.0\nwarp_denoising_step: true\n")
    -- run twice: the warning comes once
    local w1, err1 = capture(function() R[name].main(args(name, cfg)) end)
    local w2 = capture(function() R[name].main(args(name, cfg)) end)
    local all = w1 .. w2
    T.eq(count(all, "unknown key 'timestep_shfit'"), 1, name .. ": one warning for the typo")
    T.check(all:find("did you mean 'timestep_shift'", 1, true), name .. ": the nearest key named: " .. all)
    T.check(all:find(cfg, 1, true), name .. ": the file named")
    T.check(err1 and not err1:find("config ", 1, true), name .. ": the run went on to the weights: " .. tostring(err1))
  end
end)

T.case("a config's wrong type or unsupported value fails before any weights load, naming key and file", function()
  local bad = {
    {"denoising_step_list: 5\n", "'denoising_step_list' must be a list of numbers, got 5"},
    {"model_kwargs:\n  timestep_shift: fast\n", "'model_kwargs.timestep_shift' must be a number"},
    {"seed: 1.5\n", "'seed' must be a whole number"},
    {"generator_type: diagonal\n", "'generator_type' is \"diagonal\"; sfwb knows"},
    {"adapter:\n  type: dora\n  rank: 4\n", "'adapter.type' is \"dora\"; sfwb knows \"lora\""},
  }
  for _, name in ipairs(CONFIG_RECIPES) do
    for i, b in ipairs(bad) do
      local cfg = write(string.format("%s_bad%d.yaml", name, i), b[1])
      local _, err = capture(function() R[name].main(args(name, cfg)) end)
      T.check(err and err:find(b[2], 1, true), name .. ": " .. b[2] .. " — got " .. tostring(err))
      T.check(err:find(cfg, 1, true), name .. ": the file named")
    end
  end
end)

T.case("outputs, counts and options are checked before any weights load", function()
  local cases = {
    {"generate", {"--solver", "nope"}, "--solver: 'nope' is not one of"},
    {"generate", {"--num_samples", "0"}, "--num_samples must be a whole number >= 1"},
    {"generate", {"--device", "gpu"}, "--device: 'gpu'"},
    {"generate", {"--dtype", "f64"}, "--dtype: 'f64'"},
    {"generate", {"--output_folder", file}, "--output_folder"},
    {"extract_attention", {"--attn", "nope"}, "--attn: 'nope'"},
    {"extract_attention", {"--what", "nope"}, "--what: 'nope'"},
    {"extract_attention", {"--passes", "denoise,nope"}, "--passes: 'nope'"},
    {"extract_attention", {"--cmap", "nope"}, "--cmap"},
    {"compare", {"--what", "nope"}, "--what: 'nope'"},
    {"compare", {"--steps", "-1"}, "--steps"},
    {"compare", {"--output_dir", file}, "--output_dir"},
    {"interactive", {"--output_folder", file}, "--output_folder"},
    {"interactive", {"--num_output_frames", "0"}, "--num_output_frames must be"},
    {"interactive", {"--height", "4"}, "--height must be a positive multiple of 16"},
    {"interactive", {"--device", "gpu"}, "--device: 'gpu'"},
    {"generate_ode_pairs", {"--output_folder", file}, "--output_folder"},
    {"generate_ode_pairs", {"--pt_folder", file}, "--pt_folder"},
    {"generate_ode_pairs", {"--num_steps", "0"}, "--num_steps must be a whole number >= 1"},
    {"generate_ode_pairs", {"--solver", "nope"}, "--solver: 'nope'"},
    {"generate_ode_pairs", {"--keep", "a"}, "--keep: 'a' is not an integer"},
    {"train", {"--steps", "-1"}, "--steps must be a whole number >= 0"},
    {"train", {"--steps", "1.5"}, "--steps must be a whole number >= 0"},
    {"train", {"--logdir", file}, "--logdir"},
    {"toy_world", {"--out", file}, "--out"},
    {"toy_world", {"--vae_steps", "0"}, "--vae_steps must be"},
  }
  -- a config the train recipe accepts
  local cfg = write("train.yaml", "trainer: score_distillation\ndistribution_loss: dmd\nlr: 1.0e-5\n")
  for _, c in ipairs(cases) do
    local name = c[1]
    local _, err = capture(function() R[name].main(args(name, name == "train" and cfg or nil, c[2])) end)
    T.check(err and err:find(c[3], 1, true), name .. " " .. table.concat(c[2], " ") .. ": expected '" .. c[3] ..
      "', got " .. tostring(err))
  end
  -- and without the bad option the same runs get to the weights (which do not exist): the checks pass good values
  for _, name in ipairs({"generate", "extract_attention", "compare", "interactive", "generate_ode_pairs", "train"}) do
    local _, err = capture(function() R[name].main(args(name, name == "train" and cfg or nil)) end)
    T.check(err ~= nil, name .. " fails on the missing weights")
    T.check(not err:find("^%-%-") and err:find(NOWAN, 1, true), name .. ": no option refused, the weights missing: " .. err)
  end
end)

T.done()
