-- sfwb/pipeline/interactive.lua — LongLive's InteractiveCausalInferencePipeline (pipeline/
-- interactive_causal_inference.py, v1.0): a long causal rollout whose prompt changes at switch_frame_indices.
-- A switch takes effect at the first block that starts at or after its index: the caches are reset (the K/V
-- buffers zeroed unless global_sink, the indices kept; the cross-attention cache cleared) and re-filled by
-- one forward over the last min(window, current) generated frames at context_noise under the new prompt
-- ("recache"). The generator runs under LongLive's KV rules (kv_policy "longlive"): see docs/longlive.md.
local sfwb = require "sfwb"
local U = require "sfwb.pipeline.util"
local Causal = require "sfwb.pipeline.causal"

local M = {}
local Interactive = {}
Interactive.__index = Interactive

function M.new(o)
  o = o or {}
  local co = {}
  for k, v in pairs(o) do co[k] = v end
  co.global_sink = nil
  if co.kv_policy == nil then co.kv_policy = "longlive" end
  local self = setmetatable({}, Interactive)
  self.causal = Causal.new(co)
  self.global_sink = o.global_sink or false
  return self
end

-- fields read through to the causal pipeline (generator, steps, window, ...)
function Interactive:__index(k)
  local v = rawget(Interactive, k)
  if v ~= nil then return v end
  return rawget(self, "causal")[k]
end

local IRollout = {}
for k, v in pairs(Causal.Causal.Rollout) do IRollout[k] = v end
IRollout.__index = IRollout

local function expand_batch(ctx, B, what)
  if ctx:size(1) == B then return ctx end
  if ctx:size(1) == 1 then return ctx:expand({B, ctx:size(2), ctx:size(3)}):contiguous() end
  error(string.format("pipeline.interactive: %s has %d prompts for a batch of %d", what, ctx:size(1), B), 3)
end

-- p:rollout{prompts_list={{...}, {...}} or prompt_embeds_list={t1, t2}, switch_frame_indices={...}, ...causal fields}
function Interactive:rollout(o)
  o = o or {}
  local lists, embeds = o.prompts_list, o.prompt_embeds_list
  if lists == nil and embeds == nil then
    error("pipeline.interactive: give prompts_list={{...}, ...} (one prompt list per segment) or prompt_embeds_list=", 2)
  end
  local nseg = #(lists or embeds)
  if nseg < 1 then error("pipeline.interactive: prompts_list must not be empty", 2) end
  local sw = U.copy_list(o.switch_frame_indices or {})
  if #sw ~= nseg - 1 then
    error(string.format("pipeline.interactive: %d segments need %d switch_frame_indices, got %d", nseg, nseg - 1, #sw), 2)
  end
  for i = 2, #sw do
    if sw[i] < sw[i - 1] then error("pipeline.interactive: switch_frame_indices must not decrease", 2) end
  end
  if o.initial_latent then error("pipeline.interactive: initial_latent is not supported (LongLive's interactive pipeline has none)", 2) end
  local first = {}
  for k, v in pairs(o) do first[k] = v end
  first.prompts_list, first.prompt_embeds_list, first.switch_frame_indices = nil, nil, nil
  first.prompts = lists and lists[1]
  first.prompt_embeds = embeds and embeds[1]
  local r = self.causal:rollout(first)
  setmetatable(r, IRollout)
  r.ip = self
  -- LongLive encodes every segment's prompts up front
  r.ctx_list = {r.ctx}
  for i = 2, nseg do
    local c = U.context(self.causal.text_encoder, lists and lists[i], embeds and embeds[i], r.device)
    r.ctx_list[i] = expand_batch(c, r.B, "segment " .. i)
  end
  r.switches = sw
  r.segment = 1
  r.nsegments = nseg
  r.recaches = {}
  r.on_switch = o.on_switch
  return r, nil, nil, r
end

-- LongLive's _recache_after_switch
function IRollout:_switch()
  local p, ip = self.p, self.ip
  local ts = sfwb.time()
  self.segment = self.segment + 1
  -- what a switch does is the cache policy's call (LongLive's _recache_after_switch for both shipped ones)
  local kv = self.kv
  local plan = kv.policy:switch({local_attn_size = kv.local_attn_size, sink_size = kv.sink_size, capacity = kv.frames},
                                {pos = self.pos, global_sink = ip.global_sink})
  if plan.zero then kv:zero() end
  self.ca:reset()
  self.ctx = self.ctx_list[self.segment]
  local rec = {segment = self.segment, frame = self.pos, frames = 0}
  if self.pos > 0 and plan.recache_frames > 0 then
    local n, st = plan.recache_frames, plan.recache_start
    local frames = self:latents():narrow(2, st + 1, n):contiguous()
    local t = sfwb.full({self.B, n}, p.context_noise, {dtype = "f32", device = self.device})
    self.calls = self.calls + 1
    -- the blockwise causal mask LongLive prepares here plays no part on its KV path: every recached frame
    -- attends to the whole window (bidirectionally), as in the original
    p.generator:forward(U.to_model(frames), t, self.ctx,
                        {kv_cache = kv, crossattn_cache = self.ca, current_start_frame = st,
                         sink_recache = plan.sink_recache,
                         tag = {chunk = self.chunk, step = 0, pass = "recache", timestep = p.context_noise}})
    self.ca:reset()
    rec.start, rec.frames = st, n
  end
  sfwb.sync()
  rec.seconds = sfwb.time() - ts
  self.recaches[#self.recaches + 1] = rec
  if self.progress then
    local line = string.format("segment %d/%d from frame %d: recached %d frames in %.2fs", self.segment, self.nsegments,
                               self.pos, rec.frames, rec.seconds)
    if type(self.progress) == "function" then self.progress(line, rec) else io.stderr:write(line .. "\n") end
  end
  if self.on_switch then self.on_switch(self.segment, rec) end
end

function IRollout:next()
  if not self.closed and self.block < self.nblocks then
    local nxt = self.switches[self.segment]
    if nxt and self.pos >= nxt then self:_switch() end
  end
  local rec = Causal.Causal.Rollout.next(self)
  if rec then rec.segment = self.segment end
  return rec
end
IRollout.__call = function(self) return self:next() end
IRollout.__close = function(self) self:close() end

function IRollout:_finish()
  local res = Causal.Causal.Rollout._finish(self)
  res.recaches = self.recaches
  return res
end

-- r.latents [B, F, C, h, w] (+ r.video with a VAE), r.recaches = {{segment=, frame=, start=, frames=, seconds=}}
function Interactive:generate(o)
  local r = self:rollout(o)
  return r:finish()
end

function Interactive:__tostring()
  return "Interactive" .. tostring(self.causal) .. string.format("{global_sink=%s}", tostring(self.global_sink))
end

M.Interactive = Interactive
return M
