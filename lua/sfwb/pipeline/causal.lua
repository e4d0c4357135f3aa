-- sfwb/pipeline/causal.lua — Self-Forcing's few-step autoregressive inference (CausalInferencePipeline):
-- block-wise denoising with a KV cache, warped steps, x0 -> re-noise between steps, a clean context
-- pass per block, optional I2V conditioning, VAE decode; as p:generate{} or a step-through p:rollout{}.
local sfwb = require "sfwb"
local U = require "sfwb.pipeline.util"

local M = {}
local Causal = {}
Causal.__index = Causal

local function opt(o, k, d)
  local v = o[k]
  if v == nil then return d end
  return v
end

function M.new(o)
  o = o or {}
  if not o.generator then error("pipeline.causal: generator= (a causal Wan model) is required", 2) end
  local self = setmetatable({}, Causal)
  self.generator = o.generator
  self.text_encoder = o.text_encoder
  self.vae = o.vae
  self.num_frame_per_block = opt(o, "num_frame_per_block", 3)
  self.independent_first_frame = opt(o, "independent_first_frame", false)
  self.context_noise = opt(o, "context_noise", 0)
  self.timestep_shift = opt(o, "timestep_shift", 5.0)
  self.warp_denoising_step = opt(o, "warp_denoising_step", true)
  self.denoising_step_list = U.copy_list(o.denoising_step_list or {1000, 750, 500, 250})
  -- long videos: a rolling window of local_attn_size frames with sink_size sink frames (LongLive-style)
  self.local_attn_size = opt(o, "local_attn_size", -1)
  self.sink_size = opt(o, "sink_size", 0)
  self.kv_frames = o.kv_frames
  -- the cache's write/attention rules: "self_forcing" (default) or "longlive" (LongLive v1.0's causal model:
  -- sink slots protected from recomputation, attention over [sink | last max_attention_frames - sink])
  self.kv_policy = o.kv_policy
  self.max_attention_frames = o.max_attention_frames
  -- (or any sfwb.kv_policy table: docs/kv_policy.md)
  if self.kv_policy ~= nil then require("sfwb.kv_policy").resolve(self.kv_policy) end
  -- latents live in the model's dtype, as Self-Forcing runs the whole pipeline in bf16 for bf16 weights
  self.dtype = o.dtype or U.model_dtype(self.generator)
  self.device = o.device or U.model_device(self.generator)
  if self.num_frame_per_block < 1 then error("pipeline.causal: num_frame_per_block must be >= 1", 2) end
  if self.local_attn_size ~= -1 and self.local_attn_size < self.sink_size + self.num_frame_per_block then
    error(string.format("pipeline.causal: local_attn_size %d must be >= sink_size %d + num_frame_per_block %d",
                        self.local_attn_size, self.sink_size, self.num_frame_per_block), 2)
  end
  self.scheduler = U.scheduler(self.timestep_shift)
  self.denoising_steps = U.denoising_steps(self.scheduler, self.denoising_step_list, self.warp_denoising_step)
  self._steps = self.denoising_steps:totable()
  return self
end

-- the frame blocks of a generation, as CausalInferencePipeline lays them out
function Causal:blocks(num_frames, n_input)
  local nf = self.num_frame_per_block
  local b = {}
  if not self.independent_first_frame or n_input > 0 then
    if num_frames % nf ~= 0 then
      error(string.format("pipeline.causal: num_frames %d is not a multiple of num_frame_per_block %d", num_frames, nf), 3)
    end
    for _ = 1, num_frames // nf do b[#b + 1] = nf end
  else
    if (num_frames - 1) % nf ~= 0 then
      error(string.format("pipeline.causal: with an independent first frame, num_frames - 1 (%d) must be a multiple of %d",
                          num_frames - 1, nf), 3)
    end
    b[1] = 1
    for _ = 1, (num_frames - 1) // nf do b[#b + 1] = nf end
  end
  return b
end

-- the chunk sizes (in frames) of a whole output video, context blocks of an initial latent included
function Causal:chunk_sizes(num_frames, n_input)
  n_input = n_input or 0
  local sizes = {}
  if n_input > 0 then
    local rest = n_input
    if self.independent_first_frame then sizes[1] = 1; rest = rest - 1 end
    for _ = 1, rest // self.num_frame_per_block do sizes[#sizes + 1] = self.num_frame_per_block end
  end
  for _, n in ipairs(self:blocks(num_frames, n_input)) do sizes[#sizes + 1] = n end
  return sizes
end

---------------------------------------------------------------------------------------------------
-- a rollout: the state of one generation, advanced one block per call
local Rollout = {}
Rollout.__index = Rollout

local function shape_str(s) return table.concat(s, "x") end

function Causal:rollout(o)
  o = o or {}
  local p = self
  local r = setmetatable({p = p, opts = o, t0 = sfwb.time(), timings = {blocks = {}}}, Rollout)
  local dev, dt = p.device, o.dtype or (o.noise and o.noise:dtype()) or p.dtype
  r.device, r.dtype = dev, dt

  -- conditioning
  local tt = sfwb.time()
  r.ctx = U.context(p.text_encoder, o.prompts, o.prompt_embeds, dev)
  r.timings.text = sfwb.time() - tt
  local B = r.ctx:size(1)

  -- noise [B, F, C, h, w]
  if o.noise then
    r.noise = o.noise:to(dev):to(dt)
    if r.noise:dim() ~= 5 then error("pipeline.causal: noise must be [B, F, C, h, w], got " .. shape_str(r.noise:shape()), 2) end
    B = r.noise:size(1)
    if r.ctx:size(1) ~= B then
      if r.ctx:size(1) == 1 then r.ctx = r.ctx:expand({B, r.ctx:size(2), r.ctx:size(3)}):contiguous()
      else error(string.format("pipeline.causal: %d prompts for a noise batch of %d", r.ctx:size(1), B), 2) end
    end
  else
    local F = o.num_frames or 21
    local C = (p.generator.config and p.generator.config.out_dim) or 16
    local h, w
    if o.latent_size then h, w = o.latent_size[1], o.latent_size[2]
    else h, w = (o.height or 480) // 8, (o.width or 832) // 8 end
    U.check_noise_shape("pipeline.causal", {B, F, C, h, w}, o)
    if o.seed then sfwb.manual_seed(o.seed) end
    r.noise = sfwb.randn({B, F, C, h, w}, {dtype = dt, device = dev})
  end
  local s = r.noise:shape()
  U.check_noise_shape("pipeline.causal", s, o)
  r.B, r.F, r.C, r.h, r.w = s[1], s[2], s[3], s[4], s[5]
  if o.num_frames and o.noise and o.num_frames ~= r.F then
    error(string.format("pipeline.causal: num_frames=%d but noise has %d frames", o.num_frames, r.F), 2)
  end

  -- I2V / video extension
  r.n_in = 0
  if o.initial_latent then
    r.initial = o.initial_latent:to(dev):to(dt)
    r.n_in = r.initial:size(2)
    local nf = p.num_frame_per_block
    if p.independent_first_frame and (r.n_in - 1) % nf ~= 0 then
      error(string.format("pipeline.causal: initial_latent has %d frames; with an independent first frame it needs 1 + k*%d", r.n_in, nf), 2)
    elseif not p.independent_first_frame and r.n_in % nf ~= 0 then
      error(string.format("pipeline.causal: initial_latent has %d frames; it needs a multiple of %d", r.n_in, nf), 2)
    end
  end
  r.F_out = r.F + r.n_in
  r.blocks = p:blocks(r.F, r.n_in)
  r.chunk_sizes = p:chunk_sizes(r.F, r.n_in)
  r.clip_fea = o.clip_fea and o.clip_fea:to(dev)
  r.y = o.y and o.y:to(dev)
  if r.y and r.y:size(3) < r.F_out then
    error(string.format("pipeline.causal: y has %d frames, the video has %d", r.y:size(3), r.F_out), 2)
  end
  r.step_noise = o.step_noise
  r.on_block = o.on_block
  r.progress = o.progress
  r.decode = o.decode
  if r.decode == nil then r.decode = p.vae ~= nil end
  if r.decode and not p.vae then error("pipeline.causal: decode needs a vae", 2) end

  -- caches: global (sized for the whole video) or a window with sinks
  local frames = o.kv_frames or p.kv_frames
  if not frames then frames = p.local_attn_size ~= -1 and p.local_attn_size or r.F_out end
  local kvo = {batch = r.B, frames = frames}
  if p.local_attn_size ~= -1 then kvo.local_attn_size, kvo.sink_size = p.local_attn_size, p.sink_size end
  if p.kv_policy ~= nil then kvo.policy = p.kv_policy end
  if p.kv_policy == "longlive" or (type(p.kv_policy) == "table" and p.kv_policy.name == "longlive") then
    -- LongLive's sink also applies to global attention (model_kwargs.sink_size)
    kvo.policy, kvo.sink_size, kvo.max_attention_frames = "longlive", p.sink_size, p.max_attention_frames
    kvo.local_attn_size = p.local_attn_size
  end
  r.kv = p.generator:kv_cache(kvo)
  r.ca = p.generator:crossattn_cache{batch = r.B}

  r.outputs = {}     -- latent blocks in order [B, n, C, h, w]
  r.videos = {}      -- decoded pixel blocks when decoding block by block
  r.pos = 0          -- absolute frame of the next block
  r.chunk = 0        -- tag numbering of cache-writing blocks (context blocks included), 1-based
  r.block = 0        -- generated blocks done
  r.nblocks = #r.blocks
  r.calls = 0
  r:_context_input()
  return r, nil, nil, r  -- the 4th value closes the rollout when a generic for ends or breaks
end

-- one model call in the pipeline layout; returns the flow in the pipeline layout
function Rollout:_call(x, tval, tag)
  local p = self.p
  local n = x:size(2)
  local t = sfwb.full({self.B, n}, tval, {dtype = "f32", device = self.device})
  local fo = {kv_cache = self.kv, crossattn_cache = self.ca, current_start_frame = self.pos, tag = tag}
  if self.clip_fea then fo.clip_fea = self.clip_fea end
  if self.y then fo.y = self.y:narrow(3, self.pos + 1, n):contiguous() end
  self.calls = self.calls + 1
  local flow = p.generator:forward(U.to_model(x), t, self.ctx, fo)
  return U.from_model(flow)
end

-- the clean context passes over an initial latent (I2V first frame, or a video to extend)
function Rollout:_context_input()
  if self.n_in == 0 then return end
  local p = self.p
  local sizes = {}
  local rest = self.n_in
  if p.independent_first_frame then sizes[1] = 1; rest = rest - 1 end
  for _ = 1, rest // p.num_frame_per_block do sizes[#sizes + 1] = p.num_frame_per_block end
  for _, n in ipairs(sizes) do
    local lat = self.initial:narrow(2, self.pos + 1, n):contiguous()
    self.chunk = self.chunk + 1
    self:_call(lat, 0, {chunk = self.chunk, step = 1, pass = "refresh", timestep = 0})
    self.outputs[#self.outputs + 1] = lat
    self.pos = self.pos + n
  end
end

-- runs the next block; returns the chunk record, or nil when the video is complete
function Rollout:next()
  if self.closed or self.block >= self.nblocks then
    if not self.closed then self:_finish() end
    return nil
  end
  local p = self.p
  local tb = sfwb.time()
  self.block = self.block + 1
  self.chunk = self.chunk + 1
  local n = self.blocks[self.block]
  local x = self.noise:narrow(2, self.pos - self.n_in + 1, n)
  local steps = p._steps
  local x0
  for k, tk in ipairs(steps) do
    local flow = self:_call(x, tk, {chunk = self.chunk, step = k, pass = "denoise", timestep = tk})
    -- a bf16 model hands back a bf16 flow in the reference; round ours the same way before x0
    if self.dtype ~= "f32" then flow = flow:to(self.dtype) end
    x0 = U.pred_x0(p.scheduler, flow, x, tk):to(self.dtype)
    if k < #steps then
      local eps = U.draw(self.step_noise, x0:shape(), self.dtype, self.device)
      x = U.add_noise(p.scheduler, x0, eps, steps[k + 1])
    end
  end
  -- the clean context pass: rewrites this block's K/V with the denoised frames (no noise added)
  self:_call(x0, p.context_noise, {chunk = self.chunk, step = #steps + 1, pass = "refresh", timestep = p.context_noise})
  self.outputs[#self.outputs + 1] = x0
  local rec = {index = self.block, chunk = self.chunk, start = self.pos, frames = n, latents = x0,
               timesteps = steps, nblocks = self.nblocks}
  self.pos = self.pos + n
  if self.decode == "block" then
    rec.video = self:_decode_block(x0)
    self.videos[#self.videos + 1] = rec.video
  end
  sfwb.sync()
  rec.seconds = sfwb.time() - tb
  self.timings.blocks[self.block] = rec.seconds
  if self.progress then self:_report(rec) end
  if self.on_block then self.on_block(self.block, x0, rec) end
  return rec
end

-- `for chunk in rollout do ... end`
Rollout.__call = function(self) return self:next() end

function Rollout:_report(rec)
  local done = 0
  for i = 1, self.block do done = done + self.timings.blocks[i] end
  local per = done / self.block
  local eta = per * (self.nblocks - self.block)
  local fps = rec.frames / math.max(rec.seconds, 1e-9)
  local line = string.format("block %d/%d  frames %d-%d  %.2fs  %.2f latent frames/s  ETA %s",
                             self.block, self.nblocks, rec.start, rec.start + rec.frames - 1, rec.seconds, fps,
                             U.fmt_seconds(eta))
  if type(self.progress) == "function" then self.progress(line, rec) else io.stderr:write(line .. "\n") end
end

-- streaming decode when the VAE offers it (its cache spans the calls), else one-shot per block
function Rollout:_decode_block(lat)
  local vae = self.p.vae
  if vae.decode_chunk then
    if not self._dec_started then
      if vae.reset then vae:reset() end
      self._dec_started = true
    end
    return vae:decode_chunk(lat)
  end
  error("pipeline.causal: decode=\"block\" needs vae:decode_chunk (streaming decode)", 3)
end

-- the latents generated so far (all of them once the rollout is complete)
function Rollout:latents()
  if #self.outputs == 0 then return nil end
  if #self.outputs == 1 then return self.outputs[1] end
  return sfwb.cat(self.outputs, 2)
end

function Rollout:_finish()
  if self.result then return self.result end
  local res = {chunk_sizes = self.chunk_sizes, denoising_steps = self.p.denoising_steps, calls = self.calls}
  res.latents = self:latents()
  local td = sfwb.time()
  if self.decode == "block" then
    res.video = #self.videos == 1 and self.videos[1] or sfwb.cat(self.videos, 2)
  elseif self.decode then
    res.video = self.p.vae:decode(res.latents)
  end
  self.timings.decode = sfwb.time() - td
  self.timings.denoise = 0
  for _, t in ipairs(self.timings.blocks) do self.timings.denoise = self.timings.denoise + t end
  self.timings.total = sfwb.time() - self.t0
  res.timings = self.timings
  res.seconds = self.timings.total
  self.result = res
  self:close()
  return res
end

-- runs the remaining blocks and returns {latents=, video=, timings=, chunk_sizes=, denoising_steps=}
function Rollout:finish()
  while self:next() do end
  return self.result
end

-- frees the caches (early stop); the latents generated so far stay readable
function Rollout:close()
  if self.closed then return end
  self.closed = true
  self.kv, self.ca = nil, nil
  self.noise = nil
  collectgarbage()
end
Rollout.cancel = Rollout.close
Rollout.__close = function(self) self:close() end

Causal.Rollout = Rollout

-- one whole generation: r.latents [B, F, C, h, w], r.video [B, F', 3, H, W] in [-1, 1] when a VAE is set
function Causal:generate(o)
  local r = self:rollout(o)
  return r:finish()
end

function Causal:__tostring()
  return string.format("CausalPipeline(steps={%s}, num_frame_per_block=%d, independent_first_frame=%s, context_noise=%s%s)",
                       table.concat(self._steps, ", "), self.num_frame_per_block, tostring(self.independent_first_frame),
                       tostring(self.context_noise),
                       self.local_attn_size ~= -1 and string.format(", window=%d, sink=%d", self.local_attn_size, self.sink_size) or "")
end

M.Causal = Causal
return M
