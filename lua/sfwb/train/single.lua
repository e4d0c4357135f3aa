-- sfwb/train/single.lua — what the one-network objectives (CausalDiffusion, ODERegression) share:
-- the generator wrapper and its grid, tr.rng (every draw, replayable), model/base.py's _get_timestep,
-- AdamW + global-norm clipping + EMA, the step/train loop with progress, and checkpoints in the
-- original's layout (logdir/checkpoint_model_NNNNNN/model.pt = {generator[, generator_ema]}, "model." keys)
-- with sfwb's exact-resume state beside it (optimizer moments, step, RNG).
local sfwb = require "sfwb"
local Rollout = require "sfwb.train.rollout"
local Wrapper = require "sfwb.train.wrapper"

local M = {}

function M.get(cfg, key, default)
  local v = cfg[key]
  if v == nil or (sfwb.config and v == sfwb.config.null) then return default end
  return v
end
local get = M.get

local function file_exists(p)
  local f = io.open(p, "rb")
  if f then f:close() return true end
  return false
end
M.file_exists = file_exists

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

---------------------------------------------------------------------------------------------------
local Base = {}
Base.__index = Base
M.Base = Base

local function models_dir(cfg) return get(cfg, "wan_models_dir", os.getenv("SFWB_WAN_MODELS") or "wan_models") end

-- the generator (from parts or cfg), its wrapper, the text encoder, the dataset, optimizer and EMA
function M.init(self, cfg, parts, who)
  parts = parts or {}
  self.cfg, self.who = cfg, who
  local seed = get(cfg, "seed", 0)
  if seed == 0 then seed = math.floor(sfwb.time() * 1000) % 10000000 end
  self.seed = seed
  sfwb.manual_seed(seed)
  self.rng = M.default_rng()
  local mk = get(cfg, "model_kwargs", {})
  self.causal = parts.causal
  if self.causal == nil then self.causal = get(cfg, "generator_type", "causal") ~= "bidirectional" end
  self.nfpb = get(cfg, "num_frame_per_block", 1)
  self.independent_first_frame = get(cfg, "independent_first_frame", false)
  local gen = parts.generator
  local path = models_dir(cfg) .. "/" .. get(mk, "model_name", get(cfg, "generator_name", "Wan2.1-T2V-1.3B"))
  self._t5_dir = path   -- WanTextEncoder's files live beside the DiT (loaded on first use)
  if not gen then
    if not file_exists(path .. "/config.json") then
      error(string.format("%s: no Wan model folder at %s (config.json missing); set wan_models_dir or SFWB_WAN_MODELS",
                          who, path), 0)
    end
    gen = sfwb.wan.load(path, {causal = self.causal, num_frame_per_block = self.nfpb,
                               independent_first_frame = self.independent_first_frame,
                               local_attn_size = get(mk, "local_attn_size", -1), sink_size = get(mk, "sink_size", 0),
                               dtype = get(cfg, "dtype", "f32"), device = get(cfg, "device", "cpu")})
  end
  if not parts.generator and get(cfg, "generator_ckpt", nil) then
    gen:load_checkpoint(cfg.generator_ckpt, {ema = false})
  end
  self.generator = gen
  -- WanDiffusionWrapper(**model_kwargs): its grid uses model_kwargs.timestep_shift, default 8.0
  self.G = Wrapper.new(gen, get(mk, "timestep_shift", 8.0), {causal = self.causal,
                                                             checkpoint = get(cfg, "gradient_checkpointing", false)})
  self.scheduler = self.G.scheduler
  self.text_encoder = parts.text_encoder
  self.dataset = parts.dataset
  gen:requires_grad_(true)
  self.opt = sfwb.optim.adamw(gen:parameters(), {lr = get(cfg, "lr", 2e-6),
    betas = {get(cfg, "beta1", 0.9), get(cfg, "beta2", 0.999)}, weight_decay = get(cfg, "weight_decay", 0.01)})
  self.max_grad_norm = 10.0   -- hard-coded in trainer/diffusion.py and trainer/ode.py
  self.step_count = 0
  self.ema_weight = get(cfg, "ema_weight", 0) or 0
  self.ema_start_step = get(cfg, "ema_start_step", 0)
  if self.ema_weight > 0 and self.ema_start_step <= 0 then self.ema = sfwb.ema(gen, self.ema_weight) end
  self.device = get(cfg, "device", "cpu")
  self.log = {}
  return self
end

function Base:encode(prompts)
  local te = self.text_encoder
  if not te then
    local pth = self._t5_dir .. "/models_t5_umt5-xxl-enc-bf16.pth"
    if not file_exists(pth) then
      error(self.who .. ": no text encoder: " .. pth .. " is missing (or pass parts.text_encoder)", 3)
    end
    te = sfwb.t5.load(pth, {tokenizer = self._t5_dir .. "/google/umt5-xxl", device = self.device})
    self.text_encoder = te
  end
  if type(te) == "function" then return te(prompts) end
  return te:encode(prompts).prompt_embeds
end

function Base:next_batch()
  if not self._cycle then
    local ds = self.dataset
    if not ds then error(self.who .. ": no dataset (parts.dataset or the config's data_path)", 3) end
    local ld = sfwb.data.loader(ds, {batch = get(self.cfg, "batch_size", 1), shuffle = true,
                                     seed = get(self.cfg, "data_seed", 0)})
    self._cycle = ld:cycle()
    self.batches_drawn = self.batches_drawn or 0
    for _ = 1, self.batches_drawn do self._cycle() end -- a resumed run continues the data order
  end
  self.batches_drawn = (self.batches_drawn or 0) + 1
  return self._cycle()
end

-- one optimizer step of the generator: backward, clip at 10, AdamW, EMA
function Base:step()
  local t0 = sfwb.time()
  local args = self:batch_args(self:next_batch())
  self.opt:zero_grad()
  local loss, log = self:generator_loss(args)
  loss:backward()
  local info = {step = self.step_count, generator_loss = loss:item()}
  info.generator_grad_norm = sfwb.clip_grad_norm(self.generator:parameters(), self.max_grad_norm)
  self.opt:step()
  if self.ema then self.ema:update() end
  self.step_count = self.step_count + 1
  if self.ema_weight > 0 and not self.ema and self.step_count == self.ema_start_step then
    self.ema = sfwb.ema(self.generator, self.ema_weight)
  end
  info.log = log
  local logdir, every = get(self.cfg, "logdir", nil), get(self.cfg, "log_iters", 0)
  if logdir and logdir ~= "" and every > 0 and self.step_count % every == 0 and not get(self.cfg, "no_save", false) then
    self:save(string.format("%s/checkpoint_model_%06d", logdir, self.step_count))
  end
  info.seconds = sfwb.time() - t0
  self.log[#self.log + 1] = info
  return info
end

function Base:train(o)
  o = o or {}
  local n = o.steps or 1
  local t0 = sfwb.time()
  for i = 1, n do
    local info = self:step()
    if not o.quiet then
      local rate = i / math.max(sfwb.time() - t0, 1e-9)
      io.write(string.format("\rstep %d/%d  loss %.4g  %.2f it/s  ETA %.0fs   ", i, n, info.generator_loss, rate,
                             (n - i) / rate))
      io.flush()
    end
  end
  if not o.quiet then io.write("\n") end
  return self.log
end

local function prefixed(tbl)
  local out = {}
  for k, v in pairs(tbl) do out["model." .. k] = v end
  return out
end

-- model.pt as the original writes it ({generator[, generator_ema]}), plus sfwb_state.safetensors
-- (optimizer moments, step, RNG state, data position, EMA shadow) for an exact resume
function Base:save(dir)
  sfwb.fs.mkdir(dir, {parents = true})
  local ck = {generator = prefixed(self.generator:state_dict())}
  if self.ema and self.ema_start_step < self.step_count then ck.generator_ema = prefixed(self.ema:state_dict()) end
  sfwb.save(dir .. "/model.pt", ck)
  local st = {}
  for i, e in pairs(self.opt:state_dict().state) do
    for k, v in pairs(e) do if type(v) == "userdata" then st[string.format("opt.state.%d.%s", i, k)] = v end end
  end
  local seed, offset = sfwb.rng_state()
  st.step_count = sfwb.tensor({self.step_count}, {dtype = "i64"})
  st.rng = sfwb.tensor({seed, offset}, {dtype = "i64"})
  st.batches_drawn = sfwb.tensor({self.batches_drawn or 0}, {dtype = "i64"})
  if self.ema then for k, v in pairs(self.ema:state_dict()) do st["ema." .. k] = v end end
  sfwb.save(dir .. "/sfwb_state.safetensors", st)
  return dir .. "/model.pt"
end

function Base:resume(dir)
  local path = dir .. "/model.pt"
  if not file_exists(path) then error(self.who .. ": " .. path .. " does not exist", 2) end
  local ck = sfwb.load(path)
  local g, e = {}, {}
  local found = false
  for k, v in pairs(ck) do
    local a = k:match("^generator%.model%.(.*)$")
    if a then g[a] = v; found = true end
    local b = k:match("^generator_ema%.model%.(.*)$")
    if b then e[b] = v end
  end
  if not found then error(self.who .. ": " .. path .. " has no 'generator' entry", 2) end
  self.generator:load_state_dict(g)
  if next(e) and self.ema_weight > 0 then
    local keep = self.generator:clone()
    self.generator:load_state_dict(e)
    self.ema = sfwb.ema(self.generator, self.ema_weight)
    self.generator:load_state_dict(keep:state_dict())
  end
  local sp = dir .. "/sfwb_state.safetensors"
  if file_exists(sp) then
    local st = sfwb.load(sp)
    local osd = {}
    for k, v in pairs(st) do
      local n = k:match("^opt%.(.*)$")
      if n then osd[n] = v end
    end
    if next(osd) then self.opt:load_state_dict(osd) end
    if st.step_count then self.step_count = math.tointeger(st.step_count:totable()[1]) end
    if st.rng then
      local r = st.rng:totable()
      sfwb.set_rng_state(math.tointeger(r[1]), math.tointeger(r[2]))
    end
    if st.batches_drawn then
      self.batches_drawn = math.tointeger(st.batches_drawn:totable()[1])
      self._cycle = nil
    end
    local shadow = {}
    for k, v in pairs(st) do
      local n = k:match("^ema%.(.*)$")
      if n then shadow[n] = v end
    end
    if next(shadow) and self.ema_weight > 0 then
      local keep = self.generator:clone()
      self.generator:load_state_dict(shadow)
      self.ema = sfwb.ema(self.generator, self.ema_weight)
      self.generator:load_state_dict(keep:state_dict())
    end
  else
    local step = tonumber(dir:match("checkpoint_model_(%d+)"))
    if step then self.step_count = step end
  end
  return self
end

return M
