-- sfwb/recipes/toy_world_validate.lua — a toy-world run's models on the validation prompts (docs/toy_world.md,
-- "Choosing the default preset"): 12 prompts, 4 one-ball and 8 two-ball, none among the default evaluation
-- prompts, each drawn with a few seeds and measured by sfwb.toy_world. Presets are chosen on these numbers so
-- that the evaluation set stays held out; two-ball directions are counted apart (the binding of a direction
-- word to its ball, docs/toy_world.md "Where two-ball directions fail").
--   sfwb recipes/toy_world_validate.lua DIR [--model M] [--weights ema|raw] [--seeds N]
--        [--prompts validation|evaluation|FILE] [--quick|--mini] [--set k=v,...] [--detail]
local sfwb = require "sfwb"
local W = require "sfwb.toy_world"
local R = require "sfwb.recipes.toy_world"
local Probe = require "sfwb.recipes.toy_world_probe"

local M = {}

M.prompts = {"a green ball moving up", "a red ball moving left", "a blue ball moving down", "a yellow ball moving right",
  "a blue ball moving up and a yellow ball moving right", "a red ball moving left and a green ball moving down",
  "a yellow ball moving left and a red ball moving down", "a green ball moving up and a blue ball moving left",
  "a red ball moving right and a yellow ball moving up", "a blue ball moving down and a green ball moving right",
  "a yellow ball moving down and a blue ball moving left", "a green ball moving left and a red ball moving up"}

-- `model`'s weights from DIR, in the pipeline its stage samples it with (recipes/toy_world.lua's M.sampler)
function M.pipeline(dir, model, weights, preset, t5, vae)
  local m
  if model == "teacher" then
    m = Probe.load_teacher(dir, weights == "raw" and "last_raw" or "model") -- the saved teacher is its EMA
  else
    m = sfwb.wan.load(dir .. "/checkpoints/" .. model .. "/model", {causal = true, num_frame_per_block = 3})
    if model == "self_forcing" and weights == "ema" then
      -- the recipe measures the student with its generator_ema, from the last training save
      m:load_checkpoint(dir .. "/checkpoints/self_forcing/last/model.pt", {ema = true})
    end
  end
  return R.sampler(model, m, preset, t5, vae)
end

-- o = {dir=, model=, weights=, seeds=, preset=, prompts=, frames=, seed_of=, on_video=(prompt, s, measured, video)};
-- video i of seed s is drawn with seed seed_of(s, i) (default 1000 s + i). Returns the summary
-- (W.summarize) plus one_ball / two_ball = {right =, videos =} and the per-video measurements
function M.run(o)
  local dir = o.dir
  local t5 = R.load_text_encoder(dir)
  local vae = sfwb.vae.load(dir .. "/checkpoints/vae/Wan2.1_VAE.pth")
  local pipe = M.pipeline(dir, o.model, o.weights, o.preset, t5, vae)
  local frames = o.frames or R.latent_frames(o.preset)
  local prompts = o.prompts or M.prompts
  local seed_of = o.seed_of or function(s, i) return 1000 * s + i end
  local results, counts = {}, {{right = 0, videos = 0}, {right = 0, videos = 0}}
  for s = 1, o.seeds do
    for i, p in ipairs(prompts) do
      local r = pipe:generate({prompts = {p}, num_frames = frames, seed = seed_of(s, i), height = W.size, width = W.size})
      local m = W.measure(r.video:select(1, 1), p)
      results[#results + 1] = m
      local c = counts[math.min(#m.balls, 2)]
      c.videos, c.right = c.videos + 1, c.right + (m.direction_ok and 1 or 0)
      if o.on_video then o.on_video(p, s, m, r.video) end
    end
  end
  local sum = W.summarize(results)
  sum.one_ball, sum.two_ball, sum.videos = counts[1], counts[2], results
  return sum
end

M.spec = {
  usage = "recipes/toy_world_validate.lua DIR [options]",
  description = "Measures a toy-world run's model (recipes/toy_world.lua --out DIR) on 12 validation prompts "
    .. "(none of the default evaluation prompts), a few seeds each: frames right, directions (one-ball and "
    .. "two-ball apart), smoothness. Pass the preset the run was trained with (--quick / --mini / --set).",
  options = {
    {"--model", "M", table.concat(R.sampled_models, ", "), "self_forcing"},
    {"--weights", "W", "ema (as the recipe measures: the teacher's saved EMA, the student's generator_ema) or raw (the others have one set)", "ema"},
    {"--prompts", "P", "validation (the 12 built in), evaluation (the recipe's default held-out prompts) or a FILE of prompts", "validation"},
    {"--seeds", "N", "seeds per prompt (video i of seed s: seed 1000 s + i)", 4, number = true},
    {"--quick", false, "the run used the --quick preset", false},
    {"--mini", false, "the run used the --mini preset", false},
    {"--set", "LIST", "the preset overrides the run used, as recipes/toy_world.lua takes them (e.g. dit.heads=4)", ""},
    {"--detail", false, "print each ball of each video (direction, initial velocity, drift, start half)", false},
  },
}

function M.main(argv)
  local C = require "sfwb.recipes.common"
  local o = C.parse_args(argv, M.spec)
  if not o then return 0 end
  local dir = o._positional[1]
  if not dir then error("usage: " .. M.spec.usage, 0) end
  local known = false
  for _, k in ipairs(R.sampled_models) do known = known or k == o.model end
  if not known then error("--model must be one of " .. table.concat(R.sampled_models, ", ") .. ", got " .. tostring(o.model), 0) end
  if o.weights ~= "ema" and o.weights ~= "raw" then error("--weights must be ema or raw, got " .. tostring(o.weights), 0) end
  local seeds = math.tointeger(tonumber(o.seeds))
  if not seeds or seeds < 1 then error("--seeds must be a whole number >= 1, got " .. tostring(o.seeds), 0) end
  if not C.exists(dir .. "/checkpoints/" .. o.model .. "/model") then
    error(dir .. ": no checkpoints/" .. o.model .. "/model (has recipes/toy_world.lua run its " .. o.model .. " stage?)", 0)
  end
  local preset = R.apply_overrides(o.mini and R.presets.mini or o.quick and R.presets.quick or R.presets.full, o.set)
  local prompts = o.prompts == "evaluation" and R.default_eval_prompts or o.prompts ~= "validation" and R.read_prompts(o.prompts) or nil
  local function detail(p, s, m)
    local t = {}
    for _, b in ipairs(m.balls) do
      t[#t + 1] = string.format("%s %s v0 %s drift %s start %s", b.colour, b.direction,
        b.initial_velocity and string.format("%.2f", b.initial_velocity) or "-", b.drift and string.format("%.2f", b.drift) or "-",
        tostring(b.start_ok))
    end
    print(string.format("seed %d  %-56s %-5s %s", s, p, m.direction_ok and "right" or "wrong", table.concat(t, " | ")))
  end
  -- progress on stderr (a teacher's 48 videos take minutes): video k/n, rate, ETA
  local n, k, t0 = seeds * (prompts and #prompts or #M.prompts), 0, sfwb.time()
  local function on_video(p, s, m)
    k = k + 1
    local rate = (sfwb.time() - t0) / k
    io.stderr:write(string.format("validate  video %d/%d  %.2f s/video  ETA %ds\n", k, n, rate, math.floor(rate * (n - k) + 0.5)))
    if o.detail then detail(p, s, m) end
  end
  local r = M.run({dir = dir, model = o.model, weights = o.weights, seeds = seeds, preset = preset, prompts = prompts,
    on_video = on_video})
  print(string.format("%s (%s weights), %d videos: frames right %.1f %%, directions %.1f %% (one-ball %d/%d, two-ball %d/%d), "
    .. "smooth %.1f %%, median smoothness %.2f", o.model, o.weights, #r.videos, 100 * r.frames_ok, 100 * r.direction,
    r.one_ball.right, r.one_ball.videos, r.two_ball.right, r.two_ball.videos, 100 * r.smooth, r.smoothness))
  return 0, r
end

return M
