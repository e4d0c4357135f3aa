-- sfwb/scheduler_multistep.lua — the multi-step samplers of the originals' diffusion pipelines:
-- FlowUniPCMultistepScheduler (UniPC, bh2, order 2, predict x0) and FlowDPMSolverMultistepScheduler
-- (DPM-Solver++, midpoint, order 2) of Wan's wan/utils/fm_solvers*.py, built as Self-Forcing's
-- Causal/BidirectionalDiffusionInferencePipeline builds them (class shift 1, the sampling shift applied
-- once in set_timesteps). The grids are computed in float64 like numpy and rounded to float32 where
-- the original stores them; the int64 timesteps the model sees are truncated as torch's .to(int64).
-- The per-step scalars (lambda, h, phi) follow the original's float32 0-d tensor arithmetic.
local sfwb = require "sfwb"

local M = {}

local spack, sunpack = string.pack, string.unpack
local function f32(x) return (sunpack("f", spack("f", x))) end

-- float32 log/expm1 as torch on 0-d float32 tensors (computed in double, rounded once)
local function log32(x) return f32(math.log(x)) end
local function expm1_32(x)
  if x == -math.huge then return -1.0 end
  if math.abs(x) < 1e-5 then return f32(x + x * x / 2 + x * x * x / 6) end
  return f32(math.exp(x) - 1)
end

-- the class's training grid maximum: sigmas = 1 - linspace(1, 1/N, N)[::-1] in float64, stored as float32
local function class_sigma_max(ntrain)
  return f32(1.0 - 1.0 / ntrain)
end

-- np.linspace(a, b, n + 1)[:-1] in float64 (y[i] = i * step + a, step = (b - a) / n)
local function linspace_drop_last(a, b, n)
  local step = (b - a) / n
  local out = {}
  for i = 0, n - 1 do out[i + 1] = i * step + a end
  return out
end

local function shift_sigmas(sig, shift)
  local out = {}
  for i, s in ipairs(sig) do out[i] = (shift * s) / (1 + (shift - 1) * s) end
  return out
end

local Base = {}
Base.__index = Base

local function trunc(x) -- toward zero, as a float64 -> int64 cast
  if x >= 0 then return math.floor(x) end
  return math.ceil(x)
end

-- fills sigmas (float32, with a final 0) and timesteps (int64 values) from float64 sigmas
function Base:_set_from_sigmas(sig64)
  local ts, sg = {}, {}
  for i, s in ipairs(sig64) do
    ts[i] = trunc(s * self.num_train_timesteps)
    sg[i] = f32(s)
  end
  sg[#sg + 1] = 0.0
  self._sigmas, self._timesteps = sg, ts
  self.sigmas = sfwb.tensor(sg, {dtype = "f32"})
  self.timesteps = sfwb.tensor(ts, {dtype = "i64"})
  self.num_inference_steps = #ts
  self.model_outputs = {}
  self.lower_order_nums = 0
  self.last_sample = nil
  self.step_index = nil
  self.this_order = nil
  return self
end

-- index of timestep t in the schedule (the second match when it occurs twice, as index_for_timestep)
function Base:index_for_timestep(t)
  if type(t) ~= "number" then t = t:item() end
  local hits = {}
  for i, v in ipairs(self._timesteps) do if v == t then hits[#hits + 1] = i - 1 end end
  if #hits == 0 then
    error(string.format("scheduler: timestep %s is not one of s.timesteps (%d .. %d)", tostring(t),
                        self._timesteps[1] or -1, self._timesteps[#self._timesteps] or -1), 3)
  end
  return hits[#hits > 1 and 2 or 1]
end

function Base:_check_step()
  if not self._timesteps then error("scheduler: call s:set_timesteps(n) before s:step", 3) end
  if self.step_index == nil then return end
  if self.step_index >= #self._timesteps then
    error(string.format("scheduler: all %d steps are done (call set_timesteps again)", #self._timesteps), 3)
  end
end

local function lam(sigma) -- lambda = log(alpha) - log(sigma) with alpha = 1 - sigma, float32
  local alpha = f32(1 - sigma)
  return f32(log32(alpha) - log32(sigma)), alpha
end

---------------------------------------------------------------------------------------------------
-- UniPC
local UniPC = setmetatable({}, {__index = Base})
UniPC.__index = UniPC

-- opts: shift (the sampling shift, default 5.0), num_train_timesteps (1000), solver_order (2),
-- solver_type ("bh2" | "bh1"), lower_order_final (true), disable_corrector ({}), num_inference_steps
function M.unipc(o)
  o = o or {}
  local self = setmetatable({}, UniPC)
  self.kind = "unipc"
  self.shift = o.shift or 5.0
  self.num_train_timesteps = o.num_train_timesteps or 1000
  self.solver_order = o.solver_order or 2
  if self.solver_order ~= 1 and self.solver_order ~= 2 then
    error("scheduler.unipc: solver_order " .. tostring(self.solver_order) .. " is not supported (1 or 2)", 2)
  end
  self.solver_type = o.solver_type or "bh2"
  if self.solver_type ~= "bh1" and self.solver_type ~= "bh2" then
    error("scheduler.unipc: solver_type must be bh1 or bh2, got " .. tostring(self.solver_type), 2)
  end
  self.lower_order_final = o.lower_order_final ~= false
  self.disable_corrector = {}
  for _, v in ipairs(o.disable_corrector or {}) do self.disable_corrector[v] = true end
  self.sigma_max = class_sigma_max(self.num_train_timesteps)
  self.sigma_min = 0.0
  if o.num_inference_steps then self:set_timesteps(o.num_inference_steps) end
  return self
end

-- the original's UniPC(shift=1):set_timesteps(n, shift=shift)
function UniPC:set_timesteps(n, shift)
  if type(n) ~= "number" or n < 1 or n % 1 ~= 0 then
    error("scheduler.unipc:set_timesteps: n must be a positive integer, got " .. tostring(n), 2)
  end
  local sig = linspace_drop_last(self.sigma_max, self.sigma_min, n)
  return self:_set_from_sigmas(shift_sigmas(sig, shift or self.shift))
end

local function bh_coeffs(self, hh)
  local h_phi_1 = expm1_32(hh)
  local B_h = self.solver_type == "bh1" and hh or expm1_32(hh)
  return h_phi_1, B_h
end

-- b vector and R rows for UniC (order p), as the original's loop
local function unic_system(rks, hh, h_phi_1, B_h, order)
  local h_phi_k = f32(f32(h_phi_1 / hh) - 1)
  local factorial = 1
  local R, b = {}, {}
  for i = 1, order do
    local row = {}
    for j, rk in ipairs(rks) do row[j] = f32(rk ^ (i - 1)) end
    R[i] = row
    b[i] = f32(f32(h_phi_k * factorial) / B_h)
    factorial = factorial * (i + 1)
    h_phi_k = f32(f32(h_phi_k / hh) - f32(1 / factorial))
  end
  return R, b
end

-- small dense solve (order <= 2 here): Gaussian elimination with partial pivoting in float64
local function solve(R, b)
  local n = #b
  local A, y = {}, {}
  for i = 1, n do A[i] = {table.unpack(R[i])}; y[i] = b[i] end
  for c = 1, n do
    local p = c
    for r = c + 1, n do if math.abs(A[r][c]) > math.abs(A[p][c]) then p = r end end
    A[c], A[p] = A[p], A[c]; y[c], y[p] = y[p], y[c]
    for r = c + 1, n do
      local l = A[r][c] / A[c][c]
      for k = c, n do A[r][k] = A[r][k] - l * A[c][k] end
      y[r] = y[r] - l * y[c]
    end
  end
  local x = {}
  for i = n, 1, -1 do
    local s = y[i]
    for k = i + 1, n do s = s - A[i][k] * x[k] end
    x[i] = f32(s / A[i][i])
  end
  return x
end

-- UniP: the predictor from the stored x0 predictions
function UniPC:_predict(x, order)
  local si = self.step_index
  local mo = self.model_outputs
  local m0 = mo[#mo]
  local sigma_t, sigma_s0 = self._sigmas[si + 2], self._sigmas[si + 1]
  local lambda_t, alpha_t = lam(sigma_t)
  local lambda_s0 = lam(sigma_s0)
  local h = f32(lambda_t - lambda_s0)
  local D1
  if order == 2 then
    local lambda_si = lam(self._sigmas[si])
    local rk = f32(f32(lambda_si - lambda_s0) / h)
    D1 = (mo[#mo - 1] - m0) / rk
  end
  local hh = -h
  local h_phi_1, B_h = bh_coeffs(self, hh)
  local xt = x * f32(sigma_t / sigma_s0) - m0 * f32(alpha_t * h_phi_1)
  if D1 then xt = xt - (D1 * 0.5) * f32(alpha_t * B_h) end
  return xt
end

-- UniC: the corrector of the previous predictor's sample with the new x0 prediction
function UniPC:_correct(model_t, last_sample, this_sample, order)
  local si = self.step_index
  local mo = self.model_outputs
  local m0 = mo[#mo]
  local sigma_t, sigma_s0 = self._sigmas[si + 1], self._sigmas[si]
  local lambda_t, alpha_t = lam(sigma_t)
  local lambda_s0 = lam(sigma_s0)
  local h = f32(lambda_t - lambda_s0)
  local rks, D1s = {}, {}
  for i = 1, order - 1 do
    local lambda_si = lam(self._sigmas[si - i])
    local rk = f32(f32(lambda_si - lambda_s0) / h)
    rks[#rks + 1] = rk
    D1s[#D1s + 1] = (mo[#mo - i] - m0) / rk
  end
  rks[#rks + 1] = 1.0
  local hh = -h
  local h_phi_1, B_h = bh_coeffs(self, hh)
  local rhos
  if order == 1 then rhos = {0.5}
  else
    local R, b = unic_system(rks, hh, h_phi_1, B_h, order)
    rhos = solve(R, b)
  end
  local xt_ = last_sample * f32(sigma_t / sigma_s0) - m0 * f32(alpha_t * h_phi_1)
  local acc = (model_t - m0) * rhos[#rhos]
  for k = 1, #D1s do acc = D1s[k] * rhos[k] + acc end
  return xt_ - acc * f32(alpha_t * B_h)
end

-- one sampling step: flow predicted at timestep t (one of s.timesteps) for sample x -> the next sample
function UniPC:step(flow, t, x)
  self:_check_step()
  if self.step_index == nil then self.step_index = self:index_for_timestep(t) end
  local si = self.step_index
  local n = #self._timesteps
  local use_corrector = si > 0 and not self.disable_corrector[si - 1] and self.last_sample ~= nil
  local x0 = x - flow * self._sigmas[si + 1]
  if use_corrector then x = self:_correct(x0, self.last_sample, x, self.this_order) end
  local mo = self.model_outputs
  if #mo >= self.solver_order then table.remove(mo, 1) end
  mo[#mo + 1] = x0
  local order = self.lower_order_final and math.min(self.solver_order, n - si) or self.solver_order
  self.this_order = math.min(order, self.lower_order_nums + 1)
  self.last_sample = x
  local prev = self:_predict(x, self.this_order)
  if self.lower_order_nums < self.solver_order then self.lower_order_nums = self.lower_order_nums + 1 end
  self.step_index = si + 1
  return prev:to(x:dtype())
end

---------------------------------------------------------------------------------------------------
-- DPM-Solver++
local DPM = setmetatable({}, {__index = Base})
DPM.__index = DPM

-- opts: shift (the sampling shift, default 5.0), num_train_timesteps (1000), solver_order (2),
-- lower_order_final (true), num_inference_steps
function M.dpmpp(o)
  o = o or {}
  local self = setmetatable({}, DPM)
  self.kind = "dpm++"
  self.shift = o.shift or 5.0
  self.num_train_timesteps = o.num_train_timesteps or 1000
  self.solver_order = o.solver_order or 2
  if self.solver_order ~= 1 and self.solver_order ~= 2 then
    error("scheduler.dpmpp: solver_order " .. tostring(self.solver_order) .. " is not supported (1 or 2)", 2)
  end
  self.lower_order_final = o.lower_order_final ~= false
  if o.num_inference_steps then self:set_timesteps(o.num_inference_steps) end
  return self
end

-- get_sampling_sigmas(n, shift) handed to the shift-1 class through retrieve_timesteps(sigmas=)
function DPM:set_timesteps(n, shift)
  if type(n) ~= "number" or n < 1 or n % 1 ~= 0 then
    error("scheduler.dpmpp:set_timesteps: n must be a positive integer, got " .. tostring(n), 2)
  end
  local sig = linspace_drop_last(1.0, 0.0, n)
  return self:_set_from_sigmas(shift_sigmas(sig, shift or self.shift))
end

function DPM:step(flow, t, x)
  self:_check_step()
  if self.step_index == nil then self.step_index = self:index_for_timestep(t) end
  local si = self.step_index
  local n = #self._timesteps
  -- final_sigmas_type "zero": the last step is always first order (the original's lower_order_second only
  -- matters for third order, which the pipelines never use)
  local lower_final = si == n - 1
  local x0 = x - flow * self._sigmas[si + 1]
  local mo = self.model_outputs
  if #mo >= self.solver_order then table.remove(mo, 1) end
  mo[#mo + 1] = x0
  local sample = x:float()
  local sigma_t, sigma_s0 = self._sigmas[si + 2], self._sigmas[si + 1]
  local lambda_t, alpha_t = lam(sigma_t)
  local lambda_s0 = lam(sigma_s0)
  local h = f32(lambda_t - lambda_s0)
  local c = f32(alpha_t * f32(f32(math.exp(-h)) - 1.0))
  local prev
  if self.solver_order == 1 or self.lower_order_nums < 1 or lower_final then
    prev = sample * f32(sigma_t / sigma_s0) - x0 * c
  else
    local lambda_s1 = lam(self._sigmas[si])
    local h0 = f32(lambda_s0 - lambda_s1)
    local r0 = f32(h0 / h)
    local D1 = (x0 - mo[#mo - 1]) * f32(1.0 / r0)
    prev = sample * f32(sigma_t / sigma_s0) - x0 * c - D1 * f32(0.5 * c)
  end
  if self.lower_order_nums < self.solver_order then self.lower_order_nums = self.lower_order_nums + 1 end
  self.step_index = si + 1
  return prev:to(x0:dtype())
end

M.UniPC, M.DPM = UniPC, DPM
return M
