-- sfwb/train/sid.lua — Self-Forcing's SiD objective (model/sid.py): the DMD trainer's rollout, update schedule,
-- critic loss, EMA and checkpoints, with Score identity Distillation as the generator loss:
--   loss = mean( (x0_real - x0_fake) * ((x0_real - x) - alpha * (x0_real - x0_fake)) / mean|x - x0_real| )
-- in float64, NaN -> 0, where x0_fake and x0_real (CFG on the teacher) are computed WITH gradient (the
-- generator's gradient flows through both score networks, unlike DMD's stop-gradient target); no fake
-- guidance, no gradient mask (the original ignores it), log.dmdtrain_gradient_norm = 0 as the original.
local sfwb = require "sfwb"
local DMD = require "sfwb.train.dmd"

local M = {}
local Trainer = setmetatable({}, {__index = DMD.Trainer})
Trainer.__index = Trainer

function M.new(cfg, parts)
  local self = DMD.new(cfg, parts)
  setmetatable(self, Trainer)
  local a = cfg.sid_alpha
  if a == nil or (sfwb.config and a == sfwb.config.null) then a = 1.0 end
  if type(a) ~= "number" then error("train.sid: sid_alpha must be a number, got " .. tostring(a), 2) end
  self.sid_alpha = a
  self.objective = "sid"
  return self
end

local function add_noise(sched, x, n, t)
  local s = x:shape()
  local flat = {s[1] * s[2], s[3], s[4], s[5]}
  return sched:add_noise(x:reshape(flat), n:reshape(flat), t:reshape({s[1] * s[2]})):view(s)
end

-- model/sid.py compute_distribution_matching_loss for a generated x (with its graph) at score timesteps t
-- [B, F] with noise n; returns loss, 0
function Trainer:dmd_loss_from(x, t, n, ctx, batch)
  batch = batch or {}
  local B = x:size(1)
  local xt = add_noise(self.G.scheduler, x, n, t)
  local extra = {clip_fea = batch.clip_fea, y = batch.y}
  local neg = batch.negative or self:negative(B)
  local _, x0_fake = self.F:forward(xt, t, ctx, extra)
  local _, x0_c = self.R:forward(xt, t, ctx, extra)
  local _, x0_u = self.R:forward(xt, t, neg, extra)
  local x0_real = x0_c + (x0_c - x0_u) * self.real_guidance_scale
  local r, f, x64 = x0_real:to("f64"), x0_fake:to("f64"), x:to("f64")
  local loss = (r - f) * ((r - x64) - (r - f) * self.sid_alpha)
  local norm
  sfwb.no_grad(function()
    norm = (x:detach() - x0_real:detach()):abs():reshape({B, -1}):mean(2, true):view({B, 1, 1, 1, 1})
  end)
  loss = loss / norm:to("f64")
  local z = sfwb.zeros(loss:shape(), {dtype = loss:dtype(), device = loss:device()})
  loss = sfwb.where(loss:isnan(), z, loss)
  return loss:mean(), 0
end

M.Trainer = Trainer
return M
