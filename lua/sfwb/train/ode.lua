-- sfwb/train/ode.lua — Self-Forcing's ODERegression (model/ode_regression.py + trainer/ode.py): the
-- generator regresses the teacher's ODE solution from an intermediate point of its trajectory. Per frame
-- block one random row of the trajectory (ode_latent [B, S, F, C, H, W], noise first, clean last) at the
-- matching denoising step; the x0 prediction is compared with the last row on the frames whose timestep is
-- not 0 (CausVid §4.3). Pairs come from recipes/generate_ode_pairs.lua (the original's LMDB layout).
--   tr = sfwb.train.ode(cfg [, {generator=, text_encoder=, dataset=}])
--   loss, log = tr:generator_loss{ode_latent = [B, S, F, C, H, W], cond = {prompt_embeds=}}
local sfwb = require "sfwb"
local S = require "sfwb.train.draws"
local Base = require "sfwb.train.base"

local M = {}
local Trainer = setmetatable({}, {__index = Base.OneNetwork})
Trainer.__index = Trainer

local WHO = "train.ode"

function M.new(cfg, parts)
  if type(cfg) ~= "table" then error(WHO .. ": expects a config table (sfwb.config.load(...))", 2) end
  -- every key checked before anything loads: unknown keys warned (nearest known key), wrong types refused
  sfwb.config.check(cfg, require("sfwb.train.schema").ode)
  require("sfwb.train.scale").refuse(cfg, WHO) -- no sharding or accumulation in the one-network trainers
  local dsl = S.get(cfg, "denoising_step_list", nil)
  if type(dsl) ~= "table" or #dsl == 0 then
    error(WHO .. ": the config has no denoising_step_list (ODE regression picks its inputs at those steps)", 2)
  end
  local self = setmetatable({}, Trainer)
  Base.one_network(self, cfg, parts, WHO)
  -- model/base.py: the list as given (long), or warped through the generator grid
  local steps = {}
  for i, v in ipairs(dsl) do steps[i] = v end
  if S.get(cfg, "warp_denoising_step", false) then
    local ext = {}
    for i, v in ipairs(self.scheduler._timesteps) do ext[i] = v end
    ext[#ext + 1] = 0.0
    for i, v in ipairs(steps) do steps[i] = ext[1000 - math.floor(v) + 1] end
  end
  self.denoising_step_list = steps
  self.i2v = S.get(cfg, "i2v", false)
  if not (parts and parts.dataset) and S.get(cfg, "data_path", nil) then
    self.dataset = sfwb.data.lmdb(cfg.data_path, {max_pair = S.get(cfg, "max_pair", nil)})
  end
  return self
end

-- _prepare_generator_input: one draw of step indices {B, F} through tr.rng, block-equalised
function Trainer:generator_input(ode)
  local s = ode:shape()
  local B, K, F = s[1], #self.denoising_step_list, s[3]
  if s[2] ~= K then
    error(string.format("%s: ode_latent has %d trajectory rows but denoising_step_list has %d steps", WHO, s[2], K), 3)
  end
  local idx = S.get_timestep(self.rng, 0, K, B, F, self.nfpb, self.independent_first_frame, false)
  if self.i2v then for b = 1, B do idx[b][1] = K - 1 end end
  local rows = {}
  for b = 1, B do
    local frames = {}
    local ob = ode:select(1, b)
    for f = 1, F do frames[f] = ob:select(1, idx[b][f] + 1):select(1, f) end
    rows[b] = sfwb.stack(frames, 1)
  end
  local noisy = sfwb.stack(rows, 1)
  local t = S.lookup(self.denoising_step_list, idx, ode:device())
  return noisy, t
end

function Trainer:generator_loss(o)
  if type(o) ~= "table" then error(WHO .. ": generator_loss expects a table {ode_latent=, cond=}", 2) end
  local ode = o.ode_latent
  if ode == nil or ode:dim() ~= 6 then error(WHO .. ": generator_loss needs ode_latent = [B, S, F, C, H, W]", 2) end
  local ctx, extra = S.embeds(o.cond, "cond", WHO)
  local B, F = ode:size(1), ode:size(3)
  local target = ode:select(2, ode:size(2))
  local noisy, t
  sfwb.no_grad(function() noisy, t = self:generator_input(ode) end)
  local _, pred = self.G:forward(noisy, t, ctx, extra)
  local d = pred - target
  local per = (d * d):reshape({B, F, -1}):mean(3)                  -- [B, F]
  -- F.mse_loss over the frames whose timestep is not 0 (every frame has C*H*W elements)
  local tv = t:cpu():totable()
  local m, count = {}, 0
  for b = 1, B do for f = 1, F do
    local on = tv[b][f] ~= 0 and 1 or 0
    m[#m + 1] = on
    count = count + on
  end end
  local mask = sfwb.tensor(m, {dtype = "f32"}):view({B, F}):to(per:device())
  local loss = (per * mask):sum() / count                           -- 0/0 = NaN when no frame is noisy, as torch
  local log = {unnormalized_loss = per:mean(2):detach(), timestep = t:mean(2):detach(), timesteps = t, input = noisy,
               output = pred:detach()}
  return loss, log
end

-- trainer/ode.py: an LMDB batch {prompts, ode_latent}
function Trainer:batch_args(batch)
  local prompts = batch.prompts
  if type(prompts) == "string" then prompts = {prompts} end
  if not batch.ode_latent then error(WHO .. ": the dataset rows have no ode_latent", 3) end
  return {ode_latent = batch.ode_latent:to(self.device):contiguous(), cond = {prompt_embeds = self:encode(prompts)}}
end

M.Trainer = Trainer
return M
