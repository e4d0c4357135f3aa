-- sfwb/dist/fsdp.lua — FSDP FULL_SHARD semantics for sfwb models over sfwb.dist (MPI on the CPU, NCCL on
-- cuda, the emulated NCCL on emu:0 per process).
--
-- A model's parameters (sorted by name) are laid end to end in one flat buffer, padded to a multiple of
-- the world size; rank r owns elements [r*S, (r+1)*S) (S = padded / world) and keeps only that shard,
-- its gradient shard and, for a trained model, the AdamW moments (and f32 master weights) of the shard.
--   gather()   all-gathers the shards into a full flat buffer and rebinds every parameter tensor onto
--              its slice of it (the model object is unchanged: it looks its parameters up by name)
--   release()  rebinds every parameter onto a single zero element: the full buffer is freed
--   optimizer  reduce-scatters the flat gradient (averaged over ranks), clips by the global norm (the
--              shards' squared norms summed over ranks), steps AdamW on the shard, and gathers again
-- Departure from torch FSDP: parameters are gathered per model for the whole training step, not per
-- transformer block; so the step's peak holds each model's full parameters once, while gradients and
-- optimizer state are sharded throughout and everything is sharded between steps. "hybrid_full" /
-- "hybrid_zero2" (shard within a node, replicate across nodes) equal "full" on one node; across nodes
-- sfwb has no node-local communicator yet, so they shard over every rank (same results, a note says so).
local sfwb = require "sfwb"
local M = {}

local SIZE = {f32 = 4, f64 = 8, bf16 = 2, f16 = 2, i64 = 8, i32 = 4, u8 = 1, bool = 1}
local function nbytes(t) return t:numel() * (SIZE[t:dtype()] or 4) end

-- the originals' names (utils/distributed.py fsdp_wrap): full, hybrid_full, hybrid_zero2, no_shard;
-- "hybrid" as shorthand for hybrid_full
local STRATEGIES = {full = "full", hybrid_full = "hybrid_full", hybrid = "hybrid_full", hybrid_zero2 = "hybrid_zero2",
                    no_shard = "no_shard"}

-- the strategy of a config: nil for replicated training (no key, "no_shard", or one rank)
function M.strategy(cfg, world)
  local s = cfg.sharding_strategy
  if s == nil or s == false or (sfwb.config and s == sfwb.config.null) then return nil end
  local name = type(s) == "string" and STRATEGIES[s:lower()]
  if not name then
    error(("config: sharding_strategy must be one of full, hybrid_full (hybrid), hybrid_zero2, no_shard; got %s")
      :format(tostring(s)), 3)
  end
  if name == "no_shard" or (world or 1) <= 1 then return nil end
  if name ~= "full" and not M.warned_hybrid then
    -- hybrid: shard within a node, replicate across nodes. On one node that is full sharding; across
    -- nodes sfwb shards over every rank (the same numbers; more traffic between nodes), said once
    local per_node = tonumber(os.getenv("OMPI_COMM_WORLD_LOCAL_SIZE") or os.getenv("MPI_LOCALNRANKS") or "")
    if per_node and per_node < world then
      M.warned_hybrid = true
      io.stderr:write(("sfwb: sharding_strategy %s over %d nodes shards across all %d ranks (no node-local "
        .. "communicator yet): the same results as %s, with more traffic between nodes\n"):format(s, world // per_node, world, s))
    end
  end
  return name
end

local Sharded = {}
Sharded.__index = Sharded

local function sorted_names(params)
  local names = {}
  for k in pairs(params) do names[#names + 1] = k end
  table.sort(names)
  return names
end

-- shard(model [, dist]): the model must be full (replicated, identical on every rank) when sharded
function M.shard(model, dist)
  dist = dist or sfwb.dist
  local world, rank = dist.world_size(), dist.rank()
  local params = model:parameters()
  local names = sorted_names(params)
  if #names == 0 then error("fsdp.shard: the model has no parameters", 2) end
  local first = params[names[1]]
  local dtype, device = first:dtype(), first:device()
  -- every parameter starts 64-byte aligned in the flat buffer, as a fresh allocation would: kernels
  -- (OpenBLAS, vector loads) then take the same paths, and round the same way, as for the replica
  local align = 64 // (SIZE[dtype] or 4)
  local offsets, total = {}, 0
  for _, k in ipairs(names) do
    local p = params[k]
    if p:dtype() ~= dtype or p:device() ~= device then
      error(("fsdp.shard: parameter %s is %s on %s, but %s is %s on %s (one flat buffer needs one dtype and device)")
        :format(k, p:dtype(), p:device(), names[1], dtype, device), 2)
    end
    total = (total + align - 1) // align * align
    offsets[k] = total
    total = total + p:numel()
  end
  local S = (total + world - 1) // world
  local self = setmetatable({model = model, dist = dist, world = world, rank = rank, names = names,
                             params = params, offsets = offsets, total = total, S = S, padded = S * world,
                             dtype = dtype, device = device}, Sharded)
  -- my shard, cut from the full parameters
  sfwb.no_grad(function()
    self.shard = sfwb.zeros({S}, {dtype = dtype, device = device})
    local lo, hi = rank * S, math.min((rank + 1) * S, total)
    for _, k in ipairs(names) do
      local p, o = params[k], offsets[k]
      local a, b = math.max(lo, o), math.min(hi, o + p:numel())
      if a < b then self.shard:narrow(1, a - lo + 1, b - a):copy_(p:reshape({p:numel()}):narrow(1, a - o + 1, b - a)) end
    end
  end)
  -- the pieces of parameters my shard holds: {name, start in the shard (1-based), length}
  self.segments = {}
  for _, k in ipairs(names) do
    local o, n = offsets[k], params[k]:numel()
    local a, b = math.max(rank * S, o), math.min((rank + 1) * S, o + n)
    if a < b then self.segments[#self.segments + 1] = {name = k, start = a - rank * S + 1, len = b - a, poff = a - o} end
  end
  self.gathered = true -- the parameters still hold the full weights they came with
  self:release()
  return self
end

-- all-gather the full parameters and rebind the model's tensors onto them
function Sharded:gather()
  if self.gathered then return self end
  local full = self.dist.all_gather(self.shard:view({1, self.S})):view({self.padded})
  for _, k in ipairs(self.names) do self.dist.rebind(self.params[k], full, self.offsets[k]) end
  self.full = full
  self.gathered = true
  return self
end

-- free the full parameters (the shard stays)
function Sharded:release()
  if not self.gathered then return self end
  for _, k in ipairs(self.names) do self.dist.unbind(self.params[k]) end
  self.full = nil
  self.gathered = false
  return self
end

-- after the full parameters were written (load_state_dict while gathered): take my shard from them
function Sharded:reshard_from_full()
  if not self.gathered then error("fsdp: reshard_from_full needs the parameters gathered", 2) end
  sfwb.no_grad(function()
    self.shard:copy_(self.full:narrow(1, self.rank * self.S + 1, self.S))
  end)
  return self
end

-- fn() with the full parameters present; the previous state is restored after
function Sharded:with_full(fn, ...)
  local was = self.gathered
  self:gather()
  local res = table.pack(pcall(fn, ...))
  if not was then self:release() end
  if not res[1] then error(res[2], 0) end
  return table.unpack(res, 2, res.n)
end

-- the flat gradient (zeros where a parameter has none, and in the alignment gaps), reduce-scattered
-- and averaged: my [S] shard, and the set of parameters that had a gradient; the full gradients are dropped
function Sharded:reduce_grads()
  local had = {}
  local flat = sfwb.zeros({self.padded}, {dtype = self.dtype, device = self.device})
  sfwb.no_grad(function()
    for _, k in ipairs(self.names) do
      local p = self.params[k]
      local g = p.grad
      if g then flat:narrow(1, self.offsets[k] + 1, p:numel()):copy_(g:reshape({p:numel()})); had[k] = true end
      p.grad = nil
    end
  end)
  flat = flat:view({self.world, self.S})
  local g = self.dist.reduce_scatter(flat, "sum"):view({self.S})
  flat = nil
  g:mul_(1 / self.world) -- the same average the replicated trainer takes (sum, then / world)
  return g, had
end

-- bytes this rank holds for the model: its shard and, while gathered, the full buffer
function Sharded:bytes()
  local b = nbytes(self.shard)
  if self.full then b = b + nbytes(self.full) end
  return b
end

-- a full state dict (the original's files: torch FSDP's FULL_STATE_DICT): clones of the full weights
function Sharded:state_dict()
  return self:with_full(function()
    local sd = {}
    for _, k in ipairs(self.names) do sd[k] = self.params[k]:clone() end
    return sd
  end)
end

-- load a full state dict (any world size wrote it) and keep my shard of it
function Sharded:load_state_dict(sd, opts)
  return self:with_full(function()
    self.model:load_state_dict(sd, opts)
    self:reshard_from_full()
  end)
end

M.Sharded = Sharded

-- ---------------------------------------------------------------------------------------------
-- AdamW on a shard: torch.optim.AdamW over the original parameters, as the originals' FSDP
-- (use_orig_params=True): each parameter's piece of the shard has its own moments and step count, and a
-- parameter without a gradient this step is skipped (no weight decay, no step), as torch skips None grads.
local ShardedAdamW = {}
ShardedAdamW.__index = ShardedAdamW
ShardedAdamW.sharded = true

function M.adamw(sh, opts)
  opts = opts or {}
  local betas = opts.betas or {0.9, 0.999}
  return setmetatable({sh = sh, state = {}, param_groups = {{
    lr = opts.lr or 1e-3, betas = {betas[1], betas[2]}, eps = opts.eps or 1e-8,
    weight_decay = opts.weight_decay == nil and 1e-2 or opts.weight_decay}}}, ShardedAdamW)
end

function ShardedAdamW:zero_grad()
  self.grad_shard = nil
  for _, k in ipairs(self.sh.names) do self.sh.params[k].grad = nil end
end

-- reduce-scatter the gradients, clip by the global norm (torch clip_grad_norm_: coef = max/(norm+1e-6)
-- when below 1), step AdamW on the shard, gather the updated parameters; returns the norm before clipping
function ShardedAdamW:clip_and_step(max_norm)
  local sh, dist = self.sh, self.sh.dist
  local g, had = sh:reduce_grads()
  local sq = sfwb.tensor({sfwb._train.sum_sq(g)}, {dtype = "f64"})
  dist.all_reduce(sq, "sum")
  local norm = math.sqrt(sq:totable()[1])
  sfwb.no_grad(function()
    if max_norm then
      local coef = max_norm / (norm + 1e-6)
      if coef < 1 then g:mul_(coef) end
    end
    local pg = self.param_groups[1]
    for _, seg in ipairs(sh.segments) do
      if had[seg.name] then
        local st = self.state[seg.name]
        if not st then
          st = {step = 0, exp_avg = sfwb.zeros({seg.len}, {dtype = "f32", device = sh.device}),
                exp_avg_sq = sfwb.zeros({seg.len}, {dtype = "f32", device = sh.device})}
          if sh.dtype ~= "f32" then st.master = sh.shard:narrow(1, seg.start, seg.len):float():contiguous() end
          self.state[seg.name] = st
        end
        st.step = st.step + 1
        sfwb._train.adamw(sh.shard:narrow(1, seg.start, seg.len), g:narrow(1, seg.start, seg.len), st.exp_avg,
                          st.exp_avg_sq, st.master, pg.lr, pg.betas[1], pg.betas[2], pg.eps, pg.weight_decay, st.step)
      end
    end
  end)
  self.grad_shard = g -- kept until the next zero_grad, as FSDP keeps the sharded .grad
  if sh.gathered then sh.gathered = false; sh:gather() end -- refresh the full parameters
  return norm
end

function ShardedAdamW:step() return self:clip_and_step(nil) end

-- the full optimizer state (torch's AdamW state_dict layout, as sfwb.optim.adamw writes it: parameters
-- numbered by sorted name, each with its step, moments and master weights) gathered from the shards:
-- collective, every rank calls it; kept until used, so rank 0 alone can then write it
function ShardedAdamW:prepare_state_dict()
  local sh, dist = self.sh, self.sh.dist
  local names = sh.names
  local steps = sfwb.zeros({#names}, {dtype = "f64"})
  local index = {}
  for i, k in ipairs(names) do index[k] = i end
  local fields = {"exp_avg", "exp_avg_sq"}
  if sh.dtype ~= "f32" then fields[3] = "master" end
  local flats = {}
  sfwb.no_grad(function()
    for _, f in ipairs(fields) do flats[f] = sfwb.zeros({sh.S}, {dtype = "f32", device = sh.device}) end
    for _, seg in ipairs(sh.segments) do
      local st = self.state[seg.name]
      if st then
        steps[index[seg.name]] = st.step
        for _, f in ipairs(fields) do flats[f]:narrow(1, seg.start, seg.len):copy_(st[f]) end
      end
    end
  end)
  dist.all_reduce(steps, "max") -- a parameter's step is the same on every rank that holds a piece
  local full = {}
  for _, f in ipairs(fields) do full[f] = dist.all_gather(flats[f]:view({1, sh.S})):view({sh.padded}) end
  local st, stepv = {}, steps:totable()
  for i, k in ipairs(names) do
    if stepv[i] > 0 then
      local p = sh.params[k]
      local e = {step = sfwb.tensor(stepv[i], {dtype = "f32"})}
      for _, f in ipairs(fields) do e[f] = full[f]:narrow(1, sh.offsets[k] + 1, p:numel()):view(p:shape()):clone() end
      st[i - 1] = e
    end
  end
  local g = self.param_groups[1]
  local ids = {}
  for i = 1, #names do ids[i] = i - 1 end
  self.prepared = {state = st, param_groups = {{lr = g.lr, betas = {g.betas[1], g.betas[2]}, eps = g.eps,
                   weight_decay = g.weight_decay, amsgrad = false, maximize = false, params = ids}}}
  return self.prepared
end

function ShardedAdamW:state_dict()
  return self.prepared or self:prepare_state_dict()
end

-- a full optimizer state (any world size, or a replicated run, wrote it): each rank keeps its pieces
function ShardedAdamW:load_state_dict(sd)
  local sh = self.sh
  local list = {}
  for i, k in ipairs(sh.names) do list[i] = sh.params[k] end
  -- read the file's layout (flattened keys, 0-based lists, shape checks) with sfwb.optim's own loader,
  -- onto stand-ins of the parameters' shapes (the real ones may be released)
  local stand = {}
  for i, p in ipairs(list) do stand[i] = sfwb.zeros(p:shape(), {dtype = p:dtype(), device = p:device()}) end
  local full = sfwb.optim.adamw(stand)
  full:load_state_dict(sd)
  self.state = {}
  for _, seg in ipairs(sh.segments) do
    local i
    for j, k in ipairs(sh.names) do if k == seg.name then i = j break end end
    local fs = full.state[i]
    if fs then
      local function piece(t) return t:reshape({-1}):narrow(1, seg.poff + 1, seg.len):float():contiguous():clone() end
      self.state[seg.name] = {step = fs.step, exp_avg = piece(fs.exp_avg), exp_avg_sq = piece(fs.exp_avg_sq),
                              master = sh.dtype ~= "f32" and piece(fs.master) or nil}
    end
  end
  local g, mine = full.param_groups[1], self.param_groups[1]
  mine.lr, mine.eps, mine.weight_decay, mine.betas = g.lr, g.eps, g.weight_decay, {g.betas[1], g.betas[2]}
end

function ShardedAdamW:bytes()
  local b = 0
  for _, st in pairs(self.state) do
    for _, k in ipairs({"exp_avg", "exp_avg_sq", "master"}) do if st[k] then b = b + nbytes(st[k]) end end
  end
  if self.grad_shard then b = b + nbytes(self.grad_shard) end
  return b
end

return M
