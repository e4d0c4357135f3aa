-- sfwb/dist/fsdp.lua — FSDP FULL_SHARD semantics for sfwb models over sfwb.dist (MPI on the CPU, NCCL on
-- cuda, the emulated NCCL on emu:0 per process).
--
-- A model's parameters (sorted by name) are laid end to end in flat buffers (units, below), padded to a
-- multiple of the shard group's size N; its rank r owns elements [r*S, (r+1)*S) (S = padded / N) and keeps only that shard,
-- its gradient shard and, for a trained model, the AdamW moments (and f32 master weights) of the shard.
--   gather()   all-gathers the shards into a full flat buffer and rebinds every parameter tensor onto
--              its slice of it (the model object is unchanged: it looks its parameters up by name)
--   release()  rebinds every parameter onto a single zero element: the full buffer is freed
--   optimizer  reduce-scatters the flat gradient (averaged over ranks), clips by the global norm (the
--              shards' squared norms summed over ranks), steps AdamW on the shard, and gathers again
-- Units as torch's auto-wrap makes them (shard() below): per transformer block or per model, each
-- gathered just around its use and freed after.
-- "full": the shard group is the world. "hybrid_full" (HYBRID_SHARD): shard within a node, replicate
-- across nodes: the shard group is the node's ranks (sfwb.dist.split), gathers stay inside the node, and
-- gradients are reduce-scattered within the node, then all-reduced across the nodes among the ranks
-- holding the same shard. "hybrid_zero2" (_HYBRID_SHARD_ZERO2): the same, but a block's gathered
-- parameters are kept from its forward to the end of the step (not gathered again in backward). Nodes
-- are cfg.ranks_per_node consecutive ranks, else SFWB_RANKS_PER_NODE, else the launcher's local size
-- (OMPI_COMM_WORLD_LOCAL_SIZE, MPI_LOCALNRANKS), else the world (one node).
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
  return name
end

-- ranks per node for the hybrid strategies (see the head of this file); it must divide the world size
function M.ranks_per_node(cfg, world)
  local v = cfg and cfg.ranks_per_node
  if v == nil or (sfwb.config and v == sfwb.config.null) then
    v = tonumber(os.getenv("SFWB_RANKS_PER_NODE") or os.getenv("OMPI_COMM_WORLD_LOCAL_SIZE") or os.getenv("MPI_LOCALNRANKS") or "")
  end
  v = v or world
  if math.type(v) ~= "integer" and not (type(v) == "number" and v == math.floor(v)) or v < 1 or world % v ~= 0 then
    error(("config: ranks_per_node must be a positive integer dividing the world size %d, got %s"):format(world, tostring(v)), 2)
  end
  return math.floor(v)
end

local Sharded = {}
Sharded.__index = Sharded

local function sorted(list)
  table.sort(list)
  return list
end

-- a flat unit over `names` (sorted): every parameter 64-byte aligned in the flat buffer, as a fresh
-- allocation would be (kernels then take the same paths, and round the same way, as for the replica);
-- padded to a multiple of the world size; rank r owns [r*S, (r+1)*S)
local function new_unit(self, names, block)
  local params, dtype, device = self.params, self.dtype, self.device
  local align = 64 // (SIZE[dtype] or 4)
  local offsets, total = {}, 0
  for _, k in ipairs(names) do
    local p = params[k]
    if p:dtype() ~= dtype or p:device() ~= device then
      error(("fsdp.shard: parameter %s is %s on %s, but %s is %s on %s (one flat buffer needs one dtype and device)")
        :format(k, p:dtype(), p:device(), self.names[1], dtype, device), 3)
    end
    total = (total + align - 1) // align * align
    offsets[k] = total
    total = total + p:numel()
  end
  local world, rank = self.nshard, self.shard_rank
  local S = (total + world - 1) // world
  local u = {names = names, offsets = offsets, total = total, S = S, padded = S * world, block = block,
             gathered = true} -- the parameters still hold the full weights they came with
  sfwb.no_grad(function()
    u.shard = sfwb.zeros({S}, {dtype = dtype, device = device})
    local lo, hi = rank * S, math.min((rank + 1) * S, total)
    for _, k in ipairs(names) do
      local p, o = params[k], offsets[k]
      local a, b = math.max(lo, o), math.min(hi, o + p:numel())
      if a < b then u.shard:narrow(1, a - lo + 1, b - a):copy_(p:reshape({p:numel()}):narrow(1, a - o + 1, b - a)) end
    end
  end)
  -- the pieces of parameters my shard holds: {name, start in the shard (1-based), length, offset in the parameter}
  u.segments = {}
  for _, k in ipairs(names) do
    local o, n = offsets[k], params[k]:numel()
    local a, b = math.max(rank * S, o), math.min((rank + 1) * S, o + n)
    if a < b then u.segments[#u.segments + 1] = {name = k, unit = u, start = a - rank * S + 1, len = b - a, poff = a - o} end
  end
  return u
end

-- torch's size_based_auto_wrap_policy threshold (the originals' fsdp_wrap default min_num_params)
M.MIN_NUM_PARAMS = 50000000

-- shard(model [, dist [, opts]]): the model must be full (replicated, identical on every rank) when sharded.
-- opts.strategy: "full" (default), "hybrid_full" or "hybrid_zero2" with opts.ranks_per_node.
-- opts.wrap, the originals' *_fsdp_wrap_strategy: "transformer" gives every transformer block
-- ("blocks.<i>.") a flat unit of its own and one more to the rest (embeddings, head); "size" (the
-- originals' default) does so when a block holds >= opts.min_num_params (5e7) parameters (Wan-14B's
-- blocks: ~0.35e9 each), else keeps one unit for the whole model (Wan-1.3B's blocks hold ~0.04e9 each:
-- torch wraps its block list as one unit). A model with block hooks (sfwb.wan) gathers its units as it
-- runs: the rest around each forward call, each block around its forward (prefetching the next) and
-- again for its recomputation in backward; any other model is gathered by the caller (gather/release).
function M.shard(model, dist, opts)
  dist = dist or sfwb.dist
  opts = opts or {}
  local world, rank = dist.world_size(), dist.rank()
  local strategy = opts.strategy or "full"
  local per_node = strategy == "full" and world or (opts.ranks_per_node or M.ranks_per_node(nil, world))
  if world % per_node ~= 0 then
    error(("fsdp.shard: ranks_per_node %d does not divide the world size %d"):format(per_node, world), 2)
  end
  local params = model:parameters()
  local names = {}
  for k in pairs(params) do names[#names + 1] = k end
  sorted(names)
  if #names == 0 then error("fsdp.shard: the model has no parameters", 2) end
  local first = params[names[1]]
  local self = setmetatable({model = model, dist = dist, world = world, rank = rank, names = names, params = params,
                             dtype = first:dtype(), device = first:device(), units = {}, unit_of = {}, blocks = {},
                             pinned = 0, prefetch = opts.prefetch ~= false, strategy = strategy,
                             nshard = per_node, shard_rank = rank % per_node, zero2 = strategy == "hybrid_zero2"}, Sharded)
  if per_node < world then
    -- the node's ranks shard; the ranks holding the same shard on each node replicate it (collective:
    -- every rank makes both splits)
    self.intra = dist.split(rank // per_node, rank % per_node)
    self.inter = dist.split(rank % per_node, rank // per_node)
  end
  local hooks = type(model._set_block_hook) == "function"
  local wrap = opts.wrap or "size"
  if wrap ~= "size" and wrap ~= "transformer" then
    error(("fsdp.shard: wrap strategy must be size or transformer, got %s"):format(tostring(wrap)), 2)
  end
  local per_block = hooks
  if hooks and wrap == "size" then
    -- torch's rule at the block level: a block is its own unit when it is big enough
    local n0 = 0
    for _, k in ipairs(names) do if k:match("^blocks%.0%.") then n0 = n0 + params[k]:numel() end end
    per_block = n0 >= (opts.min_num_params or M.MIN_NUM_PARAMS)
  end
  local groups, rest = {}, {}
  for _, k in ipairs(names) do
    local b = per_block and k:match("^blocks%.(%d+)%.")
    if b then
      b = tonumber(b)
      groups[b] = groups[b] or {}
      table.insert(groups[b], k)
    else
      rest[#rest + 1] = k
    end
  end
  local order = {}
  for b in pairs(groups) do order[#order + 1] = b end
  sorted(order)
  if #rest > 0 then self.root = new_unit(self, rest, nil); self.units[1] = self.root end
  for _, b in ipairs(order) do
    local u = new_unit(self, groups[b], b)
    self.units[#self.units + 1] = u
    self.blocks[b] = u
  end
  for j, u in ipairs(self.units) do
    u.index = j
    for _, k in ipairs(u.names) do self.unit_of[k] = u end
  end
  self.segments = {}
  for _, u in ipairs(self.units) do for _, seg in ipairs(u.segments) do self.segments[#self.segments + 1] = seg end end
  self.gathered, self.held_blocks = true, #order
  self:release()
  self.max_held_blocks = 0
  self.per_block = per_block and #order > 0
  if hooks then
    self.hooked = true
    model:_set_block_hook(function(i, phase, recompute) return self:_hook(i, phase, recompute) end)
  end
  return self
end

-- ---- one unit ----
function Sharded:_gather_unit(u)
  if u.gathered then return end
  local full = self.dist.all_gather(u.shard:view({1, u.S}), self.intra):view({u.padded})
  for _, k in ipairs(u.names) do self.dist.rebind(self.params[k], full, u.offsets[k]) end
  u.full, u.gathered = full, true
  -- counters for tests and benchmarks: all-gathers, and the most blocks this object held at once
  self.gathers = (self.gathers or 0) + 1
  if u.block then
    self.held_blocks = (self.held_blocks or 0) + 1
    self.max_held_blocks = math.max(self.max_held_blocks or 0, self.held_blocks)
  end
end

-- drop this object's hold on the unit's full parameters; a graph that saved them (a recorded forward)
-- keeps that memory until its backward has run
function Sharded:_release_unit(u)
  if not u.gathered then return end
  for _, k in ipairs(u.names) do self.dist.unbind(self.params[k]) end
  u.full, u.gathered = nil, false
  if u.block then self.held_blocks = self.held_blocks - 1 end
  self.gathered = false
end

-- the gradients of the unit's parameters (zeros where one has none), reduce-scattered (summed over
-- ranks) and added to the unit's gradient shard; the full gradients are dropped. Collective.
function Sharded:_reduce_unit(u)
  local flat = sfwb.zeros({u.padded}, {dtype = self.dtype, device = self.device})
  sfwb.no_grad(function()
    for _, k in ipairs(u.names) do
      local p = self.params[k]
      local g = p.grad
      if g then flat:narrow(1, u.offsets[k] + 1, p:numel()):copy_(g:reshape({p:numel()})); self.had[k] = true end
      p.grad = nil
    end
    local g = self.dist.reduce_scatter(flat:view({self.nshard, u.S}), "sum", self.intra):view({u.S})
    if self.inter then self.dist.all_reduce(g, "sum", self.inter) end -- hybrid: the other nodes' sums
    if u.grad then u.grad:add_(g) else u.grad = g end
  end)
end

local function trainable(self, u)
  for _, k in ipairs(u.names) do if self.params[k].requires_grad then return true end end
  return false
end

-- the model's block hook (src/models/wan.h): block -1 is the root unit (embeddings, head) around a
-- whole forward call. Forward: gather the block (and prefetch the next one), free it after. Backward:
-- a checkpointed block is recomputed (its pre/post_forward hooks run again with recompute = true, and
-- gather it again), the next block to run backward is prefetched, and once the block's backward is
-- done its gradients are reduce-scattered and its parameters freed. Inside with_full nothing moves.
function Sharded:_hook(i, phase, recompute)
  if self.pinned > 0 then return end
  local u
  if i < 0 then u = self.root
  elseif self.blocks[i] then u = self.blocks[i]
  elseif recompute and (phase == "pre_forward" or phase == "post_forward") then
    u = self.root -- one unit for the whole model: gathered again for a block's recomputation
  end
  if not u then return end
  if phase == "pre_forward" then
    if recompute then self.recomputes = (self.recomputes or 0) + 1 end
    self:_gather_unit(u)
    if self.prefetch and i >= 0 and not recompute and self.blocks[i + 1] then self:_gather_unit(self.blocks[i + 1]) end
  elseif phase == "post_forward" then
    if self.zero2 and i >= 0 and not recompute then return end -- ZeRO-2: kept until the step ends
    self:_release_unit(u)
  elseif phase == "pre_backward" then
    -- recompute: the block runs its forward again next; prefetch the one whose backward follows
    if recompute and self.prefetch and self.blocks[i - 1] then self:_gather_unit(self.blocks[i - 1]) end
  elseif phase == "post_backward" then
    self:_release_unit(u)
    if self.had and trainable(self, u) then self:_reduce_unit(u) end
  end
end

function Sharded:_gathered_set()
  local s = {}
  for j, u in ipairs(self.units) do s[j] = u.gathered end
  return s
end

-- all-gather every unit's full parameters and rebind the model's tensors onto them
function Sharded:gather()
  for _, u in ipairs(self.units) do self:_gather_unit(u) end
  self.gathered = true
  return self
end

-- free every unit's full parameters (the shards stay)
function Sharded:release()
  for _, u in ipairs(self.units) do self:_release_unit(u) end
  self.gathered = false
  return self
end

-- the gathered units again, from their (updated) shards
function Sharded:refresh()
  for _, u in ipairs(self.units) do
    if u.gathered then u.gathered = false; self:_gather_unit(u) end
  end
  self.gathered = self:all_gathered()
end

function Sharded:all_gathered()
  for _, u in ipairs(self.units) do if not u.gathered then return false end end
  return true
end

-- after the full parameters were written (load_state_dict while gathered): take my shards from them
function Sharded:reshard_from_full()
  if not self:all_gathered() then error("fsdp: reshard_from_full needs the parameters gathered", 2) end
  sfwb.no_grad(function()
    for _, u in ipairs(self.units) do u.shard:copy_(u.full:narrow(1, self.shard_rank * u.S + 1, u.S)) end
  end)
  return self
end

-- fn() with the full parameters present (the block hooks leave them alone meanwhile); each unit's
-- previous state is restored after
function Sharded:with_full(fn, ...)
  local was = self:_gathered_set()
  self:gather()
  self.pinned = self.pinned + 1
  local res = table.pack(pcall(fn, ...))
  self.pinned = self.pinned - 1
  for j, u in ipairs(self.units) do if not was[j] then self:_release_unit(u) end end
  self.gathered = self:all_gathered()
  if not res[1] then error(res[2], 0) end
  return table.unpack(res, 2, res.n)
end

-- start collecting gradients per block (the backward hooks reduce-scatter them as each block finishes)
function Sharded:begin_grads()
  self.had = self.had or {}
end

-- my averaged [S] gradient shard of every unit (the blocks' reduce-scattered during backward, plus
-- whatever gradients are still full: the root unit's, a block whose backward hook did not run), and the
-- set of parameters that had a gradient. Collective.
function Sharded:reduce_grads()
  self.had = self.had or {}
  -- which units still hold full gradients, agreed by every rank (one small collective)
  local left = sfwb.zeros({#self.units}, {dtype = "f64"})
  for j, u in ipairs(self.units) do
    for _, k in ipairs(u.names) do if self.params[k].grad then left[j] = 1 break end end
  end
  self.dist.all_reduce(left, "max")
  local lv = left:totable()
  local gs = {}
  for j, u in ipairs(self.units) do
    if lv[j] > 0 then self:_reduce_unit(u) end
    gs[j] = u.grad or sfwb.zeros({u.S}, {dtype = self.dtype, device = self.device})
    u.grad = nil
    gs[j]:mul_(1 / self.world) -- the same average the replicated trainer takes (sum, then / world)
  end
  local had = self.had
  self.had = nil
  return gs, had
end

-- drop every gradient (full and reduced)
function Sharded:zero_grad()
  for _, u in ipairs(self.units) do u.grad = nil end
  for _, k in ipairs(self.names) do self.params[k].grad = nil end
  self.had = {}
end

-- bytes this rank holds for the model: its shards, reduced gradients, and the units gathered now
function Sharded:bytes()
  local b = 0
  for _, u in ipairs(self.units) do
    b = b + nbytes(u.shard)
    if u.full then b = b + nbytes(u.full) end
    if u.grad then b = b + nbytes(u.grad) end
  end
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
  self.grad_shards = nil
  self.sh:zero_grad()
end

-- reduce-scatter the gradients, clip by the global norm (torch clip_grad_norm_: coef = max/(norm+1e-6)
-- when below 1), step AdamW on the shard, gather the updated parameters; returns the norm before clipping
function ShardedAdamW:clip_and_step(max_norm)
  local sh, dist = self.sh, self.sh.dist
  local gs, had = sh:reduce_grads()
  local sum = 0
  for _, g in ipairs(gs) do sum = sum + sfwb._train.sum_sq(g) end
  local sq = sfwb.tensor({sum}, {dtype = "f64"})
  dist.all_reduce(sq, "sum", sh.intra) -- the shard group's shards cover the model once
  local norm = math.sqrt(sq:totable()[1])
  sfwb.no_grad(function()
    if max_norm then
      local coef = max_norm / (norm + 1e-6)
      if coef < 1 then for _, g in ipairs(gs) do g:mul_(coef) end end
    end
    local pg = self.param_groups[1]
    for _, seg in ipairs(sh.segments) do
      if had[seg.name] then
        local st = self.state[seg.name]
        if not st then
          st = {step = 0, exp_avg = sfwb.zeros({seg.len}, {dtype = "f32", device = sh.device}),
                exp_avg_sq = sfwb.zeros({seg.len}, {dtype = "f32", device = sh.device})}
          if sh.dtype ~= "f32" then st.master = seg.unit.shard:narrow(1, seg.start, seg.len):float():contiguous() end
          self.state[seg.name] = st
        end
        st.step = st.step + 1
        local g = gs[seg.unit.index]
        sfwb._train.adamw(seg.unit.shard:narrow(1, seg.start, seg.len), g:narrow(1, seg.start, seg.len), st.exp_avg,
                          st.exp_avg_sq, st.master, pg.lr, pg.betas[1], pg.betas[2], pg.eps, pg.weight_decay, st.step)
      end
    end
  end)
  self.grad_shards = gs -- kept until the next zero_grad, as FSDP keeps the sharded .grad
  sh:refresh() -- the units gathered now hold the updated parameters
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
  local flats = {} -- per unit, per field: my [S] piece
  sfwb.no_grad(function()
    for j, u in ipairs(sh.units) do
      flats[j] = {}
      for _, f in ipairs(fields) do flats[j][f] = sfwb.zeros({u.S}, {dtype = "f32", device = sh.device}) end
    end
    for _, seg in ipairs(sh.segments) do
      local st = self.state[seg.name]
      if st then
        steps[index[seg.name]] = st.step
        for _, f in ipairs(fields) do flats[seg.unit.index][f]:narrow(1, seg.start, seg.len):copy_(st[f]) end
      end
    end
  end)
  dist.all_reduce(steps, "max") -- a parameter's step is the same on every rank that holds a piece
  local st, stepv = {}, steps:totable()
  for j, u in ipairs(sh.units) do
    local full = {}
    for _, f in ipairs(fields) do full[f] = dist.all_gather(flats[j][f]:view({1, u.S}), sh.intra):view({u.padded}) end
    for _, k in ipairs(u.names) do
      local i = index[k]
      if stepv[i] > 0 then
        local p = sh.params[k]
        local e = {step = sfwb.tensor(stepv[i], {dtype = "f32"})}
        for _, f in ipairs(fields) do e[f] = full[f]:narrow(1, u.offsets[k] + 1, p:numel()):view(p:shape()):clone() end
        st[i - 1] = e
      end
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
  local index = {}
  for j, k in ipairs(sh.names) do index[k] = j end
  for _, seg in ipairs(sh.segments) do
    local i = index[seg.name]
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
  for _, g in ipairs(self.grad_shards or {}) do b = b + nbytes(g) end
  return b
end

return M
