-- sfwb/train/dmd.lua — Self-Forcing DMD training (trainer/distillation.py + model/dmd.py): a causal
-- generator trained by distribution matching against a frozen teacher (real score) and a trained
-- critic (fake score), field for field from the original YAML configs.
--   tr = sfwb.train.dmd(cfg [, parts])   -- parts: preloaded {generator=, real_score=, fake_score=,
--                                        --   text_encoder=, dataset=} (tests, REPL), else loaded from cfg
--   tr:step()  tr:train{steps=N}  tr:save(dir)  tr:resume(dir)  tr.generator  tr.critic  tr.ema  tr.step_count
-- The loop, log, checkpoints and exact resume are the shared ones of sfwb.train.base.
local sfwb = require "sfwb"
local Wrapper = require "sfwb.train.wrapper"
local Rollout = require "sfwb.train.rollout"
local Base = require "sfwb.train.base"
local Lora = require "sfwb.train.lora"

local M = {}
local Trainer = {}
Trainer.__index = Trainer

local get = require("sfwb.train.base").get -- a config value, the default for nil or YAML null

local function models_dir(cfg) return get(cfg, "wan_models_dir", os.getenv("SFWB_WAN_MODELS") or "wan_models") end

local function file_exists(p)
  local f = io.open(p, "rb")
  if f then f:close() return true end
  return false
end

-- the networks, from cfg unless given; how.no_teacher: no real score (the GAN trainer has none)
local function load_parts(cfg, parts, how)
  local mk = get(cfg, "model_kwargs", {})
  local gen_name = get(cfg, "generator_name", "Wan2.1-T2V-1.3B")
  local causal = get(cfg, "generator_type", "causal") ~= "bidirectional"
  local dir = models_dir(cfg)
  local common = {dtype = get(cfg, "dtype", "f32"), device = get(cfg, "device", "cpu")}
  local function load(name, extra)
    local path = dir .. "/" .. name
    if not file_exists(path .. "/config.json") then
      error(string.format("train.dmd: no Wan model folder at %s (config.json missing); set wan_models_dir or SFWB_WAN_MODELS", path), 0)
    end
    local o = {}
    for k, v in pairs(common) do o[k] = v end
    for k, v in pairs(extra or {}) do o[k] = v end
    return sfwb.wan.load(path, o)
  end
  local p = {}
  p.generator = parts.generator or load(gen_name, {
    causal = causal, num_frame_per_block = get(cfg, "num_frame_per_block", 1),
    independent_first_frame = get(cfg, "independent_first_frame", false),
    local_attn_size = get(mk, "local_attn_size", -1), sink_size = get(mk, "sink_size", 0)})
  if not parts.generator and get(cfg, "generator_ckpt", nil) then
    p.generator:load_checkpoint(cfg.generator_ckpt, {ema = false})
  end
  if not (how and how.no_teacher) then
    p.real_score = parts.real_score or load(get(cfg, "real_name", "Wan2.1-T2V-14B"), {causal = false})
  end
  p.fake_score = parts.fake_score or load(get(cfg, "fake_name", "Wan2.1-T2V-1.3B"), {causal = false})
  p.text_encoder = parts.text_encoder
  if not p.text_encoder then
    local tdir = dir .. "/" .. gen_name
    p.text_encoder = sfwb.t5.load(tdir .. "/models_t5_umt5-xxl-enc-bf16.pth", {tokenizer = tdir .. "/google/umt5-xxl"})
  end
  p.dataset = parts.dataset
  if not p.dataset then
    local path = get(cfg, "data_path", nil)
    if not path then error("train.dmd: data_path is not set in the config", 0) end
    if get(cfg, "distribution_loss", "dmd") == "dmd_switch" then -- LongLive's TwoTextDataset
      local sp = get(cfg, "switch_prompt_path", nil)
      if not sp then error("train.dmd_switch: switch_prompt_path is not set in the config", 0) end
      p.dataset = sfwb.data.two_text(path, sp)
    elseif get(cfg, "data_type", "text_file") == "text_folder" then
      p.dataset = sfwb.data.text_folder(path, get(cfg, "data_max_count", nil))
    else
      p.dataset = sfwb.data.text_file(path)
    end
  end
  return p
end

-- prompt batches: an endless, seeded, rank-sharded cycle (DistributedSampler order, as the original).
-- A plain Lua list of prompt strings is accepted as a dataset too (REPL, tests).
local function batches(ds, cfg, rank, world, seed)
  if type(ds) == "table" and type(ds[1]) == "string" then
    local rows = {}
    for i, p in ipairs(ds) do rows[i] = {prompts = p, idx = i - 1} end
    ds = rows
  end
  local ld = sfwb.data.loader(ds, {batch = get(cfg, "batch_size", 1), shuffle = true, seed = seed, rank = rank, world = world})
  return ld:cycle()
end

-- o (for trainers built on this one): {schema = the config schema (default schema.dmd), no_teacher = true (no
-- real score, no guidance scale: the GAN), no_scale = true (no sharding / accumulation installed)}
function M.new(cfg, parts, o)
  o = o or {}
  if type(cfg) ~= "table" then error("train.dmd: expects a config table (sfwb.config.load(...))", 2) end
  -- every key checked before anything loads: unknown keys warned (nearest known key), wrong types refused
  sfwb.config.check(cfg, o.schema or require("sfwb.train.schema").dmd)
  parts = parts or {}
  local self = setmetatable({cfg = cfg}, Trainer)
  -- ranks come from an existing launcher (mpirun/srun) after sfwb.dist.init(); one process = world 1
  local dist = sfwb.dist
  self.rank = (dist and dist.rank and dist.rank()) or 0
  self.world = (dist and dist.world_size and dist.world_size()) or 1
  self.dist = self.world > 1 and dist or nil

  -- seed: 0 means a random seed shared by all ranks (rank 0 draws, broadcast)
  local seed = get(cfg, "seed", 0)
  if seed == 0 then
    seed = math.floor(sfwb.time() * 1000) % 10000000
    if self.dist then
      local t = sfwb.tensor({seed}, {dtype = "i64"}); self.dist.broadcast(t, 0); seed = t:totable()[1]
    end
  end
  self.seed = seed
  sfwb.manual_seed(seed + self.rank)

  local p = load_parts(cfg, parts, o)
  local mk = get(cfg, "model_kwargs", {})
  -- the generator wrapper's grid: model_kwargs.timestep_shift, else WanDiffusionWrapper's default 8.0
  local gen_shift = get(mk, "timestep_shift", 8.0)
  -- the score wrappers are built without timestep_shift in the original, so they use the default 8.0
  local score_shift = get(cfg, "score_timestep_shift", 8.0)
  local ckpt = get(cfg, "gradient_checkpointing", false) -- on G and F, as the original DMD
  self.G = Wrapper.new(p.generator, gen_shift, {causal = get(cfg, "generator_type", "causal") ~= "bidirectional",
                                                checkpoint = ckpt})
  self.R = p.real_score and Wrapper.new(p.real_score, score_shift, {causal = false}) or nil
  self.F = Wrapper.new(p.fake_score, score_shift, {causal = false, checkpoint = ckpt})
  self.generator, self.critic, self.teacher = p.generator, p.fake_score, p.real_score
  self.text_encoder = p.text_encoder
  self.dataset = p.dataset
  -- Self-Forcing's DistributedSampler keeps its default seed 0 (LongLive 2.0 passes the run seed)
  self.next_batch = batches(p.dataset, cfg, self.rank, self.world, get(cfg, "data_seed", 0))

  -- every rank starts from rank 0's weights (FSDP-style replicas; the original loads the same files)
  if self.dist then
    sfwb.no_grad(function()
      for _, m in ipairs({p.generator, p.fake_score, p.real_score}) do
        local params, names = m:parameters(), {}
        for k in pairs(params) do names[#names + 1] = k end
        table.sort(names)
        for _, k in ipairs(names) do self.dist.broadcast(params[k], 0) end
      end
    end)
  end

  -- trainability: G and F train, R frozen
  p.generator:requires_grad_(true)
  p.fake_score:requires_grad_(true)
  if p.real_score then p.real_score:requires_grad_(false) end
  -- LongLive's `adapter`: LoRA adapters trained, base weights frozen (sfwb/train/lora.lua)
  local lora = Lora.settings(cfg)
  if lora then Lora.attach(self, lora) end

  local wd = get(cfg, "weight_decay", 0.01)
  self.opt_g = sfwb.optim.adamw(Lora.trainable(p.generator), {lr = get(cfg, "lr", 2e-6),
    betas = {get(cfg, "beta1", 0.0), get(cfg, "beta2", 0.999)}, weight_decay = wd})
  self.opt_c = sfwb.optim.adamw(Lora.trainable(p.fake_score), {lr = get(cfg, "lr_critic", get(cfg, "lr", 2e-6)),
    betas = {get(cfg, "beta1_critic", 0.0), get(cfg, "beta2_critic", 0.999)}, weight_decay = wd})

  -- the few-step schedule (warped through the generator grid, trailing 0 stripped)
  local steps = {}
  for _, v in ipairs(get(cfg, "denoising_step_list", {1000, 750, 500, 250})) do steps[#steps + 1] = v end
  if steps[#steps] == 0 then steps[#steps] = nil end
  if get(cfg, "warp_denoising_step", false) then steps = self.G.scheduler:warp(steps):totable() end
  self.steps = steps

  Base.init(self, cfg)
  self.optimizers = {generator = self.opt_g, critic = self.opt_c}
  self.ema_weight = get(cfg, "ema_weight", 0)
  if lora then self.ema_weight = 0 end -- LongLive: "EMA creation skipped (disabled in LoRA mode)"
  self.ema_start_step = get(cfg, "ema_start_step", 0)
  -- EMA starts from the current (checkpoint-loaded) generator, never from the base Wan weights
  if self.ema_weight > 0 and self.ema_start_step <= 0 then self.ema = sfwb.ema(p.generator, self.ema_weight) end

  local shape = get(cfg, "image_or_video_shape", {1, 21, 16, 60, 104})
  self.latent_shape = {shape[1], shape[2], shape[3], shape[4], shape[5]}
  self.rollout_opts = {
    generator = self.G, steps = steps, nfpb = get(cfg, "num_frame_per_block", 1), -- DMD's default 1
    independent_first_frame = get(cfg, "independent_first_frame", false),
    same_step_across_blocks = get(cfg, "same_step_across_blocks", true),
    last_step_only = get(cfg, "last_step_only", false), context_noise = get(cfg, "context_noise", 0),
    num_training_frames = get(cfg, "num_training_frames", 21),
    min_num_training_frames = get(cfg, "min_num_training_frames", 21),
    grad_window = get(cfg, "slice_last_frames", 21),
    detach_kv_cache = get(cfg, "detach_kv_cache", false), -- sfwb's clean variant (docs/training.md)
    dtype = get(cfg, "dtype", "f32"), device = get(cfg, "device", "cpu"), dist = self.dist,
    vae = parts.vae,   -- re-encodes the first frame of rollouts longer than slice_last_frames
  }
  -- model/dmd.py's hyperparameters, with its defaults where the config has no key
  self.num_train_timestep = get(cfg, "num_train_timestep", 1000)
  self.timestep_shift = get(cfg, "timestep_shift", 1.0)     -- the score timesteps' shift (dmd.py default 1.0)
  self.ts_schedule = get(cfg, "ts_schedule", true)
  self.ts_schedule_max = get(cfg, "ts_schedule_max", false)
  self.min_score_timestep = get(cfg, "min_score_timestep", 0)
  if o.no_teacher then
    self.real_guidance_scale, self.fake_guidance_scale = nil, nil
  elseif get(cfg, "real_guidance_scale", nil) ~= nil then
    -- as the original: both keys are read together
    self.real_guidance_scale = cfg.real_guidance_scale
    self.fake_guidance_scale = get(cfg, "fake_guidance_scale", nil)
    if self.fake_guidance_scale == nil then
      error("train.dmd: the config sets real_guidance_scale but not fake_guidance_scale (model/dmd.py reads both)", 2)
    end
  else
    self.real_guidance_scale = get(cfg, "guidance_scale", nil)
    if self.real_guidance_scale == nil then
      error("train.dmd: the config sets neither guidance_scale nor real_guidance_scale (model/dmd.py needs one)", 2)
    end
    self.fake_guidance_scale = 0.0 -- the original ignores fake_guidance_scale without real_guidance_scale
  end
  -- every random draw of the trainer goes through tr.rng (replaceable: replay, parity runs)
  self.rng = {randn = Rollout.default_rng.randn, randint = Rollout.default_rng.randint}
  -- lora_ckpt: LongLive loads both adapters (and the step) after attaching them
  if lora and get(cfg, "lora_ckpt", nil) then
    self.step_count = Lora.load(self, cfg.lora_ckpt) or self.step_count
  end
  -- LongLive's streaming long tuning (and dmd_switch): the sequence state and its iteration
  if get(cfg, "streaming_training", false) then require("sfwb.train.streaming").install(self) end
  -- sharding_strategy / gradient_accumulation_steps (sfwb/train/scale.lua)
  if not o.no_scale then require("sfwb.train.scale").install(self) end
  return self
end

-- text conditioning of a batch; the negative prompt's embedding is computed once and cached
function Trainer:encode(prompts)
  local te = self.text_encoder
  if type(te) == "function" then return te(prompts) end
  return te:encode(prompts).prompt_embeds
end

function Trainer:negative(B)
  if not self._neg then
    local neg = {}
    for i = 1, B do neg[i] = get(self.cfg, "negative_prompt", "") end
    self._neg = self:encode(neg)
  end
  return self._neg
end

-- score timesteps as model/dmd.py (_get_timestep with uniform_timestep): one integer per sample drawn
-- through tr.rng as randint(lo, hi, {B, 1}), shifted when timestep_shift > 1 (default 1.0: no shift),
-- clamped to [2%, 98%] of num_train_timestep, repeated over F frames. `draws` (a list of B integers)
-- replaces the draw (tests).
function Trainer:score_timesteps(B, F, t_from, t_to, draws)
  local ntt = self.num_train_timestep
  local lo = (self.ts_schedule and t_to ~= nil) and t_to or self.min_score_timestep
  local hi = (self.ts_schedule_max and t_from ~= nil) and t_from or ntt
  draws = draws or Rollout.ints(self.rng, lo, hi, {B, 1})
  local shift = self.timestep_shift
  local min_step, max_step = math.floor(0.02 * ntt), math.floor(0.98 * ntt)
  local vals = {}
  for b = 1, B do
    local t = draws[b]
    if shift > 1 then t = shift * (t / 1000) / (1 + (shift - 1) * t / 1000) * 1000 end
    t = math.max(min_step, math.min(max_step, t))
    vals[b] = t
  end
  return sfwb.tensor(vals, {dtype = "f32"}):view({B, 1}):expand({B, F}):contiguous()
end

local function add_noise(sched, x, n, t)
  local s = x:shape()
  local flat = {s[1] * s[2], s[3], s[4], s[5]}
  return sched:add_noise(x:reshape(flat), n:reshape(flat), t:reshape({s[1] * s[2]})):view(s)
end

-- nan_to_num(g): NaN -> 0 (the normaliser can be 0 for a degenerate sample)
local function nan_to_zero(g)
  local z = sfwb.zeros(g:shape(), {dtype = g:dtype(), device = g:device()})
  return sfwb.where(g:isnan(), z, g)
end

-- the conditioning of one call: {prompt_embeds=, clip_fea=, y=} (a bare tensor is prompt_embeds)
local function embeds(c, what)
  if c == nil then error("train.dmd: " .. what .. " is missing (a table {prompt_embeds = [B, L, D]})", 3) end
  if type(c) == "userdata" then return c, {} end
  if type(c) ~= "table" or c.prompt_embeds == nil then
    error("train.dmd: " .. what .. ".prompt_embeds is missing", 3)
  end
  return c.prompt_embeds, {clip_fea = c.clip_fea, y = c.y}
end

-- the DMD loss for a generated x (with its graph) at score timesteps t [B, F] with noise n: the
-- gradient reaches x only, as d loss/dx = g / N (model/dmd.py compute_distribution_matching_loss).
-- batch: {negative = uncond prompt_embeds, mask = leading frames excluded, clip_fea=, y=}
function Trainer:dmd_loss_from(x, t, n, ctx, batch)
  batch = batch or {}
  local B = x:size(1)
  local target, gnorm
  sfwb.no_grad(function()
    local xd = x:detach()
    local xt = add_noise(self.G.scheduler, xd, n, t)
    local extra = {clip_fea = batch.clip_fea, y = batch.y}
    local neg = batch.negative or self:negative(B)
    local _, x0_fake = self.F:forward(xt, t, ctx, extra)
    local fgs = self.fake_guidance_scale
    if fgs ~= 0 then
      local _, x0_fu = self.F:forward(xt, t, neg, extra)
      x0_fake = x0_fake + (x0_fake - x0_fu) * fgs
    end
    local s = self.real_guidance_scale
    local _, x0_c = self.R:forward(xt, t, ctx, extra)
    local _, x0_u = self.R:forward(xt, t, neg, extra)
    local x0_real = x0_c + (x0_c - x0_u) * s
    local g = x0_fake - x0_real
    local norm = (xd - x0_real):abs():reshape({B, -1}):mean(2, true):view({B, 1, 1, 1, 1})
    g = nan_to_zero(g / norm)
    gnorm = g:abs():mean():item()
    target = xd:to("f64") - g:to("f64")
  end)
  local xs, ts = x, target
  if batch.mask then -- leading frames excluded from the loss
    local F = x:size(2)
    xs = x:narrow(2, batch.mask + 1, F - batch.mask)
    ts = target:narrow(2, batch.mask + 1, F - batch.mask)
  elseif batch.frames then -- {first (0-based), count}: LongLive's streaming gradient_mask (whole frames)
    xs = x:narrow(2, batch.frames[1] + 1, batch.frames[2])
    ts = target:narrow(2, batch.frames[1] + 1, batch.frames[2])
  end
  local d = xs:to("f64") - ts
  return (d * d):mean() * 0.5, gnorm
end

-- the training rollout (model/base.py _run_generator): x [B, F, C, H, W] with the exit steps' graph,
-- t_from, t_to (the exit step's interval, nil unless same_step_across_blocks), mask (leading frames
-- left out of the loss, nil when none). o: {shape = {B, F, C, H, W}, cond = {prompt_embeds=, ...},
-- initial_latent = nil}
function Trainer:run_generator(o)
  if type(o) ~= "table" then error("train.dmd: run_generator expects a table {shape=, cond=, initial_latent=}", 2) end
  local ctx, extra = embeds(o.cond, "run_generator: cond")
  local shape = o.shape or self.latent_shape
  if #shape ~= 5 then error("train.dmd: run_generator: shape must be {B, F, C, H, W}", 2) end
  local ro = {}
  for k, v in pairs(self.rollout_opts) do ro[k] = v end
  ro.rng = self.rng
  ro.vae = ro.vae or self.vae
  local x, mask, t_from, t_to = Rollout.run_generator(ro, shape,
    {ctx = ctx, clip_fea = extra.clip_fea, y = extra.y, initial_latent = o.initial_latent})
  return x, t_from, t_to, mask
end

-- the DMD generator loss (model/dmd.py generator_loss): rollout, score timesteps, noise, loss.
-- o: {shape = {B, F, C, H, W}, cond = {prompt_embeds=}, uncond = {prompt_embeds=}, clean_latent = nil,
-- initial_latent = nil}; returns loss, {dmdtrain_gradient_norm = number, timestep = [B, F] tensor}
function Trainer:generator_loss(o)
  if type(o) ~= "table" then error("train.dmd: generator_loss expects a table {shape=, cond=, uncond=}", 2) end
  local ctx, extra = embeds(o.cond, "generator_loss: cond")
  local neg = embeds(o.uncond, "generator_loss: uncond")
  local x, t_from, t_to, mask = self:run_generator{shape = o.shape, cond = o.cond, initial_latent = o.initial_latent}
  local B, F = x:size(1), x:size(2)
  local t = self:score_timesteps(B, F, t_from, t_to)
  local n = Rollout.normal(self.rng, x:shape(), {dtype = x:dtype(), device = x:device()})
  local loss, gnorm = self:dmd_loss_from(x, t, n, ctx, {clip_fea = extra.clip_fea, y = extra.y, mask = mask,
                                                        negative = neg})
  return loss, {dmdtrain_gradient_norm = gnorm, timestep = t, frames = F}
end

-- the critic flow-matching loss on a generated (detached) x at timesteps t with noise n
function Trainer:critic_loss_from(x, t, n, ctx, batch)
  batch = batch or {}
  local xt = add_noise(self.G.scheduler, x, n, t)
  local _, x0_p = self.F:forward(xt, t, ctx, {clip_fea = batch.clip_fea, y = batch.y})
  -- back to flow with the GENERATOR grid, as the original (a deliberate sigma_8 / sigma_5 mismatch)
  local v_p = self.G:x0_to_flow(x0_p, xt, t)
  local r = v_p - (n - x)
  if batch.frames then r = r:narrow(2, batch.frames[1] + 1, batch.frames[2]) end -- the streaming gradient_mask
  return (r * r):mean()
end

-- the critic (fake score) loss (model/dmd.py critic_loss) on a fresh, gradient-free rollout; same
-- fields as generator_loss; returns loss, {critic_timestep = [B, F] tensor}
function Trainer:critic_loss(o)
  if type(o) ~= "table" then error("train.dmd: critic_loss expects a table {shape=, cond=, uncond=}", 2) end
  local ctx, extra = embeds(o.cond, "critic_loss: cond")
  local x, t_from, t_to
  sfwb.no_grad(function()
    x, t_from, t_to = self:run_generator{shape = o.shape, cond = o.cond, initial_latent = o.initial_latent}
  end)
  x = x:detach()
  local t = self:score_timesteps(x:size(1), x:size(2), t_from, t_to)
  local n = Rollout.normal(self.rng, x:shape(), {dtype = x:dtype(), device = x:device()})
  return self:critic_loss_from(x, t, n, ctx, extra), {critic_timestep = t}
end

-- the fields of generator_loss / critic_loss for a data batch (trainer/distillation.py fwdbwd_one_step)
function Trainer:batch_args(batch)
  local prompts = batch.prompts
  if type(prompts) == "string" then prompts = {prompts} end
  local B = #prompts
  local shape = {B, self.latent_shape[2], self.latent_shape[3], self.latent_shape[4], self.latent_shape[5]}
  return {shape = shape, cond = {prompt_embeds = self:encode(prompts), clip_fea = batch.clip_fea, y = batch.y},
          uncond = {prompt_embeds = self:negative(B)}, initial_latent = batch.initial_latent}
end

-- data-parallel gradient average over ranks (the reduce FSDP does), then global-norm clip and step
local function clip_and_step(params, opt, max_norm, dist, world)
  if opt.sharded then return opt:clip_and_step(max_norm) end -- FSDP: reduce-scatter, sharded clip + step
  if dist then
    local names = {}
    for k in pairs(params) do names[#names + 1] = k end
    table.sort(names) -- the same collective order on every rank
    for _, k in ipairs(names) do
      local g = params[k].grad
      if g then dist.all_reduce(g); g:mul_(1 / world) end
    end
  end
  local norm = sfwb.clip_grad_norm(params, max_norm)
  opt:step()
  return norm
end

-- one iteration: a generator update every dfake_gen_update_ratio steps, a critic update every step
-- (sfwb.train.base counts it, logs it and checkpoints every log_iters)
function Trainer:iteration()
  local cfg = self.cfg
  local info = {}
  local ratio = get(cfg, "dfake_gen_update_ratio", 5)
  if self.step_count % ratio == 0 then
    self.opt_g:zero_grad()
    local loss, gi = self:generator_loss(self:batch_args(self.next_batch()))
    loss:backward()
    info.generator_loss = loss:item()
    info.dmd_gradient_norm = gi.dmdtrain_gradient_norm
    info.generator_grad_norm = clip_and_step(Lora.trainable(self.generator), self.opt_g, get(cfg, "max_grad_norm_generator", 10.0),
                                             self.dist, self.world)
    if self.ema then self.ema:update() end
  end
  self.opt_c:zero_grad()
  local closs = self:critic_loss(self:batch_args(self.next_batch()))
  closs:backward()
  info.critic_loss = closs:item()
  info.critic_grad_norm = clip_and_step(Lora.trainable(self.critic), self.opt_c, get(cfg, "max_grad_norm_critic", 10.0),
                                          self.dist, self.world)
  return info
end

-- checkpoint as Self-Forcing writes it: {generator, critic[, generator_ema]} with "model." keys (the EMA
-- starts in Base's after_iteration)
local prefixed = Base.prefixed

function Trainer:checkpoint_files()
  if self.lora then return {["model.pt"] = Lora.checkpoint(self)}, false end -- LongLive's LoRA checkpoint
  local ck = {generator = prefixed(self.generator:state_dict()), critic = prefixed(self.critic:state_dict())}
  local ema_saved = false
  if self.ema and self.ema_start_step < self.step_count then
    ck.generator_ema = prefixed(self.ema:state_dict())
    ema_saved = true
  end
  return {["model.pt"] = ck}, ema_saved
end

-- the weights of a checkpoint folder: model.pt ({generator, critic, generator_ema}) or the Self-Forcing-Plus
-- layout of separate generator.pt / critic.pt / generator_ema.pt (tr:resume(dir) also reads the training state)
function Trainer:load_checkpoint(dir)
  local function strip(tbl)
    local out = {}
    for k, v in pairs(tbl) do
      local name = k:gsub("^model%.", ""):gsub("_fsdp_wrapped_module%.", ""):gsub("_orig_mod%.", "")
      out[name] = v
    end
    return out
  end
  local function sub(t, key)
    local out, found = {}, false
    for k, v in pairs(t) do
      if k:sub(1, #key + 1) == key .. "." then out[k:sub(#key + 2)] = v; found = true end
    end
    return found and out or nil
  end
  if self.lora and file_exists(dir .. "/model.pt") then
    Lora.load(self, dir .. "/model.pt")
    return self
  end
  if file_exists(dir .. "/model.pt") then
    local ck = sfwb.load(dir .. "/model.pt")
    local g, c, e = sub(ck, "generator"), sub(ck, "critic"), sub(ck, "generator_ema")
    if not g then error("train.dmd: " .. dir .. "/model.pt has no 'generator' entry", 2) end
    self.generator:load_state_dict(strip(g))
    if c then self.critic:load_state_dict(strip(c)) end
    if e and self.ema_weight > 0 then
      local saved = self.generator:clone()
      self.generator:load_state_dict(strip(e))
      self.ema = sfwb.ema(self.generator, self.ema_weight)
      self.generator:load_state_dict(saved:state_dict())
    end
  else
    local any = false
    if file_exists(dir .. "/generator_ema.pt") and self.ema_weight > 0 then
      self.generator:load_state_dict(strip(sfwb.load(dir .. "/generator_ema.pt")))
      self.ema = sfwb.ema(self.generator, self.ema_weight)
      any = true
    end
    if file_exists(dir .. "/generator.pt") then
      self.generator:load_state_dict(strip(sfwb.load(dir .. "/generator.pt"))); any = true
    end
    if file_exists(dir .. "/critic.pt") then
      self.critic:load_state_dict(strip(sfwb.load(dir .. "/critic.pt"))); any = true
    end
    if not any then error("train.dmd: " .. dir .. " holds neither model.pt nor generator.pt/critic.pt/generator_ema.pt", 0) end
  end
  return self
end

Base.install(Trainer)
M.Trainer = Trainer
M.clip_and_step = clip_and_step
return M
