-- sfwb/scheduler.lua — Self-Forcing's flow-matching scheduler (grid, shift, training weights,
-- add_noise, flow<->x0 conversions, Euler step) and the warp_denoising_step mapping.
-- The grid is computed with float32 rounding after every operation, in the same order as the
-- reference's float32 tensor arithmetic, so lookups agree with it grid point for grid point.
local sfwb = require "sfwb"

local M = {}

local spack, sunpack = string.pack, string.unpack
-- round a Lua number (double) to the nearest float32, as a torch float32 op result
local function f32(x) return (sunpack("f", spack("f", x))) end
M._f32 = f32

-- torch.linspace(start, end_, steps) on CPU in float32, reproducing this build's kernel: the first
-- half counts up from start and the second half down from end (exact end points); 16-element groups
-- start from a fused base (one rounding) and add j*step rounded, the tail is computed per element.
local function linspace_f32(start, end_, steps)
  local out = {}
  if steps == 1 then out[1] = f32(start) return out end
  local s, e = f32(start), f32(end_)
  local step = f32((e - s) / (steps - 1))
  local half = steps // 2
  local function base(i)
    if i < half then return f32(s + step * i) end
    return f32(e - step * (steps - i - 1))
  end
  local i = 0
  while i + 16 <= steps do
    for k = 0, 1 do
      local b = base(i + 8 * k)
      for j = 0, 7 do out[i + 8 * k + j + 1] = f32(b + f32(step * j)) end
    end
    i = i + 16
  end
  for idx = i, steps - 1 do out[idx + 1] = base(idx) end
  return out
end
M._linspace_f32 = linspace_f32

local Scheduler = {}
Scheduler.__index = Scheduler

local function tensor_f32(list)
  return sfwb.tensor(list, {dtype = "f32"})
end

-- opts: shift (default 3.0 as the class; Self-Forcing's wrappers pass 5.0 or 8.0),
-- num_train_timesteps (1000), sigma_max (1.0), sigma_min (0.003/1.002), extra_one_step (false),
-- inverse_timesteps (false), reverse_sigmas (false), num_inference_steps (1000), training (true)
function M.flow_match(opts)
  opts = opts or {}
  local self = setmetatable({}, Scheduler)
  self.shift = opts.shift or 3.0
  self.num_train_timesteps = opts.num_train_timesteps or 1000
  self.sigma_max = opts.sigma_max or 1.0
  self.sigma_min = opts.sigma_min or (0.003 / 1.002)
  self.extra_one_step = opts.extra_one_step or false
  self.inverse_timesteps = opts.inverse_timesteps or false
  self.reverse_sigmas = opts.reverse_sigmas or false
  self:set_timesteps(opts.num_inference_steps or 1000, opts.denoising_strength or 1.0,
                     opts.training == nil and true or opts.training)
  return self
end

-- rebuilds the grid as FlowMatchScheduler.set_timesteps(n, denoising_strength, training)
function Scheduler:set_timesteps(n, denoising_strength, training)
  denoising_strength = denoising_strength or 1.0
  local sigma_start = self.sigma_min + (self.sigma_max - self.sigma_min) * denoising_strength
  local sig
  if self.extra_one_step then
    sig = linspace_f32(sigma_start, self.sigma_min, n + 1)
    sig[#sig] = nil
  else
    sig = linspace_f32(sigma_start, self.sigma_min, n)
  end
  if self.inverse_timesteps then
    local r = {}
    for i = #sig, 1, -1 do r[#r + 1] = sig[i] end
    sig = r
  end
  local sh = self.shift
  for i = 1, #sig do
    local s = sig[i]
    -- shift * s / (1 + (shift - 1) * s), each op rounded to float32
    sig[i] = f32(f32(sh * s) / f32(1 + f32((sh - 1) * s)))
    if self.reverse_sigmas then sig[i] = f32(1 - sig[i]) end
  end
  local ts = {}
  for i = 1, #sig do ts[i] = f32(sig[i] * self.num_train_timesteps) end
  self._sigmas, self._timesteps = sig, ts
  self.sigmas = tensor_f32(sig)
  self.timesteps = tensor_f32(ts)
  if training then
    -- Gaussian bump over the timesteps, minus its minimum, rescaled to sum to n
    local y, ymin = {}, math.huge
    for i = 1, #ts do
      local d = f32(f32(ts[i] - n / 2) / n)
      local v = f32(math.exp(f32(-2 * f32(d * d))))
      y[i] = v
      if v < ymin then ymin = v end
    end
    local sum = 0.0
    for i = 1, #y do y[i] = f32(y[i] - ymin); sum = sum + y[i] end
    local scale = f32(n / f32(sum))
    local w = {}
    for i = 1, #y do w[i] = f32(y[i] * scale) end
    self._weights = w
    self.training_weights = tensor_f32(w)
    self.linear_timesteps_weights = self.training_weights
  end
  return self
end

-- timesteps given as a tensor (any shape, flattened as the reference's flatten(0, 1)), a number,
-- or a Lua list -> Lua list of numbers
local function timestep_list(t)
  if type(t) == "number" then return {t} end
  if type(t) == "table" then return t end
  local n = t:numel()
  local flat = t:reshape({n})
  if flat:dtype() ~= "i64" and flat:dtype() ~= "i32" and flat:dtype() ~= "f32" then flat = flat:float() end
  return flat:totable()
end

-- 0-based index of the nearest grid timestep (first one on ties, as torch.argmin); the difference
-- is taken in float32 like the reference's float32 grid minus the timestep tensor
function Scheduler:index(t)
  local ts = self._timesteps
  local tf = f32(t)
  local best, bi = math.huge, 0
  for i = 1, #ts do
    local d = math.abs(f32(ts[i] - tf))
    if d < best then best, bi = d, i - 1 end
  end
  return bi
end

-- the sigma of the nearest grid timestep (a Lua number)
function Scheduler:sigma(t) return self._sigmas[self:index(t) + 1] end

-- f32 tensor [N, 1, ..., 1] of nearest-grid sigmas, broadcastable against x ([N, ...])
function Scheduler:_sigma_tensor(t, x, field)
  local list = timestep_list(t)
  local n = x:size(1)
  if #list ~= n then
    error(string.format("scheduler: %d timesteps for a batch of %d (x is %s)", #list, n, tostring(x:dtype())), 3)
  end
  local vals = {}
  for i = 1, n do vals[i] = (field or self._sigmas)[self:index(list[i]) + 1] end
  local shape = {n}
  for _ = 2, x:dim() do shape[#shape + 1] = 1 end
  return tensor_f32(vals):view(shape):to(x:device())
end

-- x_t = (1 - sigma) x0 + sigma noise with the nearest grid sigma per sample; x0, noise [N, ...], t [N]
function Scheduler:add_noise(x0, noise, t)
  local sig = self:_sigma_tensor(t, x0)
  local xt = (1 - sig) * x0:float() + sig * noise:float()
  return xt:to(noise:dtype())
end

function Scheduler:training_target(x0, noise, t)
  return noise - x0
end

-- weights [N] of the nearest grid timesteps (only defined when built with training=true)
function Scheduler:training_weight(t)
  assert(self._weights, "scheduler: training weights need flow_match{training=true}")
  local list = timestep_list(t)
  local vals = {}
  for i = 1, #list do vals[i] = self._weights[self:index(list[i]) + 1] end
  return tensor_f32(vals)
end

-- the reference computes these in float64 and casts back; f64 is used when the tensor core has it
local function hi(x)
  local ok, y = pcall(function() return x:to("f64") end)
  if ok then return y end
  return x:float()
end

-- x0 = x_t - sigma * flow (Self-Forcing's _convert_flow_pred_to_x0), result in flow's dtype
function Scheduler:pred_x0(flow, xt, t)
  local dt = flow:dtype()
  local sig = self:_sigma_tensor(t, flow)
  local r = hi(xt) - hi(sig) * hi(flow)
  return r:to(dt)
end
Scheduler.flow_to_x0 = Scheduler.pred_x0

-- flow = (x_t - x0) / sigma (_convert_x0_to_flow_pred), result in x0's dtype
function Scheduler:x0_to_flow(x0, xt, t)
  local dt = x0:dtype()
  local sig = self:_sigma_tensor(t, x0)
  local r = (hi(xt) - hi(x0)) / hi(sig)
  return r:to(dt)
end

-- Euler step x + flow * (sigma_next - sigma), sigma_next = 0 after the last grid point (or to_final)
function Scheduler:step(flow, t, xt, to_final)
  local list = timestep_list(t)
  local n = xt:size(1)
  local final = to_final
  local cur, nxt = {}, {}
  for i = 1, n do
    local id = self:index(list[i])
    cur[i] = self._sigmas[id + 1]
    if id + 1 >= #self._sigmas then final = true end
    nxt[i] = self._sigmas[id + 2]
  end
  local shape = {n}
  for _ = 2, xt:dim() do shape[#shape + 1] = 1 end
  local endv = (self.inverse_timesteps or self.reverse_sigmas) and 1 or 0
  local d = {}
  for i = 1, n do d[i] = (final and endv or nxt[i]) - cur[i] end
  local dt = tensor_f32(d):view(shape):to(xt:device())
  return xt + flow * dt
end

-- warp_denoising_step: list[j] -> concat(timesteps, {0})[#grid - list[j]] (0-based), f32 tensor
function Scheduler:warp(list)
  if type(list) ~= "table" then list = timestep_list(list) end
  local ts = self._timesteps
  local n = #ts
  local out = {}
  for j = 1, #list do
    local k = n - math.floor(list[j])
    if k < 0 or k > n then
      error(string.format("scheduler:warp: step %s is outside 0..%d", tostring(list[j]), n), 2)
    end
    out[j] = (k == n) and 0.0 or ts[k + 1]
  end
  return tensor_f32(out)
end

M.Scheduler = Scheduler

-- the multi-step samplers (UniPC, DPM-Solver++) of the diffusion pipelines: sfwb/scheduler_multistep.lua
function M.unipc(opts) return require("sfwb.scheduler_multistep").unipc(opts) end
function M.dpmpp(opts) return require("sfwb.scheduler_multistep").dpmpp(opts) end

return M
