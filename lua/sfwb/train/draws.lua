-- sfwb/train/draws.lua — the pieces the objectives' losses share: the default draw source and tr.rng's
-- integer / normal draws, model/base.py's _get_timestep, index lookups, per-frame add_noise, the conditioning
-- table of one call; plus the config helpers (get, file_exists). The trainer loop itself is sfwb.train.base.
local sfwb = require "sfwb"
local Rollout = require "sfwb.train.rollout"
local Base = require "sfwb.train.base"

local M = {}

M.get = Base.get

function M.file_exists(p) return sfwb.fs.stat(p) ~= nil end

-- the default draw source (sfwb's seeded generator, as the DMD trainer's); tr.rng replaces it for replay
function M.default_rng()
  return {randn = Rollout.default_rng.randn, randint = Rollout.default_rng.randint}
end

-- rng.randint(lo, hi, shape) as a flat Lua list of integers, range-checked (the DMD rollout's)
M.ints = Rollout.ints

function M.normal(rng, shape, opts)
  local t = rng.randn(shape, opts)
  if type(t) ~= "userdata" then error("rng.randn must return a tensor", 2) end
  return t:reshape(shape):to(opts.device or "cpu"):to(opts.dtype or "f32")
end

-- model/base.py _get_timestep: integers in [lo, hi) of shape [B, F] (one draw), the same within each
-- block (the first frame its own block with independent_first_frame); uniform: one draw [B, 1] repeated.
-- Returns a Lua list of B lists of F integers.
function M.get_timestep(rng, lo, hi, B, F, nfpb, indep, uniform)
  local out = {}
  if uniform then
    local v = M.ints(rng, lo, hi, {B, 1})
    for b = 1, B do
      out[b] = {}
      for f = 1, F do out[b][f] = v[b] end
    end
    return out
  end
  local v = M.ints(rng, lo, hi, {B, F})
  local first = indep and 2 or 1
  if (F - first + 1) % nfpb ~= 0 then
    error(string.format("_get_timestep: %d frames%s are not a multiple of num_frame_per_block %d", F - first + 1,
                        indep and " after the independent first frame" or "", nfpb), 2)
  end
  for b = 1, B do
    local row = {}
    for f = 1, F do row[f] = v[(b - 1) * F + f] end
    for f = first, F do
      local head = first + ((f - first) // nfpb) * nfpb
      row[f] = row[head]
    end
    out[b] = row
  end
  return out
end

-- [B][F] integer indices -> f32 tensor [B, F] of the values list[index + 1]
function M.lookup(list, idx, device)
  local vals = {}
  local B, F = #idx, #idx[1]
  for b = 1, B do for f = 1, F do vals[#vals + 1] = list[idx[b][f] + 1] end end
  return sfwb.tensor(vals, {dtype = "f32"}):view({B, F}):to(device or "cpu")
end

-- add_noise over [B, F, ...] with per-frame timesteps t [B, F]
function M.add_noise(sched, x, n, t)
  local s = x:shape()
  local flat = {s[1] * s[2]}
  for i = 3, #s do flat[#flat + 1] = s[i] end
  return sched:add_noise(x:reshape(flat), n:reshape(flat), t:reshape({s[1] * s[2]})):view(s)
end

-- the conditioning of one call: {prompt_embeds=, clip_fea=, y=} (a bare tensor is prompt_embeds)
function M.embeds(c, what, who)
  if c == nil then error(who .. ": " .. what .. " is missing (a table {prompt_embeds = [B, L, D]})", 3) end
  if type(c) == "userdata" then return c, {} end
  if type(c) ~= "table" or c.prompt_embeds == nil then error(who .. ": " .. what .. ".prompt_embeds is missing", 3) end
  return c.prompt_embeds, {clip_fea = c.clip_fea, y = c.y}
end

return M
