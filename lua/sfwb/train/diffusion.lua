-- sfwb/train/diffusion.lua — Self-Forcing's CausalDiffusion (model/diffusion.py + trainer/diffusion.py):
-- flow-matching training of a generator on clean latents (the last row of the LMDB's ode_latent). Per-block
-- timesteps (diffusion forcing) or, with teacher_forcing: true, the causal model's teacher-forcing forward (the
-- clean latents as a second sequence the noisy blocks attend to), the flow target noise - x0, per-frame MSE weighted by the grid's training
-- weight; optional noise augmentation of the clean context (noise_augmentation_max_timestep). This is also how
-- a teacher is pretrained from data; a bidirectional generator gets one timestep per sample (see docs).
--   tr = sfwb.train.diffusion(cfg [, {generator=, text_encoder=, dataset=}])
--   loss, log = tr:generator_loss{clean_latent = [B, F, C, H, W], cond = {prompt_embeds=}}
local sfwb = require "sfwb"
local S = require "sfwb.train.draws"
local Base = require "sfwb.train.base"

local M = {}
local Trainer = setmetatable({}, {__index = Base.OneNetwork})
Trainer.__index = Trainer

local WHO = "train.diffusion"

function M.new(cfg, parts)
  if type(cfg) ~= "table" then error(WHO .. ": expects a config table (sfwb.config.load(...))", 2) end
  -- every key checked before anything loads: unknown keys warned (nearest known key), wrong types refused
  sfwb.config.check(cfg, require("sfwb.train.schema").diffusion)
  require("sfwb.train.scale").refuse(cfg, WHO) -- no sharding or accumulation in the one-network trainers
  local self = setmetatable({}, Trainer)
  self.teacher_forcing = S.get(cfg, "teacher_forcing", false)
  Base.one_network(self, cfg, parts, WHO)
  if self.teacher_forcing then
    -- the causal model's teacher-forcing forward (clean_x, aug_t); what the original cannot run is refused here
    if not self.causal then
      error(WHO .. ": teacher_forcing: true needs a causal generator (the original's forward with clean_x is "
            .. "CausalWanModel's)", 2)
    end
    if self.independent_first_frame then
      error(WHO .. ": teacher_forcing: true with independent_first_frame: true is not implemented in the original "
            .. "(CausalWanModel raises NotImplementedError)", 2)
    end
  end
  self.num_train_timestep = S.get(cfg, "num_train_timestep", 1000)
  self.noise_augmentation_max_timestep = S.get(cfg, "noise_augmentation_max_timestep", 0)
  -- sfwb's addition (the original has none): the prompt replaced by negative_prompt ("" unless set) with this
  -- probability, so a teacher trained from scratch learns the unconditional score that CFG needs. 0 (the
  -- default) draws nothing, so runs without it are the original's draw for draw.
  self.text_dropout = S.get(cfg, "text_dropout", 0)
  if self.text_dropout < 0 or self.text_dropout >= 1 then
    error(string.format("%s: text_dropout must be in [0, 1), got %s", WHO, tostring(self.text_dropout)), 2)
  end
  self.dropout_prompt = S.get(cfg, "negative_prompt", "")
  -- the original weights each sample's loss by the scheduler's training weight, a bump over the timestep
  -- values that is ~0 near t = 1000 and 15% of its peak at t = 950: the high-noise steps, where a video's
  -- layout is decided, barely train. "none" (sfwb's option) weighs every timestep alike.
  self.timestep_weighting = S.get(cfg, "timestep_weighting", "original")
  if not (parts and parts.dataset) and S.get(cfg, "data_path", nil) then
    self.dataset = sfwb.data.lmdb(cfg.data_path)
  end
  return self
end

-- model/diffusion.py generator_loss: draws noise {B, F, C, H, W}, timestep indices {B, F} (and with noise
-- augmentation a second {B, F} in [0, noise_augmentation_max_timestep)) through tr.rng, in that order
function Trainer:generator_loss(o)
  if type(o) ~= "table" then error(WHO .. ": generator_loss expects a table {clean_latent=, cond=}", 2) end
  local clean = o.clean_latent
  if clean == nil or clean:dim() ~= 5 then
    error(WHO .. ": generator_loss needs clean_latent = [B, F, C, H, W]", 2)
  end
  local ctx, extra = S.embeds(o.cond, "cond", WHO)
  local B, F = clean:size(1), clean:size(2)
  local dev = clean:device()
  local noise = S.normal(self.rng, clean:shape(), {dtype = clean:dtype(), device = dev})
  local uniform = not self.causal -- sfwb: a bidirectional model sees t[:, 0], so one timestep per sample
  local grid = self.scheduler._timesteps
  local idx = S.get_timestep(self.rng, 0, #grid, B, F, self.nfpb, self.independent_first_frame, uniform)
  local t = S.lookup(grid, idx, dev)
  local noisy = S.add_noise(self.scheduler, clean, noise, t)
  local target = noise - clean
  local clean_aug, t_aug = clean, nil
  if self.noise_augmentation_max_timestep > 0 then
    -- drawn as the original; only teacher forcing consumes the augmented context (same noise, smaller t)
    local ia = S.get_timestep(self.rng, 0, self.noise_augmentation_max_timestep, B, F, self.nfpb,
                              self.independent_first_frame, uniform)
    if self.teacher_forcing then
      t_aug = S.lookup(grid, ia, dev)
      clean_aug = S.add_noise(self.scheduler, clean, noise, t_aug)
    end
  end
  if self.teacher_forcing then
    local e = {}
    for k, v in pairs(extra or {}) do e[k] = v end
    e.clean_x, e.aug_t = clean_aug, t_aug -- aug_t nil: the model uses zeros, as the original
    extra = e
  end
  local flow, x0 = self.G:forward(noisy, t, ctx, extra)
  local d = flow:float() - target:float()
  local per = (d * d):reshape({B, F, -1}):mean(3)                    -- mean over (C, H, W)
  local loss
  if self.timestep_weighting == "none" then
    loss = per:mean()
  else
    local w = self.scheduler:training_weight(t):to(dev):view({B, F})
    loss = (per * w):mean()
  end
  return loss, {x0 = clean:detach(), x0_pred = x0:detach(), timestep = t}
end

-- trainer/diffusion.py: clean_latent = ode_latent[:, -1] of an LMDB batch, text through the encoder
function Trainer:batch_args(batch)
  local prompts = batch.prompts
  if type(prompts) == "string" then prompts = {prompts} end
  local lat = batch.ode_latent or batch.clean_latent
  if not lat then error(WHO .. ": the dataset rows have no ode_latent (an LMDB of latents is needed)", 3) end
  local clean = batch.clean_latent or lat:select(2, lat:size(2))
  if self.text_dropout > 0 then
    -- one uniform draw per prompt from the global generator (saved and restored with the training state)
    local u = sfwb.rand({#prompts}):totable()
    local kept = {}
    for i, p in ipairs(prompts) do kept[i] = u[i] < self.text_dropout and self.dropout_prompt or p end
    prompts = kept
  end
  return {clean_latent = clean:to(self.device):contiguous(), cond = {prompt_embeds = self:encode(prompts)}}
end

M.Trainer = Trainer
return M
