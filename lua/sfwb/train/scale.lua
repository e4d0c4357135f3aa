-- sfwb/train/scale.lua — scaling a trainer past one GPU, installed on a trainer instance at the end of
-- its construction, so the trainer's own code only calls its optimizers and clip_and_step:
--   cfg.sharding_strategy = "full" | "hybrid" (hybrid_full) | "hybrid_zero2" (cfg.ranks_per_node)  FSDP FULL_SHARD (sfwb/dist/fsdp.lua) of the generator, the
--       critic and the frozen teacher: parameters, gradients and optimizer state sharded across ranks,
--       the parameters gathered block by block as the models run (the model's block hooks) and freed
--       after, gradients reduce-scattered as each block's backward ends; checkpoints are full state dicts
--       written by rank 0 (the original's files, and the training state with full optimizer moments),
--       so a run resumes at any world size.
--   cfg.gradient_accumulation_steps = k (> 1)  LongLive's whole-cycle accumulation (trainer/distillation.py
--       train()): zero both optimizers; k times: one batch, the generator loss / k backward (on
--       generator-update steps) then the critic loss / k backward on the same batch; then clip and step
--       the generator (+ EMA) and the critic. The logged losses are the mean over the k micro-batches.
local sfwb = require "sfwb"
local Fsdp = require "sfwb.dist.fsdp"
local M = {}

local get = require("sfwb.train.base").get -- a config value, the default for nil or YAML null

-- the models of a DMD-style trainer, in a fixed order (collectives run in the same order on every rank)
local function models_of(tr)
  local out = {}
  for _, k in ipairs({"generator", "critic", "teacher"}) do
    if tr[k] then out[#out + 1] = {name = k, model = tr[k]} end
  end
  return out
end

-- a step gathers the models without block hooks whole; the others gather block by block as they run
local function gather_step(tr) for _, s in ipairs(tr.shards) do if not s.sh.hooked then s.sh:gather() end end end
local function release_all(tr) for _, s in ipairs(tr.shards) do s.sh:release() end end

-- fn(...) with every model's full parameters present (each unit's state restored after)
local function with_full(tr, fn, ...)
  local args = table.pack(...)
  local function nest(i)
    local s = tr.shards[i]
    if not s then return fn(table.unpack(args, 1, args.n)) end
    return s.sh:with_full(nest, i + 1)
  end
  return nest(1)
end

-- fn() with the full parameters of one model (the EMA reads and starts from the generator's: the
-- original's EMA_FSDP runs under FSDP.summon_full_params too)
local function with_full_of(tr, name, fn)
  local sh = tr.shard_of and tr.shard_of[name]
  if sh then return sh:with_full(fn) end
  return fn()
end

-- does the base loop (sfwb/train/base.lua) checkpoint after the iteration that makes step `n`?
local function saves_at(tr, n)
  local cfg = tr.cfg
  local dir, every = get(cfg, "logdir", nil), get(cfg, "log_iters", 0)
  return dir ~= nil and dir ~= "" and every > 0 and n % every == 0 and not get(cfg, "no_save", false)
end

-- the originals' per-model FSDP wrap strategy keys (size | transformer; fsdp_wrap's default: size)
local WRAP_KEY = {generator = "generator_fsdp_wrap_strategy", critic = "fake_score_fsdp_wrap_strategy",
                  teacher = "real_score_fsdp_wrap_strategy"}

local function install_sharding(tr, strategy)
  local Class = getmetatable(tr).__index
  tr.sharding_strategy = strategy
  tr.shards = {}
  local dist = tr.dist or sfwb.dist
  local per_node = strategy ~= "full" and Fsdp.ranks_per_node(tr.cfg, dist.world_size()) or nil
  for _, m in ipairs(models_of(tr)) do
    local wrap = get(tr.cfg, WRAP_KEY[m.name], "size")
    tr.shards[#tr.shards + 1] = {name = m.name, sh = Fsdp.shard(m.model, dist, {wrap = wrap, strategy = strategy,
                                                                              ranks_per_node = per_node})}
  end
  local by = {}
  for _, s in ipairs(tr.shards) do by[s.name] = s.sh end
  tr.shard_of = by
  -- the optimizers become AdamW on the shards, with the same hyperparameters
  local function reopt(opt, sh)
    local g = opt.param_groups[1]
    return Fsdp.adamw(sh, {lr = g.lr, betas = g.betas, eps = g.eps, weight_decay = g.weight_decay})
  end
  if tr.opt_g and by.generator then tr.opt_g = reopt(tr.opt_g, by.generator) end
  if tr.opt_c and by.critic then tr.opt_c = reopt(tr.opt_c, by.critic) end
  if tr.optimizers then
    tr.optimizers.generator = tr.opt_g or tr.optimizers.generator
    tr.optimizers.critic = tr.opt_c or tr.optimizers.critic
  end
  local function sharded_opts(self)
    local r = {}
    for _, name in ipairs({"generator", "critic"}) do
      local o = self.optimizers and self.optimizers[name]
      if o and o.sharded then r[#r + 1] = o end
    end
    return r
  end
  -- the full optimizer state is gathered by every rank before rank 0 writes a checkpoint
  local function prepare(self) for _, o in ipairs(sharded_opts(self)) do o:prepare_state_dict() end end
  local function unprepare(self) for _, o in ipairs(sharded_opts(self)) do o.prepared = nil end end
  local iteration = tr.iteration
  tr.iteration = function(self, ...)
    local info = iteration(self, ...)
    if saves_at(self, self.step_count + 1) then
      -- rank 0 alone writes the checkpoint after this iteration: every rank gathers for it now
      for _, sh in ipairs(self.shards) do sh.sh:gather() end
      prepare(self)
    end
    return info
  end
  local after = tr.after_iteration
  if after then
    tr.after_iteration = function(self, ...)
      local args = table.pack(...)
      local function run() return after(self, table.unpack(args, 1, args.n)) end
      if (self.ema_weight or 0) > 0 and not self.ema then return with_full_of(self, "generator", run) end
      return run()
    end
  end
  local function wrap_ema(self)
    local ema = self.ema
    if not ema or ema._fsdp then return end
    local update = ema.update
    ema.update = function(e, ...)
      local args = table.pack(...)
      return with_full_of(self, "generator", function() return update(e, table.unpack(args, 1, args.n)) end)
    end
    ema._fsdp = true
  end
  -- a step gathers parameters as it needs them and leaves only shards behind
  local step = tr.step
  tr.step = function(self, ...)
    wrap_ema(self)
    gather_step(self)
    self._in_step = true
    local res = table.pack(pcall(step, self, ...))
    self._in_step = false
    unprepare(self)
    release_all(self)
    if not res[1] then error(res[2], 0) end
    return table.unpack(res, 2, res.n)
  end
  -- save/resume are collective (every rank calls them; the base save gathers every rank's RNG state and
  -- rank 0 writes), as FSDP's full state dicts; inside a step everything is already gathered
  tr.save = function(self, dir)
    if self._in_step then return Class.save(self, dir) end
    return with_full(self, function()
      prepare(self)
      local ok, res = pcall(Class.save, self, dir)
      unprepare(self)
      if not ok then error(res, 0) end
      return res
    end)
  end
  tr.resume = function(self, dir, o)
    return with_full(self, function()
      local r = Class.resume(self, dir, o)
      for _, s in ipairs(self.shards) do s.sh:reshard_from_full() end
      return r
    end)
  end
  -- the full parameters for reading (tests, evaluation): every rank must call it
  tr.with_full_params = function(self, fn, ...) return with_full(self, fn, ...) end
end

-- bytes this rank holds for the trained state: parameters, gradients and optimizer state of the
-- generator, critic and teacher (sharded or not); the EMA shadow is left out (replicated either way)
function M.state_bytes(tr)
  local SIZE = {f32 = 4, f64 = 8, bf16 = 2, f16 = 2}
  local function nb(t) return t:numel() * (SIZE[t:dtype()] or 4) end
  local b = 0
  if tr.shards then
    for _, s in ipairs(tr.shards) do b = b + s.sh:bytes() end
    for _, o in ipairs({tr.opt_g, tr.opt_c}) do b = b + o:bytes() end
    return b
  end
  for _, m in ipairs(models_of(tr)) do
    for _, p in pairs(m.model:parameters()) do
      b = b + nb(p)
      if p.grad then b = b + nb(p.grad) end
    end
  end
  for _, o in ipairs({tr.opt_g, tr.opt_c}) do
    for _, st in pairs(o.state) do
      for _, k in ipairs({"exp_avg", "exp_avg_sq", "master"}) do if st[k] then b = b + nb(st[k]) end end
    end
  end
  return b
end

local function install_accumulation(tr, k)
  local dmd = require "sfwb.train.dmd"
  local cfg = tr.cfg
  tr.gradient_accumulation_steps = k
  -- one update of the base loop (sfwb/train/base.lua counts, logs and checkpoints it)
  tr.iteration = function(self)
    local info = {}
    local train_g = self.step_count % get(cfg, "dfake_gen_update_ratio", 5) == 0
    if train_g then self.opt_g:zero_grad() end
    self.opt_c:zero_grad()
    local gl, cl, dn = 0, 0, 0
    for _ = 1, k do
      -- streaming training (sfwb/train/streaming.lua): each loss trains on the sequence's next chunk
      local batch = (not self.stream) and self:batch_args(self.next_batch()) or nil
      if train_g then
        local loss, gi = self:generator_loss(batch)
        local scaled = loss / k
        scaled:backward()
        gl = gl + loss:item() / k
        dn = dn + (gi and gi.dmdtrain_gradient_norm or 0) / k
      end
      local closs = self:critic_loss(batch)
      local scaled = closs / k
      scaled:backward()
      cl = cl + closs:item() / k
    end
    if train_g then
      info.generator_loss, info.dmd_gradient_norm = gl, dn
      info.generator_grad_norm = dmd.clip_and_step(require("sfwb.train.lora").trainable(self.generator), self.opt_g,
        get(cfg, "max_grad_norm_generator", 10.0), self.dist, self.world)
      if self.ema then self.ema:update() end
    end
    info.critic_loss = cl
    info.critic_grad_norm = dmd.clip_and_step(require("sfwb.train.lora").trainable(self.critic), self.opt_c,
      get(cfg, "max_grad_norm_critic", 10.0), self.dist, self.world)
    return info
  end
end

-- for the trainers that have neither (the one-network objectives, sfwb/train/single.lua): a sharding
-- strategy that would shard (more than one rank) or gradient_accumulation_steps > 1 is refused by name
-- rather than silently trained replicated / one batch at a time
function M.refuse(cfg, who, world)
  world = world or sfwb.dist.world_size()
  local s = Fsdp.strategy(cfg, world) -- also checks the name
  if s then
    error(("%s: sharding_strategy %s is not implemented for this trainer (it keeps a full replica per rank); "
      .. "use no_shard, or one rank"):format(who, tostring(cfg.sharding_strategy)), 3)
  end
  local k = get(cfg, "gradient_accumulation_steps", 1)
  if k ~= 1 then
    error(("%s: gradient_accumulation_steps %s is not implemented for this trainer (one batch per step)")
      :format(who, tostring(k)), 3)
  end
end

-- called by the trainer's constructor once its models, optimizers and EMA exist (weights identical on
-- every rank: rank 0's were broadcast)
function M.install(tr)
  local cfg = tr.cfg
  local k = get(cfg, "gradient_accumulation_steps", 1)
  if math.type(k) ~= "integer" and not (type(k) == "number" and k == math.floor(k)) or k < 1 then
    error(("config: gradient_accumulation_steps must be an integer >= 1, got %s"):format(tostring(k)), 3)
  end
  if k > 1 then install_accumulation(tr, math.floor(k)) end
  local strategy = Fsdp.strategy(cfg, tr.world)
  if strategy then install_sharding(tr, strategy) end
  return tr
end

return M
