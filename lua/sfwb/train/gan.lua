-- sfwb/train/gan.lua — Self-Forcing's GAN objective (model/gan.py + trainer/gan.py, `trainer: gan`): the
-- Self-Forcing rollout as generator, the critic (fake score) with discriminator heads (sfwb/train/gan_heads.lua)
-- telling noisy generated latents from noisy data latents at one shared timestep:
--   generator: softplus(-D(fake)) * gan_g_weight            (relativistic: softplus(-(D(fake) - D(real))))
--   critic:    (softplus(-D(real)) + softplus(D(fake))) * gan_d_weight     (relativistic: softplus(-(D(real) - D(fake))))
--              + 0.5 * (r1 + r2), r1 = r1_weight * mean(((D(real + r1_sigma n) - D(real)) / r1_sigma)^2), r2 alike on fake
-- The DMD trainer supplies the rollout, data cycle, EMA, checkpoints and the shared loop (sfwb.train.base).
-- Real latents: ode_latent[:, -1] of an LMDB batch, as trainer/gan.py.
--
-- The original does not run as shipped; sfwb applies the smallest fixes (listed in docs/training.md): the critic
-- loss unpacks 4 values from _run_generator (not 5); r2_loss is zeros when r2_weight is 0 (the original reads
-- r2_loss before assignment); one batch per generator update (the original calls self.dataloader.next() and reads
-- batch["mini_bs"]/["full_bs"], which do not exist: loss_ratio is 1); the heads take the critic's widths (not
-- 1536 / 8192 / 12 heads); generator_grad_norm is logged only on generator steps; no checkpointer objects (the
-- weights load from generator_ckpt or tr:resume).
local sfwb = require "sfwb"
local DMD = require "sfwb.train.dmd"
local Rollout = require "sfwb.train.rollout"
local Heads = require "sfwb.train.gan_heads"
local U = require "sfwb.pipeline.util"

local M = {}
local Trainer = setmetatable({}, {__index = DMD.Trainer})
Trainer.__index = Trainer

local WHO = "train.gan"

local get = require("sfwb.train.base").get -- a config value, the default for nil or YAML null

local function need(cfg, key, what)
  local v = get(cfg, key, nil)
  if v == nil then error(string.format("%s: the config has no %s (%s)", WHO, key, what), 3) end
  return v
end

function M.new(cfg, parts)
  if type(cfg) ~= "table" then error(WHO .. ": expects a config table (sfwb.config.load(...))", 2) end
  if get(cfg, "i2v", false) then
    error(WHO .. ": i2v: true is not implemented for the GAN (trainer/gan.py's I2V path reads an image latent it only " ..
          "defines for raw-video batches)", 2)
  end
  if get(cfg, "streaming_training", false) then
    error(WHO .. ": streaming_training (LongLive's long tuning) is a DMD loop, not implemented for the GAN trainer", 2)
  end
  if get(cfg, "adapter", nil) ~= nil then
    error(WHO .. ": adapter (LongLive's LoRA training) is not implemented for the GAN trainer", 2)
  end
  if get(cfg, "gradient_accumulation_steps", 1) > 1 then
    error(WHO .. ": gradient_accumulation_steps > 1 is not implemented for the GAN trainer", 2)
  end
  -- its loop averages no gradients across ranks, so several ranks would train diverging copies: refused
  local world = sfwb.dist and sfwb.dist.world_size and sfwb.dist.world_size() or 1
  if world > 1 then
    local ss = get(cfg, "sharding_strategy", nil)
    error(string.format("%s: %d ranks%s: data-parallel and sharded training are not implemented for the GAN trainer "
                        .. "(its gradients are not averaged across ranks); run one process", WHO, world,
                        ss and ss ~= "no_shard" and (" with sharding_strategy: " .. tostring(ss)) or ""), 2)
  end
  -- trainer/gan.py reads these without defaults
  local gen_lr = need(cfg, "gen_lr", "trainer/gan.py's generator learning rate")
  local critic_lr = need(cfg, "critic_lr", "trainer/gan.py's critic learning rate")
  local num_class = need(cfg, "num_class", "model/gan.py's discriminator output width")
  parts = parts or {}
  if not parts.dataset and get(cfg, "data_path", nil) then
    local p = {}
    for k, v in pairs(parts) do p[k] = v end
    p.dataset = sfwb.data.lmdb(cfg.data_path)  -- ShardingLMDBDataset: prompts and ode_latent (real latents)
    parts = p
  end
  local self = DMD.new(cfg, parts, {schema = require("sfwb.train.schema").gan, no_teacher = true, no_scale = true})
  setmetatable(self, Trainer)
  self.objective = "gan"
  self.teacher = nil

  -- model/gan.py's hyperparameters, with its defaults
  self.concat_time_embeddings = get(cfg, "concat_time_embeddings", false)
  self.relativistic = get(cfg, "relativistic_discriminator", false)
  -- the critic's timesteps: critic_timestep_shift (default timestep_shift) through DMD's score_timesteps
  self.timestep_shift = get(cfg, "critic_timestep_shift", get(cfg, "timestep_shift", 1.0))
  self.gan_g_weight = get(cfg, "gan_g_weight", 1e-2)
  self.gan_d_weight = get(cfg, "gan_d_weight", 1e-2)
  self.r1_weight = get(cfg, "r1_weight", 0.0)
  self.r2_weight = get(cfg, "r2_weight", 0.0)
  self.r1_sigma = get(cfg, "r1_sigma", 0.01)
  self.r2_sigma = get(cfg, "r2_sigma", 0.01)
  self.loss_scale = get(cfg, "loss_scale", 1.0)
  self.discriminator_warmup_steps = get(cfg, "discriminator_warmup_steps", 0)
  self.ratio = get(cfg, "dfake_gen_update_ratio", 5)

  -- the heads on the critic (adding_cls_branch), after any weights the critic came with
  self.heads = Heads.add(self.critic, {num_class = num_class, concat_time_embeddings = self.concat_time_embeddings,
                                       blocks = get(cfg, "gan_feature_blocks", nil)})
  self.critic:requires_grad_(true)

  -- trainer/gan.py's optimizers: AdamW(lr=gen_lr, betas=(beta1, beta2)) (torch's default weight decay 0.01; the
  -- config's weight_decay is not read); the critic in two groups: body at critic_lr, heads at critic_lr *
  -- discriminator_lr_multiplier (two AdamW objects: per-parameter state, the same arithmetic as torch's groups)
  self.gen_lr, self.critic_lr = gen_lr, critic_lr
  self.disc_lr = critic_lr * get(cfg, "discriminator_lr_multiplier", 1.0)
  self.opt_g = sfwb.optim.adamw(self.generator:parameters(), {lr = gen_lr,
    betas = {get(cfg, "beta1", 0.9), get(cfg, "beta2", 0.999)}, weight_decay = 0.01})
  self:_critic_optimizers(self.step_count < self.discriminator_warmup_steps)
  return self
end

-- the critic's two parameter groups; during the warm-up betas (0.9, beta2_critic), after it (beta1_critic,
-- beta2_critic) — trainer/gan.py recreates the optimizer (fresh moments) when the warm-up ends
function Trainer:_critic_optimizers(warmup)
  local body, disc = {}, {}
  for name, p in pairs(self.critic:parameters()) do
    if Heads.is_head(name) then disc[name] = p else body[name] = p end
  end
  local b1 = warmup and 0.9 or get(self.cfg, "beta1_critic", 0.9)
  local betas = {b1, get(self.cfg, "beta2_critic", 0.999)}
  self.opt_c = sfwb.optim.adamw(body, {lr = self.critic_lr, betas = betas, weight_decay = 0.01})
  self.opt_d = sfwb.optim.adamw(disc, {lr = self.disc_lr, betas = betas, weight_decay = 0.01})
  self.optimizers = {generator = self.opt_g, critic = self.opt_c, discriminator = self.opt_d}
end

local function add_noise(sched, x, n, t)
  local s = x:shape()
  local flat = {s[1] * s[2], s[3], s[4], s[5]}
  return sched:add_noise(x:reshape(flat), n:reshape(flat), t:reshape({s[1] * s[2]})):view(s)
end

-- softplus(x) = max(x, 0) + log(1 + exp(-|x|)) (torch's, without its x > 20 shortcut: equal in f32 there)
local function softplus(x)
  return x:relu() + ((-x:abs()):exp() + 1):log()
end

-- the critic in classify mode on x [B, F, C, H, W] at t [B, F] (one timestep per sample: t[:, 0]) -> [B, num_class]
function Trainer:logits(x, t, ctx)
  local fo = {}
  if get(self.cfg, "gradient_checkpointing", false) and sfwb.is_grad_enabled() then fo.checkpoint = true end
  local logits = Heads.logits(self.critic, self.heads, U.to_model(x), t:select(2, 1):contiguous(), ctx, fo)
  return logits
end

local function check_real(x, clean)
  if clean == nil then error(WHO .. ": clean_latent = [B, F, C, H, W] (real latents) is required", 3) end
  local a, b = x:shape(), clean:shape()
  for i = 1, 5 do
    if a[i] ~= b[i] then
      error(string.format("%s: clean_latent [%s] must have the generated shape [%s]", WHO, table.concat(b, ", "),
                          table.concat(a, ", ")), 3)
    end
  end
end

local function cat2(a, b) return sfwb.cat({a, b}, 1) end

-- model/gan.py generator_loss for a generated x (with its graph): draws the critic timestep, the fake's noise and
-- the real's noise through tr.rng, in that order. Returns gan_G_loss.
function Trainer:generator_loss_from(x, clean, ctx, t_from, t_to)
  check_real(x, clean)
  local B, F = x:size(1), x:size(2)
  local t = self:score_timesteps(B, F, t_from, t_to):to(x:device())
  local nf = Rollout.normal(self.rng, x:shape(), {dtype = x:dtype(), device = x:device()})
  local fake = add_noise(self.G.scheduler, x, nf, t)
  local real = clean:detach()
  local nr = Rollout.normal(self.rng, real:shape(), {dtype = real:dtype(), device = real:device()})
  local noisy_real = add_noise(self.G.scheduler, real, nr, t)
  local logit = self:logits(cat2(fake, noisy_real), cat2(t, t), cat2(ctx, ctx))
  local lf, lr = logit:narrow(1, 1, B), logit:narrow(1, B + 1, B)
  local d = self.relativistic and (lf - lr) or lf
  return softplus(-d):mean() * self.gan_g_weight, t
end

-- model/gan.py critic_loss for a generated x (detached): draws the critic timestep, one noise shared by fake and
-- real, then (r1_weight > 0) the R1 perturbation and (r2_weight > 0) the R2 one. Returns gan_D_loss, r1, r2, log.
function Trainer:critic_loss_from(x, clean, ctx, t_from, t_to)
  check_real(x, clean)
  local B, F = x:size(1), x:size(2)
  local t = self:score_timesteps(B, F, t_from, t_to):to(x:device())
  local n = Rollout.normal(self.rng, x:shape(), {dtype = x:dtype(), device = x:device()})
  local fake = add_noise(self.G.scheduler, x, n, t)
  local real = add_noise(self.G.scheduler, clean:detach(), n, t)
  local logit = self:logits(cat2(fake, real), cat2(t, t), cat2(ctx, ctx))
  local lf, lr = logit:narrow(1, 1, B), logit:narrow(1, B + 1, B)
  local dloss
  if self.relativistic then dloss = softplus(-(lr - lf)):mean()
  else dloss = softplus(-lr):mean() + softplus(lf):mean() end
  dloss = dloss * self.gan_d_weight
  local zero = dloss * 0  -- zeros_like(gan_D_loss)
  local function reg(weight, sigma, noisy, base)
    if not (weight > 0) then return zero:detach() end
    local eps = Rollout.normal(self.rng, noisy:shape(), {dtype = noisy:dtype(), device = noisy:device()}) * sigma
    local lp = self:logits(noisy + eps, t, ctx)
    local g = (lp - base) / sigma
    return (g * g):mean() * weight
  end
  local r1 = reg(self.r1_weight, self.r1_sigma, real, lr)
  local r2 = reg(self.r2_weight, self.r2_sigma, fake, lf)
  return dloss, r1, r2, {critic_timestep = t, noisy_real_logit = lr:detach(), noisy_fake_logit = lf:detach()}
end

local function embeds(c, what)
  if c == nil then error(WHO .. ": " .. what .. " is missing (a table {prompt_embeds = [B, L, D]})", 3) end
  if type(c) == "userdata" then return c end
  if type(c) ~= "table" or c.prompt_embeds == nil then error(WHO .. ": " .. what .. ".prompt_embeds is missing", 3) end
  return c.prompt_embeds
end

-- tr:generator_loss{shape=, cond=, uncond=, clean_latent=, initial_latent=} -> gan_G_loss, {gan_G_loss=, critic_timestep=}
function Trainer:generator_loss(o)
  if type(o) ~= "table" then error(WHO .. ": generator_loss expects a table {shape=, cond=, clean_latent=}", 2) end
  local ctx = embeds(o.cond, "generator_loss: cond")
  local x, t_from, t_to = self:run_generator{shape = o.shape, cond = o.cond, initial_latent = o.initial_latent}
  local loss, t = self:generator_loss_from(x, o.clean_latent, ctx, t_from, t_to)
  return loss, {gan_G_loss = loss:item(), critic_timestep = t}
end

-- tr:critic_loss{...same fields...} -> gan_D_loss + 0.5 * (r1_loss + r2_loss) (what trainer/gan.py backpropagates),
-- {gan_D_loss=, r1_loss=, r2_loss=, critic_timestep=, noisy_real_logit=, noisy_fake_logit=}
function Trainer:critic_loss(o)
  if type(o) ~= "table" then error(WHO .. ": critic_loss expects a table {shape=, cond=, clean_latent=}", 2) end
  local ctx = embeds(o.cond, "critic_loss: cond")
  local x, t_from, t_to
  sfwb.no_grad(function()
    x, t_from, t_to = self:run_generator{shape = o.shape, cond = o.cond, initial_latent = o.initial_latent}
  end)
  local dl, r1, r2, log = self:critic_loss_from(x:detach(), o.clean_latent, ctx, t_from, t_to)
  log.gan_D_loss, log.r1_loss, log.r2_loss = dl:item(), r1:item(), r2:item()
  return dl + (r1 + r2) * 0.5, log
end

-- a data batch: the DMD fields plus the real latents ode_latent[:, -1] (trainer/gan.py fwdbwd_one_step)
function Trainer:batch_args(batch)
  local a = DMD.Trainer.batch_args(self, batch)
  local lat = batch.ode_latent or batch.clean_latent
  if not lat then error(WHO .. ": the dataset rows have no ode_latent (the GAN needs real latents: an LMDB)", 3) end
  a.clean_latent = batch.clean_latent or lat:select(2, lat:size(2)):contiguous()
  a.clean_latent = a.clean_latent:to(self.rollout_opts.device)
  return a
end

local function mean_of(t) return t:float():mean():item() end

-- trainer/gan.py train(): one iteration (the warm-up trains only the heads; generator every dfake_gen_update_ratio)
function Trainer:iteration()
  local info = {}
  local warm = self.discriminator_warmup_steps
  if self.step_count == warm and warm ~= 0 then self:_critic_optimizers(false) end -- "Resetting critic optimizer"
  local in_warmup = self.step_count < warm
  local train_gen = not in_warmup and self.step_count % self.ratio == 0
  if train_gen then
    self.critic:requires_grad_(false)
    self.generator:requires_grad_(true)
    self.opt_g:zero_grad()
    local loss = self:generator_loss(self:batch_args(self.next_batch()))
    ;(loss * self.loss_scale):backward()
    info.generator_loss = loss:item()
    info.gan_G_loss = info.generator_loss
    info.generator_grad_norm = sfwb.clip_grad_norm(self.generator:parameters(), get(self.cfg, "max_grad_norm_generator", 10.0))
    self.opt_g:step()
    if self.ema then self.ema:update() end
  end
  self.generator:requires_grad_(false)
  if in_warmup then
    self.critic:requires_grad_(false)
    for name, p in pairs(self.critic:parameters()) do if Heads.is_head(name) then p:requires_grad_(true) end end
  else
    self.critic:requires_grad_(true)
  end
  self.opt_c:zero_grad()
  self.opt_d:zero_grad()
  local closs, log = self:critic_loss(self:batch_args(self.next_batch()))
  ;(closs * self.loss_scale):backward()
  info.critic_loss = closs:item()
  info.gan_D_loss, info.r1_loss, info.r2_loss = log.gan_D_loss, log.r1_loss, log.r2_loss
  info.critic_grad_norm = sfwb.clip_grad_norm(self.critic:parameters(), get(self.cfg, "max_grad_norm_critic", 10.0))
  self.opt_c:step()
  self.opt_d:step()
  info.real_logit, info.fake_logit = mean_of(log.noisy_real_logit), mean_of(log.noisy_fake_logit)
  info.diff_logit = info.real_logit - info.fake_logit
  info.reg_loss = 0.5 * (info.r1_loss + info.r2_loss)
  if in_warmup then info.warmup_status = 1.0 end
  self.generator:requires_grad_(true)
  self.critic:requires_grad_(true)
  return info
end

-- the training state also holds the critic optimizer's phase (a resumed run inside the warm-up keeps its betas)
function Trainer:load_training_state(path)
  local flat = sfwb.load(path)
  local step = flat.step
  self:_critic_optimizers(step < self.discriminator_warmup_steps)
  return DMD.Trainer.load_training_state(self, path)
end

-- checkpoint as trainer/gan.py save(): {generator, critic[, generator_ema]}; the critic is the wrapper's state
-- dict: the Wan weights under "model.", the heads at the top (_cls_pred_branch.*, _register_tokens.*, _gan_ca_blocks.*)
function Trainer:checkpoint_files()
  local files, ema_saved = DMD.Trainer.checkpoint_files(self)
  local ck = files["model.pt"]
  local critic = {}
  for k, v in pairs(self.critic:state_dict()) do critic[Heads.is_added(k) and k or ("model." .. k)] = v end
  ck.critic = critic
  return files, ema_saved
end

M.Trainer = Trainer
return M
