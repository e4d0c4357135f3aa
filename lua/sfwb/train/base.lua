-- sfwb/train/base.lua — what every trainer shares: the step loop with its log (a line per step when
-- stdout is not a terminal, a line per checkpoint, <logdir>/metrics.jsonl, TensorBoard events with
-- cfg.tensorboard), checkpoints in the original's layout plus a training-state file, and exact resume.
--
-- A trainer class calls Base.install(Trainer) and provides:
--   Trainer:iteration()         -> info   one update: losses, grad norms (numbers), under the original's names
--   Trainer:checkpoint_files()  -> {["model.pt"] = table, ...}, ema_saved   the original's files
--   Trainer:load_checkpoint(dir)          loads the weights from the original's files (any of its layouts)
--   self.optimizers = {generator = opt, critic = opt}   (named; their moments go to the training state)
--   self.next_batch = sfwb.data.cycle(...) (its position is saved), self.ema (optional), self.cfg
--   Trainer:after_iteration()   optional (the default starts the EMA at ema_start_step)
-- and gets tr:step(), tr:train{steps=}, tr:save(dir), tr:resume(dir), tr.step_count, tr.log.
--
-- Resume is exact: the training state (training_state.pt beside model.pt) holds the step, every
-- optimizer's moments and master weights, the EMA when the original's files lack it, the random
-- generator's state and the data position, so N steps + save + resume + M steps equals N + M steps
-- bit for bit. Under several ranks (sfwb.dist) save is collective: every rank's generator state and data
-- position are gathered into the one file rank 0 writes (ranks.seed/offset/drawn, row r = rank r), and a
-- resume at the same world size gives each rank its own row back, bit for bit. At another world size the
-- weights, optimizer moments, EMA and step are restored, rank r < the saved world continues its own RNG
-- stream, a new rank starts a fresh one (the saved rank-0 seed + r, a seed no saved rank used), and every
-- rank keeps the saved count of batches drawn (the sampler's shards differ, so the samples do too); the
-- resume says so in a line. A custom tr.rng with state()/set_state() is saved from rank 0 only. A checkpoint folder is written as <dir>.tmp-PID-N and renamed when complete; an
-- existing one is never overwritten; temporary folders of killed saves are removed on the next save.
local sfwb = require "sfwb"
local json = require "sfwb.json"
local Events = require "sfwb.train.events"

local M = {}
local Base = {}
M.STATE_FILE = "training_state.pt"
M.STATE_VERSION = 1

local function get(cfg, key, default)
  local v = cfg[key]
  if v == nil or (sfwb.config and v == sfwb.config.null) then return default end
  return v
end
M.get = get

function M.install(Trainer)
  for k, v in pairs(Base) do
    if Trainer[k] == nil then Trainer[k] = v end
  end
  return Trainer
end

-- the EMA starts from the current generator when step_count reaches ema_start_step (a trainer without
-- ema_weight has none)
function Base:after_iteration()
  if (self.ema_weight or 0) > 0 and not self.ema and self.step_count == self.ema_start_step then
    self.ema = sfwb.ema(self.generator, self.ema_weight)
  end
end

-- a state dict's keys as the originals' checkpoints hold them ("model." + key)
function M.prefixed(tbl)
  local out = {}
  for k, v in pairs(tbl) do out["model." .. k] = v end
  return out
end

-- common fields; call from the trainer's constructor
function M.init(self, cfg)
  self.step_count = 0
  self.log = {}
  self.optimizers = self.optimizers or {}
  self.rank = self.rank or 0
  return self
end

local function sorted_keys(t)
  local r = {}
  for k in pairs(t) do r[#r + 1] = k end
  table.sort(r)
  return r
end

---------------------------------------------------------------------------------------------------
-- the log: metrics.jsonl and TensorBoard events in cfg.logdir (rank 0)
local function logdir_of(self)
  local d = get(self.cfg, "logdir", nil)
  if d == nil or d == "" then return nil end
  return d
end

function Base:_metrics_sink()
  if self._sink ~= nil then return self._sink or nil end
  local dir = logdir_of(self)
  if not dir or self.rank ~= 0 then self._sink = false return nil end
  sfwb.fs.mkdir(dir)
  local f, err = io.open(dir .. "/metrics.jsonl", "a")
  if not f then error("cannot write " .. dir .. "/metrics.jsonl: " .. tostring(err), 0) end
  f:setvbuf("line")
  local sink = {jsonl = f}
  if get(self.cfg, "tensorboard", false) then sink.events = Events.open(dir) end
  self._sink = sink
  return sink
end

-- the numbers of one step, as logged: losses, grad norms, lr of each optimizer, it/s
function Base:_record(info)
  local rec = {step = info.step}
  for _, k in ipairs(sorted_keys(info)) do
    local v = info[k]
    if k ~= "step" and type(v) == "number" and k ~= "seconds" then rec[k] = v end
  end
  for _, name in ipairs(sorted_keys(self.optimizers)) do
    local g = self.optimizers[name].param_groups
    if g and g[1] then rec["lr_" .. name] = g[1].lr end
  end
  if info.seconds and info.seconds > 0 then rec.it_per_s = 1 / info.seconds end
  return rec
end

local function jsonl_line(rec)
  local parts = {}
  parts[1] = '"step":' .. string.format("%d", rec.step)
  for _, k in ipairs(sorted_keys(rec)) do
    if k ~= "step" then
      local v = rec[k]
      local s
      if v ~= v or v == math.huge or v == -math.huge then s = "null" -- JSON has no NaN/Inf
      elseif math.type(v) == "integer" then s = string.format("%d", v)
      else s = string.format("%.17g", v) end
      parts[#parts + 1] = json.encode(k) .. ":" .. s
    end
  end
  return "{" .. table.concat(parts, ",") .. "}\n"
end

-- tr.log keeps each step's numbers, not its tensors: a step's x0 / predictions (~1 MB at batch 8 of 9 latent
-- frames of 8 x 8) kept for every step grew a 20000-step run by ~25 GB. tr:step() still returns them all.
local function without_tensors(t)
  local out = {}
  for k, v in pairs(t) do
    local ty = type(v)
    if ty == "table" then out[k] = without_tensors(v)
    elseif ty ~= "userdata" then out[k] = v end
  end
  return out
end

---------------------------------------------------------------------------------------------------
-- one iteration, counted, logged, and checkpointed every cfg.log_iters steps
function Base:step()
  local t0 = sfwb.time()
  local info = self:iteration()
  self.step_count = self.step_count + 1
  if self.after_iteration then self:after_iteration() end
  info.step = self.step_count
  info.seconds = sfwb.time() - t0
  self.log[#self.log + 1] = without_tensors(info)
  local sink = self:_metrics_sink()
  if sink then
    local rec = self:_record(info)
    sink.jsonl:write(jsonl_line(rec))
    if sink.events then
      local scalars = {}
      for k, v in pairs(rec) do if k ~= "step" then scalars[k] = v end end
      sink.events:scalars(self.step_count, scalars)
    end
  end
  local dir, every = logdir_of(self), get(self.cfg, "log_iters", 0)
  -- every rank calls save (it gathers the ranks' RNG states; rank 0 writes)
  if dir and every > 0 and self.step_count % every == 0 and not get(self.cfg, "no_save", false) then
    self:save(string.format("%s/checkpoint_model_%06d", dir, self.step_count))
  end
  return info
end

local function progress_text(info, i, n, rate)
  local parts = {string.format("step %d (%d/%d)", info.step, i, n)}
  for _, k in ipairs({"generator_loss", "critic_loss", "loss"}) do
    if type(info[k]) == "number" then parts[#parts + 1] = string.format("%s %.4g", k:gsub("_loss$", ""), info[k]) end
  end
  parts[#parts + 1] = string.format("%.2f it/s  ETA %.0fs", rate, (n - i) / rate)
  return table.concat(parts, "  ")
end

-- runs N iterations with progress (step, losses, rate, ETA): rewritten in place on a terminal, one
-- line per step otherwise (a piped log keeps every step). Returns the per-step log.
function Base:train(o)
  o = o or {}
  local n = o.steps == nil and 1 or o.steps
  if math.type(n) ~= "integer" then
    if type(n) == "number" and n == math.floor(n) then n = math.tointeger(n)
    else error("train: steps must be a whole number >= 0, got " .. tostring(o.steps), 2) end
  end
  if n < 0 then error("train: steps must be >= 0, got " .. n, 2) end
  local quiet = o.quiet or self.rank ~= 0
  local tty = sfwb.fs.isatty(1)
  local pending = false -- a \r progress line is on the terminal: a message must start on a new line
  self._say = function(msg)
    if quiet then return end
    if pending then io.write("\n") pending = false end
    io.write(msg, "\n")
    io.flush()
  end
  local t0 = sfwb.time()
  local ok, err = pcall(function()
    for i = 1, n do
      local info = self:step()
      if not quiet then
        local rate = i / math.max(sfwb.time() - t0, 1e-9)
        local text = progress_text(info, i, n, rate)
        if tty then io.write("\r", text, "   ") pending = true else io.write(text, "\n") end
        io.flush()
      end
    end
  end)
  if pending then io.write("\n") io.flush() end
  self._say = nil
  if not ok then error(err, 0) end
  return self.log
end

function Base:_note(msg)
  if self._say then self._say(msg)
  elseif self.rank == 0 then io.write(msg, "\n") io.flush() end
end

---------------------------------------------------------------------------------------------------
-- the training state: everything a resumed run needs that the original's files lack

local function multi(self) return self.dist ~= nil and (self.world or 1) > 1 end

-- every rank's generator state and data position, {seed = {...}, offset = {...}, drawn = {...}} indexed
-- by rank + 1 (collective under several ranks: all must call it, in the same order)
function Base:_rank_states()
  local seed, offset = sfwb.rng_state()
  local drawn = self.next_batch and self.next_batch.drawn or 0
  if not multi(self) then return {seed = {seed}, offset = {offset}, drawn = {drawn}} end
  local rows = self.dist.all_gather(sfwb.tensor({{seed, offset, drawn}}, {dtype = "i64"})):totable()
  local r = {seed = {}, offset = {}, drawn = {}}
  for i, row in ipairs(rows) do
    r.seed[i], r.offset[i], r.drawn[i] = math.tointeger(row[1]), math.tointeger(row[2]), math.tointeger(row[3])
  end
  return r
end

function Base:training_state(ema_saved, ranks)
  ranks = ranks or self:_rank_states()
  local i = self.rank + 1
  local st = {version = M.STATE_VERSION, step = self.step_count,
              rng = {seed = ranks.seed[i], offset = ranks.offset[i]}, data = {drawn = ranks.drawn[i]},
              ranks = {world = #ranks.seed, seed = sfwb.tensor(ranks.seed, {dtype = "i64"}),
                       offset = sfwb.tensor(ranks.offset, {dtype = "i64"}),
                       drawn = sfwb.tensor(ranks.drawn, {dtype = "i64"})},
              optimizers = {}}
  if self.rng and type(self.rng.state) == "function" then st.trainer_rng = self.rng.state() end
  for name, opt in pairs(self.optimizers) do st.optimizers[name] = opt:state_dict() end
  if self.ema then
    st.ema = {started = true}
    if not ema_saved then st.ema.shadow = self.ema:state_dict() end
  end
  return st
end

-- sfwb.load flattens nested tables to dotted keys: the subtree under prefix
local function subtree(flat, prefix)
  local out, found = {}, false
  local p = prefix .. "."
  for k, v in pairs(flat) do
    if k:sub(1, #p) == p then out[k:sub(#p + 1)] = v found = true end
  end
  return found and out or nil
end
M.subtree = subtree

function Base:load_training_state(path)
  local flat = sfwb.load(path)
  local version = flat.version
  if version ~= M.STATE_VERSION then
    error(string.format("%s: training-state version %s, this sfwb reads %d", path, tostring(version), M.STATE_VERSION), 0)
  end
  self.step_count = flat.step
  for name, opt in pairs(self.optimizers) do
    local sd = subtree(flat, "optimizers." .. name)
    if sd then opt:load_state_dict(sd) end
  end
  local shadow = subtree(flat, "ema.shadow")
  if shadow then
    if not self.ema then self.ema = sfwb.ema(self.generator, self.ema_weight) end
    self.ema:load_state_dict(shadow)
  end
  -- this rank's row of the ranks' states (files before ranks.* hold one: a world of 1)
  local function ints(t, fallback)
    if t == nil then return {fallback} end
    local out = {}
    for j, v in ipairs(t:totable()) do out[j] = math.tointeger(v) end
    return out
  end
  local seeds, offsets = ints(flat["ranks.seed"], flat["rng.seed"]), ints(flat["ranks.offset"], flat["rng.offset"])
  local drawn = ints(flat["ranks.drawn"], flat["data.drawn"] or 0)
  local saved_world, world, r = #seeds, self.world or 1, self.rank
  local seed, offset, pos = seeds[r + 1], offsets[r + 1], drawn[r + 1]
  if saved_world ~= world then
    if seed == nil then seed, offset = seeds[1] + r, 0 end -- a new rank: a stream no saved rank used
    pos = drawn[1]
    self:_note(string.format("resume: %s was written by %d rank(s), this run has %d: weights, optimizer moments, " ..
      "EMA and step restored; RNG streams continue per rank (new ranks start fresh ones) and the data position " ..
      "is the saved count of batches over this world's shards; not bit-exact with an uninterrupted %d-rank run",
      path, saved_world, world, saved_world))
  end
  if self.next_batch and self.next_batch.seek then self.next_batch:seek(pos) end
  sfwb.set_rng_state(seed, offset)
  if self.rng and type(self.rng.set_state) == "function" then self.rng.set_state(subtree(flat, "trainer_rng")) end
  return flat.step
end

---------------------------------------------------------------------------------------------------
-- checkpoints
local function exists(p) return sfwb.fs.stat(p) ~= nil end

-- temporary folders/files of saves that were killed (their process is gone): <name>.tmp-PID-N
local function clean_stale(parent)
  local ok, names = pcall(sfwb.fs.listdir, parent)
  if not ok then return end
  local me = sfwb.fs.pid()
  for _, name in ipairs(names) do
    local pid = tonumber(name:match("%.tmp%-(%d+)%-%d+$") or name:match("%.tmp%-(%d+)%-%d+%.%w+$"))
    if pid and pid ~= me and not sfwb.fs.alive(pid) then pcall(sfwb.fs.rmtree, parent .. "/" .. name) end
  end
end
M.clean_stale = clean_stale

local save_counter = 0

-- writes the original's files and the training state into dir (which must not exist yet)
function Base:save(dir)
  if type(dir) ~= "string" or dir == "" then error("save: a folder path expected", 2) end
  dir = dir:gsub("/+$", "")
  if multi(self) then
    -- collective: every rank's state is gathered, rank 0 writes, every rank learns whether it failed
    local ranks = self:_rank_states()
    local ok, res = true, nil
    if self.rank == 0 then ok, res = pcall(self._write, self, dir, ranks) end
    local failed = sfwb.tensor({ok and 0 or 1}, {dtype = "f64"})
    self.dist.all_reduce(failed, "max")
    if not ok then error(res, 0) end
    if failed:item() > 0 then error("save: rank 0 failed to write " .. dir, 0) end
    return res or dir
  end
  return self:_write(dir)
end

function Base:_write(dir, ranks)
  if exists(dir) then
    error(string.format("save: %s exists; refusing to overwrite a checkpoint (remove it, or save elsewhere)", dir), 0)
  end
  local parent = dir:match("^(.*)/[^/]+$") or "."
  sfwb.fs.mkdir(parent)
  clean_stale(parent)
  save_counter = save_counter + 1
  local tmp = string.format("%s.tmp-%d-%d", dir, sfwb.fs.pid(), save_counter)
  sfwb.fs.mkdir(tmp)
  local first
  local ok, err = pcall(function()
    local files, ema_saved = self:checkpoint_files()
    first = sorted_keys(files)[1]
    for _, name in ipairs(sorted_keys(files)) do sfwb.save(tmp .. "/" .. name, files[name]) end
    sfwb.save(tmp .. "/" .. M.STATE_FILE, self:training_state(ema_saved, ranks))
    local okr, rerr = os.rename(tmp, dir)
    if not okr then error("cannot rename " .. tmp .. " to " .. dir .. ": " .. tostring(rerr), 0) end
  end)
  if not ok then
    pcall(sfwb.fs.rmtree, tmp)
    error(err, 0)
  end
  self:_note(string.format("checkpoint: step %d written to %s", self.step_count, dir))
  return first and (dir .. "/" .. first) or dir
end

-- resume from a checkpoint folder: the original's weights, then (when present) the training state,
-- whose step counts; a folder from the original (no training state) resumes the weights only, at step
-- o.step or cfg.resume_step or 0 — never a number read from the folder's name
function Base:resume(dir, o)
  o = o or {}
  if type(dir) ~= "string" or not exists(dir) then error("resume: no checkpoint folder " .. tostring(dir), 0) end
  dir = dir:gsub("/+$", "")
  self:load_checkpoint(dir)
  local state = dir .. "/" .. M.STATE_FILE
  if exists(state) then
    self:load_training_state(state)
    if o.step and o.step ~= self.step_count then
      error(string.format("resume: %s is at step %d, not %d", dir, self.step_count, o.step), 0)
    end
  else
    local step = o.step or get(self.cfg, "resume_step", nil) or 0
    self.step_count = step
    self:_note(string.format("resume: %s has no %s (a checkpoint of the original): weights restored, optimizer " ..
      "moments, RNG and data position start fresh at step %d", dir, M.STATE_FILE, step))
  end
  return self
end

---------------------------------------------------------------------------------------------------
-- the one-network objectives (CausalDiffusion, ODERegression): a generator, its wrapper and grid, tr.rng,
-- AdamW (lr, beta1, beta2, weight_decay) with global-norm clipping at 10 (hard-coded in trainer/diffusion.py and
-- trainer/ode.py), EMA, checkpoints {generator[, generator_ema]} with "model." keys — on the shared loop above
-- (training state, exact resume, no overwrite). A trainer class sets OneNetwork as its __index fallback and
-- provides generator_loss(args) and batch_args(batch).
local OneNetwork = {}
M.OneNetwork = OneNetwork

local function models_dir(cfg) return get(cfg, "wan_models_dir", os.getenv("SFWB_WAN_MODELS") or "wan_models") end

-- the generator (from parts or cfg), its wrapper, the text encoder, the dataset, optimizer and EMA
function M.one_network(self, cfg, parts, who)
  parts = parts or {}
  local Wrapper = require "sfwb.train.wrapper"
  local Rollout = require "sfwb.train.rollout"
  self.cfg, self.who = cfg, who
  local seed = get(cfg, "seed", 0)
  if seed == 0 then seed = math.floor(sfwb.time() * 1000) % 10000000 end
  self.seed = seed
  sfwb.manual_seed(seed)
  self.rng = {randn = Rollout.default_rng.randn, randint = Rollout.default_rng.randint}
  local mk = get(cfg, "model_kwargs", {})
  self.causal = parts.causal
  if self.causal == nil then self.causal = get(cfg, "generator_type", "causal") ~= "bidirectional" end
  self.nfpb = get(cfg, "num_frame_per_block", 1)
  self.independent_first_frame = get(cfg, "independent_first_frame", false)
  local gen = parts.generator
  local path = models_dir(cfg) .. "/" .. get(mk, "model_name", get(cfg, "generator_name", "Wan2.1-T2V-1.3B"))
  self._t5_dir = path   -- WanTextEncoder's files live beside the DiT (loaded on first use)
  if not gen then
    if not exists(path .. "/config.json") then
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
  self.max_grad_norm = 10.0
  M.init(self, cfg)
  self.optimizers = {generator = self.opt}
  self.ema_weight = get(cfg, "ema_weight", 0) or 0
  self.ema_start_step = get(cfg, "ema_start_step", 0)
  if self.ema_weight > 0 and self.ema_start_step <= 0 then self.ema = sfwb.ema(gen, self.ema_weight) end
  self.device = get(cfg, "device", "cpu")
  return self
end

function OneNetwork:encode(prompts)
  local te = self.text_encoder
  if not te then
    local pth = self._t5_dir .. "/models_t5_umt5-xxl-enc-bf16.pth"
    if not exists(pth) then
      error(self.who .. ": no text encoder: " .. pth .. " is missing (or pass parts.text_encoder)", 3)
    end
    te = sfwb.t5.load(pth, {tokenizer = self._t5_dir .. "/google/umt5-xxl", device = self.device})
    self.text_encoder = te
  end
  if type(te) == "function" then return te(prompts) end
  return te:encode(prompts).prompt_embeds
end

-- the data cycle (seeded shuffle, as the original's DataLoader), made on first use: the dataset may be set
-- after construction
function OneNetwork:batches()
  if not self.next_batch then
    local ds = self.dataset
    if not ds then error(self.who .. ": no dataset (parts.dataset or the config's data_path)", 3) end
    self.next_batch = sfwb.data.loader(ds, {batch = get(self.cfg, "batch_size", 1), shuffle = true,
                                            seed = get(self.cfg, "data_seed", 0)}):cycle()
  end
  return self.next_batch
end

-- one optimizer step of the generator: backward, clip at 10, AdamW, EMA
function OneNetwork:iteration()
  local args = self:batch_args(self:batches()())
  self.opt:zero_grad()
  local loss, log = self:generator_loss(args)
  loss:backward()
  local info = {generator_loss = loss:item(), log = log}
  info.generator_grad_norm = sfwb.clip_grad_norm(self.generator:parameters(), self.max_grad_norm)
  self.opt:step()
  if self.ema then self.ema:update() end
  return info
end

local prefixed = M.prefixed

-- model.pt as the original's diffusion/ode trainers write it: {generator[, generator_ema]}
function OneNetwork:checkpoint_files()
  local ck = {generator = prefixed(self.generator:state_dict())}
  local ema_saved = false
  if self.ema and self.ema_start_step < self.step_count then
    ck.generator_ema = prefixed(self.ema:state_dict())
    ema_saved = true
  end
  return {["model.pt"] = ck}, ema_saved
end

function OneNetwork:load_checkpoint(dir)
  local path = dir .. "/model.pt"
  if not exists(path) then error(self.who .. ": " .. path .. " does not exist", 0) end
  local ck = sfwb.load(path)
  local g, e = {}, {}
  local found = false
  for k, v in pairs(ck) do
    local a = k:match("^generator%.model%.(.*)$")
    if a then g[a] = v; found = true end
    local b = k:match("^generator_ema%.model%.(.*)$")
    if b then e[b] = v end
  end
  if not found then error(self.who .. ": " .. path .. " has no 'generator' entry", 0) end
  if next(e) and self.ema_weight > 0 then
    self.generator:load_state_dict(e)
    self.ema = sfwb.ema(self.generator, self.ema_weight)
  end
  self.generator:load_state_dict(g)
  return self
end

-- the data position is restored into the cycle, which must exist first
function OneNetwork:load_training_state(path)
  if self.dataset then self:batches() end
  return Base.load_training_state(self, path)
end

M.install(OneNetwork)

return M
