-- sfwb/recipes/toy_world_probe.lua — what a toy-world teacher has learnt, by noise level (docs/toy_world.md,
-- "Why directions stay at 0 %"). Three probes on training videos from DIR/data/latents_lmdb:
--   sdedit:    a real video noised to sigma s0, sampled back (Euler, no CFG), measured: which noise levels
--              the teacher can finish;
--   frames:    x0 error at sigma with the whole video vs each frame alone: does it use the other frames;
--   words:     x0 error with the prompt as written, the opposite direction, another colour (one-ball videos):
--              which words it reads.
--   sfwb recipes/toy_world_probe.lua DIR [--weights last_ema|last_raw|model] [--videos N]
local sfwb = require "sfwb"
local json = require "sfwb.json"
local W = require "sfwb.toy_world"
local R = require "sfwb.recipes.toy_world"

local M = {}

local OPP = {left = "right", right = "left", up = "down", down = "up"}
local OTHER = {red = "blue", blue = "red", green = "yellow", yellow = "green"}

-- the teacher: its saved Wan folder, or the EMA / raw weights of its last training save (the folder's config)
function M.load_teacher(dir, which)
  if which == "last_ema" or which == "last_raw" then
    -- the config the teacher stage writes when it starts (the Wan folder comes at its end)
    local m = sfwb.wan.new(json.read(dir .. "/checkpoints/teacher/config.json"), {causal = false})
    m:load_checkpoint(dir .. "/checkpoints/teacher/last/model.pt", {ema = which == "last_ema"})
    return m
  end
  return sfwb.wan.load(dir .. "/checkpoints/teacher/model", {causal = false})
end

local function flow(m, x, sigma, ctx) -- x [1, F, C, H, W]
  return m:forward(x:permute({1, 3, 2, 4, 5}):contiguous(), sfwb.tensor({sigma * 1000}), ctx):permute({1, 3, 2, 4, 5})
end

-- o = {dir=, weights=, videos=, sigmas=}; returns {sdedit = {[s0] = {frames_ok, direction}}, frames = {...}, words = {...}}
function M.run(o)
  local dir = o.dir
  local t5 = R.load_text_encoder(dir)
  local m = M.load_teacher(dir, o.weights or "model")
  local vae = sfwb.vae.load(dir .. "/checkpoints/vae/Wan2.1_VAE.pth")
  local ds = sfwb.data.lmdb(dir .. "/data/latents_lmdb")
  local n = math.min(o.videos or 8, #ds)
  local res = {sdedit = {}, frames = {}, words = {}}
  local function embed(p) return t5:encode({p}).prompt_embeds end
  for _, s0 in ipairs(o.sdedit or {1.0, 0.9, 0.8}) do
    local fr, dr = 0, 0
    for i = 1, n do
      local row = ds[i]
      local a, ctx = row.ode_latent, embed(row.prompts)
      sfwb.manual_seed(i)
      local x = a * (1 - s0) + sfwb.randn(a:shape()) * s0
      local K = o.steps or 16
      for k = 0, K - 1 do
        local s, s2 = s0 * (1 - k / K), s0 * (1 - (k + 1) / K)
        x = x + flow(m, x, s, ctx) * (s2 - s)
      end
      local v = vae:decode(x)
      if type(v) == "table" then v = v[1] end
      if v:dim() == 5 then v = v:select(1, 1) end
      local r = W.measure(v, row.prompts)
      fr, dr = fr + r.frames_ok, dr + (r.direction_ok and 1 or 0)
    end
    res.sdedit[#res.sdedit + 1] = {sigma = s0, frames_ok = fr / n, direction = dr / n}
  end
  for _, sig in ipairs(o.sigmas or {0.95, 0.9, 0.8}) do
    local whole, alone, zero = 0, 0, 0
    local wr, wo, wc, nw = 0, 0, 0, 0
    for i = 1, n do
      local row = ds[i]
      local a = row.ode_latent
      sfwb.manual_seed(100 + i)
      local xt = a * (1 - sig) + sfwb.randn(a:shape()) * sig
      local function err(ctx, x, target) return ((x - flow(m, x, sig, ctx) * sig) - target):pow(2):mean():item() end
      local ctx = embed(row.prompts)
      whole, zero = whole + err(ctx, xt, a), zero + a:pow(2):mean():item()
      local F = a:size(2)
      for f = 1, F do
        alone = alone + err(ctx, xt:narrow(2, f, 1):contiguous(), a:narrow(2, f, 1)) / F
      end
      if not row.prompts:find(" and ") then
        local opp = row.prompts:gsub("moving (%a+)", function(d) return "moving " .. OPP[d] end)
        local col = row.prompts:gsub("a (%a+) ball", function(c) return "a " .. OTHER[c] .. " ball" end)
        wr, wo, wc, nw = wr + err(ctx, xt, a), wo + err(embed(opp), xt, a), wc + err(embed(col), xt, a), nw + 1
      end
    end
    res.frames[#res.frames + 1] = {sigma = sig, whole = whole / n, alone = alone / n, zeros = zero / n}
    if nw > 0 then
      res.words[#res.words + 1] = {sigma = sig, videos = nw, as_written = wr / nw, opposite_direction = wo / nw,
                                   other_colour = wc / nw}
    end
  end
  return res
end

M.spec = {
  usage = "recipes/toy_world_probe.lua DIR [options]",
  description = "Probes a toy-world teacher (recipes/toy_world.lua --out DIR) by noise level: SDEdit from real videos, "
    .. "x0 error with the whole video vs each frame alone, and with the direction / colour words swapped.",
  options = {
    {"--weights", "W", "model (the saved teacher), last_ema or last_raw (its last training save)", "model"},
    {"--videos", "N", "training videos probed", 8, number = true},
  },
}

function M.main(argv)
  local C = require "sfwb.recipes.common"
  local o = C.parse_args(argv, M.spec)
  if not o then return 0 end
  local dir = o._positional[1]
  if not dir then error("usage: " .. M.spec.usage, 0) end
  if not ({model = true, last_ema = true, last_raw = true})[o.weights] then
    error("--weights must be model, last_ema or last_raw, got " .. tostring(o.weights), 0)
  end
  local r = M.run({dir = dir, weights = o.weights, videos = tonumber(o.videos)})
  for _, e in ipairs(r.sdedit) do
    print(string.format("sdedit  from sigma %.2f: frames right %5.1f %%, directions %5.1f %%", e.sigma, 100 * e.frames_ok,
                        100 * e.direction))
  end
  for _, e in ipairs(r.frames) do
    print(string.format("frames  sigma %.2f: x0 error whole video %.4f, each frame alone %.4f (zeros %.4f)", e.sigma,
                        e.whole, e.alone, e.zeros))
  end
  for _, e in ipairs(r.words) do
    print(string.format("words   sigma %.2f (%d videos): as written %.4f, opposite direction %.4f, other colour %.4f",
                        e.sigma, e.videos, e.as_written, e.opposite_direction, e.other_colour))
  end
  return 0, r
end

return M
