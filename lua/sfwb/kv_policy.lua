-- sfwb/kv_policy.lua — the KV cache policy: which slots a forward call writes, what is evicted, what is kept
-- as sink, which slots attention reads, when the indices move, and what a prompt switch does (recache).
-- The copies and the attention stay in C (src/models/wan_cache.c, wan_forward.c); a policy only plans them.
-- Two shipped instances: self_forcing (Self-Forcing's CausalWanSelfAttention) and longlive (LongLive v1.0's).
-- Writing a third: docs/kv_policy.md.
--
-- plan(self, state, call) is called once per forward call that carries the cache (the plan is the same for
-- every layer). All numbers are frames / frame slots (0-based, half-open ranges):
--   state = {global_end, local_end, capacity, sink_size, local_attn_size, max_attention_frames (nil = default)}
--   call  = {start = first frame of the call, frames = its length, sink_recache = bool, args = m:forward's kv_args}
-- and returns
--   {roll = {dst=, src=, n=} or nil,        -- move n slots from src down to dst (eviction), before the write
--    write = {at=, from=, n=},              -- rows [from, from+n) of this call's K/V into slots [at, at+n)
--    read = {{lo, hi} [, {lo2, hi2}]},      -- the slots attention reads, in this order (one or two ranges)
--    advance = bool, global_end=, local_end=}  -- set the end indices (frames) when advance
-- switch(self, state, o) says what a prompt switch does at frame o.pos (o.global_sink):
--   {zero = bool (zero the K/V buffers, keep the indices), recache_start=, recache_frames=, sink_recache = bool}
local M = {}

local Policy = {}
Policy.__index = Policy

function Policy:__tostring() return "kv_policy(" .. self.name .. ")" end

-- a policy: a table with name and plan (switch optional: LongLive's rule); methods fall back to the base
function M.new(t)
  if type(t) ~= "table" or type(t.plan) ~= "function" then
    error("kv_policy.new: needs {name=, plan=function(self, state, call) ... end}", 2)
  end
  t.name = t.name or "custom"
  return setmetatable(t, Policy)
end

-- Self-Forcing's rolling window (spec 3.4): a call past the written end that does not fit rolls out the
-- oldest non-sink frames; every call writes its whole chunk right after the previous end (a repeated call at
-- the same position overwrites the same slots) and moves both indices; attention reads the last `capacity`
-- slots (max_attention_size = the buffer).
function Policy.rolling_write(state, call)
  local n, cur_end = call.frames, call.start + call.frames
  local G, Lend, cap, sink = state.global_end, state.local_end, state.capacity, state.sink_size
  local p = {}
  local new_end = Lend + (cur_end - G)
  if state.local_attn_size ~= -1 and cur_end > G and Lend + n > cap then
    local evict = Lend + n - cap
    local keep = Lend - evict - sink
    if keep < 0 then
      error(string.format("kv cache: cannot evict %d frames keeping %d sink frames (local_attn_size too small for the chunk)",
                          evict, sink), 0)
    end
    p.roll = {dst = sink, src = sink + evict, n = keep}
    new_end = new_end - evict
  end
  return p, new_end
end

M.self_forcing = M.new{
  name = "self_forcing",
  plan = function(_, state, call)
    local p, new_end = Policy.rolling_write(state, call)
    p.write = {at = new_end - call.frames, from = 0, n = call.frames}
    p.read = {{math.max(0, new_end - state.capacity), new_end}}
    p.advance, p.global_end, p.local_end = true, call.start + call.frames, new_end
    return p
  end,
}

-- LongLive v1.0 (wan/modules/causal_model.py): the same rolling window, but a call that ends at or before the
-- written end and does not start at frame 0 is a recompute: it writes no sink slot (unless sink_recache, the
-- recache after a switch without global_sink) and moves no index; attention reads
-- [sink slots | the last max_attention - sink frames], where max_attention is local_attn_size, or 21 frames
-- (32760 tokens) with global attention. The sink range spans sink_size slots even before they are written.
M.longlive = M.new{
  name = "longlive",
  max_attention = function(_, state)
    return state.max_attention_frames or (state.local_attn_size ~= -1 and state.local_attn_size or 21)
  end,
  plan = function(self, state, call)
    local n, cur_end = call.frames, call.start + call.frames
    local sink = state.sink_size
    local recompute = cur_end <= state.global_end and call.start > 0
    local p, new_end = Policy.rolling_write(state, call)
    local new_start = new_end - n
    local at = new_start
    if recompute and not call.sink_recache then at = math.max(new_start, sink) end
    if at < new_end then p.write = {at = at, from = at - new_start, n = new_end - at}
    else p.write = {at = 0, from = 0, n = 0} end     -- the whole chunk lies in protected sink slots
    local maxatt = self:max_attention(state)
    if sink > 0 then
      local budget = maxatt - sink
      local lo = budget > 0 and math.max(sink, new_end - budget) or sink
      local hi = budget > 0 and math.max(new_end, lo) or sink
      if lo == sink then p.read = {{0, hi}} else p.read = {{0, sink}, {lo, hi}} end
    else
      p.read = {{math.max(0, new_end - maxatt), new_end}}
    end
    if not recompute then p.advance, p.global_end, p.local_end = true, cur_end, new_end end
    return p
  end,
}

-- LongLive's _recache_after_switch: zero the buffers unless global_sink (indices kept), re-fill from the last
-- min(window, pos) frames (all of them with global attention); without global_sink the recache rewrites the
-- sink slots too
function Policy:switch(state, o)
  local n = state.local_attn_size == -1 and o.pos or math.min(state.local_attn_size, o.pos)
  return {zero = not o.global_sink, recache_start = o.pos - n, recache_frames = n, sink_recache = not o.global_sink}
end

-- a name or a policy table -> the policy (nil -> self_forcing)
function M.resolve(p)
  if p == nil then return M.self_forcing end
  if type(p) == "string" then
    local r = rawget(M, p)
    if getmetatable(r) ~= Policy then
      error("kv_cache: policy must be \"self_forcing\", \"longlive\" or a sfwb.kv_policy.new{} table, got \"" .. p .. "\"", 0)
    end
    return r
  end
  if type(p) == "table" then
    if getmetatable(p) ~= Policy then p = M.new(p) end
    return p
  end
  error("kv_cache: policy must be a name or a table, got a " .. type(p), 0)
end

return M
