-- sfwb/pipeline/diffusion.lua — the multi-step diffusion samplers of Self-Forcing:
-- CausalDiffusionInferencePipeline (block-wise, a KV cache each for the prompt and the negative prompt,
-- a fresh UniPC / DPM++ scheduler per block, a clean context pass at t = 0 on both caches) and
-- BidirectionalDiffusionInferencePipeline (the whole clip at once). Both use classifier-free guidance
-- on the flow: flow = flow_u + g * (flow_c - flow_u). Teachers, ODE pairs and baselines run here.
local sfwb = require "sfwb"
local U = require "sfwb.pipeline.util"
local MS = require "sfwb.scheduler_multistep"

local M = {}

-- Wan's default negative prompt (the configs' negative_prompt, scripts/generate_ode_pairs.py)
M.default_negative_prompt = "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走"

local Pipe = {}
Pipe.__index = Pipe

local function opt(o, k, d)
  local v = o[k]
  if v == nil then return d end
  return v
end

local function new(o, causal, defaults)
  o = o or {}
  local who = causal and "pipeline.causal_diffusion" or "pipeline.bidirectional_diffusion"
  if not o.generator then error(who .. ": generator= (a Wan model) is required", 3) end
  local self = setmetatable({causal = causal, who = who}, Pipe)
  self.generator, self.text_encoder, self.vae = o.generator, o.text_encoder, o.vae
  self.num_inference_steps = opt(o, "num_inference_steps", 50)
  self.guidance_scale = opt(o, "guidance_scale", 3.0)
  self.timestep_shift = opt(o, "timestep_shift", defaults.timestep_shift)
  self.num_train_timesteps = opt(o, "num_train_timesteps", 1000)
  self.solver = opt(o, "solver", "unipc")
  if self.solver == "dpmpp" then self.solver = "dpm++" end
  if self.solver ~= "unipc" and self.solver ~= "dpm++" and self.solver ~= "euler" then
    error(who .. ": solver must be \"unipc\", \"dpm++\" or \"euler\", got " .. tostring(self.solver), 3)
  end
  -- solver "euler" is scripts/generate_ode_pairs.py's sampler: FlowMatchScheduler(shift, sigma_min 0, extra
  -- step) with n steps, guidance on x0 (the wrapper's own shift-8 grid turns flow into x0), the guided x0
  -- turned back into flow on the sampling grid, one Euler step
  self.x0_grid_shift = opt(o, "x0_grid_shift", 8.0)
  self.negative_prompt = opt(o, "negative_prompt", M.default_negative_prompt)
  self.num_frame_per_block = opt(o, "num_frame_per_block", 1)
  self.independent_first_frame = opt(o, "independent_first_frame", false)
  self.num_frames = opt(o, "num_frames", 21)
  self.dtype = o.dtype or U.model_dtype(self.generator)
  self.device = o.device or U.model_device(self.generator)
  local cfg = self.generator.config or {}
  self.local_attn_size = opt(o, "local_attn_size", cfg.local_attn_size or -1)
  self.sink_size = opt(o, "sink_size", cfg.sink_size or 0)
  local s = self:scheduler()
  self.timesteps = s.timesteps
  return self
end

function M.causal(o) return new(o, true, {timestep_shift = 5.0}) end
-- BidirectionalDiffusionInferencePipeline hard-codes shift 8.0 (not the config's timestep_shift)
function M.bidirectional(o) return new(o, false, {timestep_shift = 8.0}) end

-- a fresh sampler, as _initialize_sample_scheduler (the original builds one per block)
function Pipe:scheduler()
  if self.solver == "euler" then
    local s = sfwb.scheduler.flow_match{shift = self.timestep_shift, sigma_min = 0.0, extra_one_step = true,
                                        num_train_timesteps = self.num_train_timesteps,
                                        num_inference_steps = self.num_inference_steps, training = false}
    self._x0_grid = self._x0_grid or U.scheduler(self.x0_grid_shift)
    return s
  end
  local mk = self.solver == "unipc" and MS.unipc or MS.dpmpp
  local s = mk{shift = self.timestep_shift, num_train_timesteps = self.num_train_timesteps}
  s:set_timesteps(self.num_inference_steps)
  return s
end

-- conditional and unconditional text embeddings, batch B
function Pipe:_contexts(o, B)
  local dev = self.device
  local ctx = U.context(self.text_encoder, o.prompts, o.prompt_embeds, dev)
  local neg
  if o.negative_embeds then
    neg = o.negative_embeds:to(dev)
  else
    if not self.text_encoder then
      error(self.who .. ": classifier-free guidance needs negative_embeds= or a text_encoder for the negative prompt", 3)
    end
    local list = {}
    for i = 1, (B or ctx:size(1)) do list[i] = self.negative_prompt end
    neg = U.context(self.text_encoder, list, nil, dev)
  end
  return ctx, neg
end

local function expand_to(ctx, B, who)
  if ctx:size(1) == B then return ctx end
  if ctx:size(1) == 1 then return ctx:expand({B, ctx:size(2), ctx:size(3)}):contiguous() end
  error(string.format("%s: %d text embeddings for a batch of %d", who, ctx:size(1), B), 3)
end

-- noise [B, F, C, h, w]: given, or drawn after manual_seed(seed)
function Pipe:_noise(o, B)
  local dt = o.dtype or (o.noise and o.noise:dtype()) or self.dtype
  if o.noise then
    if o.noise:dim() ~= 5 then
      error(self.who .. ": noise must be [B, F, C, h, w], got " .. table.concat(o.noise:shape(), "x"), 3)
    end
    return o.noise:to(self.device):to(dt), dt
  end
  local C = (self.generator.config and self.generator.config.out_dim) or 16
  local h, w
  if o.latent_size then h, w = o.latent_size[1], o.latent_size[2]
  else h, w = (o.height or 480) // 8, (o.width or 832) // 8 end
  if o.seed then sfwb.manual_seed(o.seed) end
  return sfwb.randn({B, o.num_frames or self.num_frames, C, h, w}, {dtype = dt, device = self.device}), dt
end

-- 0-based indices into [noise, after step 1, ..., final] (negative counts from the end) -> 1-based
local function trajectory_index(list, nsteps, who)
  if not list then return nil end
  local n = nsteps + 1
  local out = {}
  for i, v in ipairs(list) do
    if type(v) ~= "number" or v % 1 ~= 0 or v < -n or v >= n then
      error(string.format("%s: trajectory_steps[%d] = %s is outside 0..%d (or -%d..-1)", who, i, tostring(v), n - 1, n), 3)
    end
    out[i] = (v < 0 and n + v or v) + 1
  end
  return out
end

local function guided(flow_u, flow_c, g)
  return flow_u + (flow_c - flow_u) * g
end

-- one sampling step: guided model calls, then the solver's update
function Pipe:_advance(s, x, tval, ctx, neg, fo_c, fo_u)
  if self.solver ~= "euler" then return s:step(self:_guided(x, tval, ctx, neg, fo_c, fo_u), tval, x) end
  local fc, fu = self:_flows(x, tval, ctx, neg, fo_c, fo_u)
  local g = self._x0_grid
  local x0c, x0u = U.pred_x0(g, fc, x, tval), U.pred_x0(g, fu, x, tval)
  local x0 = x0u + (x0c - x0u) * self.guidance_scale
  local sh = x:shape()
  local n = sh[1] * sh[2]
  local tt = sfwb.full({n}, tval, {dtype = "f32"})
  local flow = s:x0_to_flow(U.flat(x0), U.flat(x), tt)
  return s:step(flow, tt, U.flat(x)):reshape(sh)
end

function Pipe:_flows(x, tval, ctx, neg, fo_c, fo_u)
  local B, n = x:size(1), x:size(2)
  local m = self.generator
  local t = self.causal and sfwb.full({B, n}, tval, {dtype = "f32", device = self.device})
                         or sfwb.full({B}, tval, {dtype = "f32", device = self.device})
  local xm = U.to_model(x)
  local fc = U.from_model(m:forward(xm, t, ctx, fo_c))
  local fu = U.from_model(m:forward(xm, t, neg, fo_u))
  if x:dtype() ~= "f32" then fc, fu = fc:to(x:dtype()), fu:to(x:dtype()) end
  return fc, fu
end

-- one guided model call in the pipeline layout: flow_u + g * (flow_c - flow_u)
function Pipe:_guided(x, tval, ctx, neg, fo_c, fo_u)
  local fc, fu = self:_flows(x, tval, ctx, neg, fo_c, fo_u)
  return guided(fu, fc, self.guidance_scale)
end

function Pipe:generate(o)
  o = o or {}
  local t0 = sfwb.time()
  local B0 = o.noise and o.noise:size(1) or nil
  local ctx, neg = self:_contexts(o, B0)
  local x, dt = self:_noise(o, B0 or ctx:size(1))
  local B = x:size(1)
  ctx, neg = expand_to(ctx, B, self.who), expand_to(neg, B, self.who)
  local traj_idx = trajectory_index(o.trajectory_steps, self.num_inference_steps, self.who)
  local r
  if self.causal then r = self:_causal(o, x, dt, ctx, neg, traj_idx)
  else r = self:_bidirectional(o, x, dt, ctx, neg, traj_idx) end
  local decode = o.decode
  if decode == nil then decode = self.vae ~= nil end
  if decode then
    local td = sfwb.time()
    r.video = self.vae:decode(r.latents)
    r.timings.decode = sfwb.time() - td
  end
  r.timings.total = sfwb.time() - t0
  r.timesteps = self.timesteps
  return r
end

local function extra_opts(o, dev)
  local fo = {}
  if o.clip_fea then fo.clip_fea = o.clip_fea:to(dev) end
  if o.y then fo.y = o.y:to(dev) end
  return fo
end

local function copy(t) local r = {}; for k, v in pairs(t) do r[k] = v end; return r end

function Pipe:_bidirectional(o, x, dt, ctx, neg, traj_idx)
  local s = self:scheduler()
  local base = extra_opts(o, self.device)
  local states = traj_idx and {x} or nil
  local timings = {steps = {}}
  for k, tv in ipairs(s.timesteps:totable()) do
    local ts = sfwb.time()
    local fo_c, fo_u = copy(base), copy(base)
    fo_c.tag = {chunk = 1, step = k, pass = "denoise", timestep = tv}
    fo_u.tag = {chunk = 1, step = k, pass = "uncond", timestep = tv}
    x = self:_advance(s, x, tv, ctx, neg, fo_c, fo_u)
    if states then states[#states + 1] = x end
    sfwb.sync()
    timings.steps[k] = sfwb.time() - ts
    if o.on_step then o.on_step(k, x) end
    if o.progress then self:_report(o.progress, k, self.num_inference_steps, timings.steps) end
  end
  local r = {latents = x, timings = timings}
  if states then
    local sel = {}
    for i, j in ipairs(traj_idx) do sel[i] = states[j] end
    r.trajectory = sfwb.stack(sel, 2)
  end
  return r
end

function Pipe:_report(progress, k, n, times)
  local done = 0
  for i = 1, k do done = done + times[i] end
  local line = string.format("step %d/%d  %.2fs  ETA %s", k, n, times[k], U.fmt_seconds(done / k * (n - k)))
  if type(progress) == "function" then progress(line) else io.stderr:write(line .. "\n") end
end

-- the frame blocks, as CausalDiffusionInferencePipeline lays them out
function Pipe:_blocks(F, n_in)
  local nf = self.num_frame_per_block
  local b = {}
  if not self.independent_first_frame or n_in > 0 then
    if F % nf ~= 0 then
      error(string.format("%s: %d frames are not a multiple of num_frame_per_block %d", self.who, F, nf), 4)
    end
    for _ = 1, F // nf do b[#b + 1] = nf end
  else
    if (F - 1) % nf ~= 0 then
      error(string.format("%s: with an independent first frame, frames - 1 (%d) must be a multiple of %d",
                          self.who, F - 1, nf), 4)
    end
    b[1] = 1
    for _ = 1, (F - 1) // nf do b[#b + 1] = nf end
  end
  return b
end

function Pipe:_causal(o, noise, dt, ctx, neg, traj_idx)
  local m, dev = self.generator, self.device
  local B, F = noise:size(1), noise:size(2)
  local initial = o.initial_latent and o.initial_latent:to(dev):to(dt)
  local n_in = initial and initial:size(2) or 0
  local blocks = self:_blocks(F, n_in)
  local F_out = F + n_in
  local frames = self.local_attn_size ~= -1 and self.local_attn_size or F_out
  local kvo = {batch = B, frames = frames}
  if self.local_attn_size ~= -1 then kvo.local_attn_size, kvo.sink_size = self.local_attn_size, self.sink_size end
  local kv_pos, kv_neg = m:kv_cache(kvo), m:kv_cache(kvo)
  local ca_pos, ca_neg = m:crossattn_cache{batch = B}, m:crossattn_cache{batch = B}
  local base = extra_opts(o, dev)
  local y = base.y
  local pos, chunk = 0, 0
  local function opts(kv, ca, n, tag)
    local fo = copy(base)
    fo.kv_cache, fo.crossattn_cache, fo.current_start_frame, fo.tag = kv, ca, pos, tag
    if y then fo.y = y:narrow(3, pos + 1, n):contiguous() end
    return fo
  end
  -- the clean context of both caches (initial latent or a finished block) at t = 0
  local function context_pass(lat, tag)
    local n = lat:size(2)
    local t = sfwb.full({B, n}, 0, {dtype = "f32", device = dev})
    local xm = U.to_model(lat)
    m:forward(xm, t, ctx, opts(kv_pos, ca_pos, n, tag))
    m:forward(xm, t, neg, opts(kv_neg, ca_neg, n, tag))
  end
  local outputs, traj = {}, nil
  local nsteps = self.num_inference_steps
  if traj_idx then traj = {}; for i = 1, #traj_idx do traj[i] = {} end end
  if initial then
    local sizes = {}
    local rest = n_in
    if self.independent_first_frame then sizes[1] = 1; rest = rest - 1 end
    if rest % self.num_frame_per_block ~= 0 then
      error(string.format("%s: initial_latent has %d frames, not %s k*%d", self.who, n_in,
                          self.independent_first_frame and "1 +" or "", self.num_frame_per_block), 3)
    end
    for _ = 1, rest // self.num_frame_per_block do sizes[#sizes + 1] = self.num_frame_per_block end
    for _, n in ipairs(sizes) do
      local lat = initial:narrow(2, pos + 1, n):contiguous()
      chunk = chunk + 1
      context_pass(lat, {chunk = chunk, step = 1, pass = "refresh", timestep = 0})
      outputs[#outputs + 1] = lat
      if traj then for i = 1, #traj_idx do traj[i][#traj[i] + 1] = lat end end
      pos = pos + n
    end
  end
  local timings = {blocks = {}}
  for bi, n in ipairs(blocks) do
    local tb = sfwb.time()
    chunk = chunk + 1
    local x = noise:narrow(2, pos - n_in + 1, n):contiguous()
    local states = traj and {x} or nil
    local s = self:scheduler()
    for k, tv in ipairs(s.timesteps:totable()) do
      local tag = {chunk = chunk, step = k, pass = "denoise", timestep = tv}
      local tagu = {chunk = chunk, step = k, pass = "uncond", timestep = tv}
      x = self:_advance(s, x, tv, ctx, neg, opts(kv_pos, ca_pos, n, tag), opts(kv_neg, ca_neg, n, tagu))
      if states then states[#states + 1] = x end
    end
    outputs[#outputs + 1] = x
    if traj then for i, j in ipairs(traj_idx) do traj[i][#traj[i] + 1] = states[j] end end
    context_pass(x, {chunk = chunk, step = nsteps + 1, pass = "refresh", timestep = 0})
    pos = pos + n
    sfwb.sync()
    timings.blocks[bi] = sfwb.time() - tb
    if o.on_block then o.on_block(bi, x) end
    if o.progress then
      local line = string.format("block %d/%d  frames %d-%d  %.2fs (%d steps)", bi, #blocks, pos - n, pos - 1,
                                 timings.blocks[bi], nsteps)
      if type(o.progress) == "function" then o.progress(line) else io.stderr:write(line .. "\n") end
    end
  end
  local r = {latents = #outputs == 1 and outputs[1] or sfwb.cat(outputs, 2), timings = timings}
  if traj then
    local sel = {}
    for i = 1, #traj_idx do sel[i] = #traj[i] == 1 and traj[i][1] or sfwb.cat(traj[i], 2) end
    r.trajectory = sfwb.stack(sel, 2)
  end
  return r
end

function Pipe:__tostring()
  return string.format("%s(solver=%s, steps=%d, shift=%s, guidance=%s)", self.causal and "CausalDiffusionPipeline"
                       or "BidirectionalDiffusionPipeline", self.solver, self.num_inference_steps,
                       tostring(self.timestep_shift), tostring(self.guidance_scale))
end

M.Pipe = Pipe
return M
