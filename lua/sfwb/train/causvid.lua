-- sfwb/train/causvid.lua — Self-Forcing's CausVid objective (model/causvid.py): the DMD trainer's teacher,
-- critic, update schedule, EMA and checkpoints, with CausVid's generator input: no autoregressive rollout but
-- backward simulation from data — the clean latents noised at every step of denoising_step_list (one
-- randn{B, F, C, H, W} per step, the clean latent itself at step 0), one row per frame block picked by
-- randint(0, K, {B, F}), one generator forward with gradient (the causal training path). The DMD loss then
-- draws its timestep from [0, num_train_timestep) (never ts_schedule) and applies no gradient mask.
-- The original's trainer passes clean_latent = None (an AttributeError as shipped); sfwb feeds
-- ode_latent[:, -1] of the LMDB batch, the smallest fix (docs/training.md).
local sfwb = require "sfwb"
local DMD = require "sfwb.train.dmd"
local Rollout = require "sfwb.train.rollout"
local S = require "sfwb.train.draws"

local M = {}
local Trainer = setmetatable({}, {__index = DMD.Trainer})
Trainer.__index = Trainer

local WHO = "train.causvid"

function M.new(cfg, parts)
  parts = parts or {}
  if not parts.dataset and type(cfg) == "table" and S.get(cfg, "data_path", nil) then
    local p = {}
    for k, v in pairs(parts) do p[k] = v end
    p.dataset = sfwb.data.lmdb(cfg.data_path)  -- clean latents: an LMDB of ODE pairs, as the original's I2V path
    parts = p
  end
  local self = DMD.new(cfg, parts)
  setmetatable(self, Trainer)
  self.objective = "causvid"
  -- model/base.py's denoising_step_list: as given (0 kept), warped through the generator grid when asked
  local steps = {}
  for i, v in ipairs(S.get(cfg, "denoising_step_list", {1000, 750, 500, 250})) do steps[i] = v end
  if S.get(cfg, "warp_denoising_step", false) then
    local ext = {}
    for i, v in ipairs(self.G.scheduler._timesteps) do ext[i] = v end
    ext[#ext + 1] = 0.0
    for i, v in ipairs(steps) do steps[i] = ext[1000 - math.floor(v) + 1] end
  end
  self.causvid_steps = steps
  -- teacher_forcing: the generator's forward gets the data as clean context (clean_x; aug_t zeros)
  self.teacher_forcing = S.get(cfg, "teacher_forcing", false)
  self.nfpb = S.get(cfg, "num_frame_per_block", 1)
  self.independent_first_frame = S.get(cfg, "independent_first_frame", false)
  if self.teacher_forcing and self.independent_first_frame then
    error(WHO .. ": teacher_forcing: true with independent_first_frame: true is not implemented in the original "
          .. "(CausalWanModel raises NotImplementedError)", 2)
  end
  return self
end

-- model/causvid.py _run_generator: backward simulation from clean latents, one generator forward.
-- Returns x0 [B, F, C, H, W] (with the forward's graph when gradients are on)
function Trainer:run_generator(o)
  local clean = o.clean_latent
  if clean == nil or clean:dim() ~= 5 then
    error(WHO .. ": run_generator needs clean_latent = [B, F, C, H, W] (CausVid simulates its input from data)", 2)
  end
  local ctx, extra = S.embeds(o.cond, "cond", WHO)
  local B, F = clean:size(1), clean:size(2)
  local dev = clean:device()
  local K = #self.causvid_steps
  local sim = {}
  for k, tv in ipairs(self.causvid_steps) do
    local n = Rollout.normal(self.rng, clean:shape(), {dtype = clean:dtype(), device = dev})
    if tv ~= 0 then
      sim[k] = S.add_noise(self.G.scheduler, clean, n, sfwb.full({B, F}, tv, {dtype = "f32", device = dev}))
    else
      sim[k] = clean
    end
  end
  local idx = S.get_timestep(self.rng, 0, K, B, F, self.nfpb, self.independent_first_frame, false)
  local rows = {}
  for b = 1, B do
    local frames = {}
    for f = 1, F do frames[f] = sim[idx[b][f] + 1]:select(1, b):select(1, f) end
    rows[b] = sfwb.stack(frames, 1)
  end
  local noisy = sfwb.stack(rows, 1)
  local t = S.lookup(self.causvid_steps, idx, dev)
  if self.teacher_forcing then
    local e = {}
    for k, v in pairs(extra or {}) do e[k] = v end
    e.clean_x = clean
    extra = e
  end
  local _, x0 = self.G:forward(noisy, t, ctx, extra)
  return x0:to(noisy:dtype()), t
end

-- the score / critic timestep: randint(0, num_train_timestep, {B, 1}), shifted, clamped (no ts_schedule)
function Trainer:causvid_timesteps(B, F)
  local draws = Rollout.ints(self.rng, 0, self.num_train_timestep, {B, 1})
  return self:score_timesteps(B, F, nil, nil, draws)
end

function Trainer:generator_loss(o)
  if type(o) ~= "table" then error(WHO .. ": generator_loss expects a table {clean_latent=, cond=, uncond=}", 2) end
  local ctx, extra = S.embeds(o.cond, "cond", WHO)
  local neg = S.embeds(o.uncond, "uncond", WHO)
  local x = self:run_generator(o)
  local B, F = x:size(1), x:size(2)
  local t = self:causvid_timesteps(B, F)
  local n = Rollout.normal(self.rng, x:shape(), {dtype = x:dtype(), device = x:device()})
  local loss, gnorm = self:dmd_loss_from(x, t, n, ctx, {clip_fea = extra.clip_fea, y = extra.y, negative = neg})
  return loss, {dmdtrain_gradient_norm = gnorm, timestep = t}
end

function Trainer:critic_loss(o)
  if type(o) ~= "table" then error(WHO .. ": critic_loss expects a table {clean_latent=, cond=}", 2) end
  local ctx, extra = S.embeds(o.cond, "cond", WHO)
  local x
  sfwb.no_grad(function() x = self:run_generator(o) end)
  x = x:detach()
  local t = self:causvid_timesteps(x:size(1), x:size(2))
  local n = Rollout.normal(self.rng, x:shape(), {dtype = x:dtype(), device = x:device()})
  return self:critic_loss_from(x, t, n, ctx, extra), {critic_timestep = t}
end

-- a data batch: the LMDB's ode_latent[:, -1] as clean_latent (the original's missing piece)
function Trainer:batch_args(batch)
  local a = DMD.Trainer.batch_args(self, batch)
  local lat = batch.ode_latent or batch.clean_latent
  if not lat then error(WHO .. ": the dataset rows have no ode_latent (CausVid needs an LMDB of latents)", 3) end
  a.clean_latent = batch.clean_latent or lat:select(2, lat:size(2)):contiguous()
  return a
end

M.Trainer = Trainer
return M
