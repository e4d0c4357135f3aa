-- sfwb/optim.lua — optimizers: sfwb.optim.adamw(params, opts) behaves as torch.optim.AdamW (single-tensor
-- path: per-parameter step counts, bias corrections, decoupled weight decay); the update of each tensor
-- is one fused C/CUDA kernel (sfwb._train.adamw). bf16/f16 parameters get f32 master weights.
local sfwb = require "sfwb"
local T = sfwb._train
local M = {}

-- params: array of tensors, {name = tensor} map (ordered by name), or a model with :parameters()
local function param_list(params)
  if sfwb.is_tensor(params) then return {params}, {} end
  if type(params) ~= "table" and type(params) ~= "userdata" then
    error("optimizer params must be a table of tensors or a model, got " .. type(params), 3)
  end
  if type(params.parameters) == "function" then params = params:parameters() end
  local list, names = {}, {}
  if #params > 0 then
    for i, p in ipairs(params) do list[i] = p end
  else
    for k in pairs(params) do names[#names + 1] = k end
    table.sort(names, function(a, b) return tostring(a) < tostring(b) end)
    for i, k in ipairs(names) do list[i] = params[k] end
  end
  for i, p in ipairs(list) do
    if not sfwb.is_tensor(p) then error(("optimizer param %s is not a tensor"):format(names[i] or i), 3) end
  end
  return list, names
end
M.param_list = param_list

local AdamW = {}
AdamW.__index = AdamW

function M.adamw(params, opts)
  opts = opts or {}
  local list, names = param_list(params)
  local betas = opts.betas or {0.9, 0.999}
  local self = setmetatable({
    params = list,
    names = names,
    state = {},
    param_groups = {{
      lr = opts.lr or 1e-3, betas = {betas[1], betas[2]}, eps = opts.eps or 1e-8,
      weight_decay = opts.weight_decay == nil and 1e-2 or opts.weight_decay,
      amsgrad = false, maximize = false,
    }},
  }, AdamW)
  if opts.amsgrad then error("adamw: amsgrad is not supported", 2) end
  return self
end

function AdamW:step()
  local g = self.param_groups[1]
  sfwb.no_grad(function()
    for i, p in ipairs(self.params) do
      local grad = p.grad
      if grad then
        local st = self.state[i]
        if not st then
          st = {step = 0, exp_avg = sfwb.zeros(p:shape(), {dtype = "f32", device = p:device()}),
                exp_avg_sq = sfwb.zeros(p:shape(), {dtype = "f32", device = p:device()})}
          if p:dtype() ~= "f32" then st.master = p:float():contiguous() end
          self.state[i] = st
        end
        st.step = st.step + 1
        T.adamw(p, grad, st.exp_avg, st.exp_avg_sq, st.master, g.lr, g.betas[1], g.betas[2], g.eps,
                g.weight_decay, st.step)
      end
    end
  end)
end

-- set_to_none (default true, as torch >= 2.0) frees the grads; false zeroes them in place
function AdamW:zero_grad(set_to_none)
  for _, p in ipairs(self.params) do
    if set_to_none == false then
      local gr = p.grad
      if gr then sfwb.no_grad(function() gr:zero_() end) end
    else
      p.grad = nil
    end
  end
end

-- torch-shaped state dict: {state = {[0] = {step=, exp_avg=, exp_avg_sq=}, ...}, param_groups = {...}}
-- (indices are 0-based parameter positions, as torch's); master weights travel as `master` when present
function AdamW:state_dict()
  local state = {}
  for i, st in pairs(self.state) do
    state[i - 1] = {step = sfwb.tensor(st.step, {dtype = "f32"}), exp_avg = st.exp_avg,
                    exp_avg_sq = st.exp_avg_sq, master = st.master}
  end
  local g = self.param_groups[1]
  local ids = {}
  for i = 1, #self.params do ids[i] = i - 1 end
  return {state = state, param_groups = {{lr = g.lr, betas = {g.betas[1], g.betas[2]}, eps = g.eps,
          weight_decay = g.weight_decay, amsgrad = false, maximize = false, params = ids}}}
end

-- sfwb.load flattens nested dicts to dotted names ("state.0.exp_avg", "param_groups.0.lr"): rebuild them
local function unflatten(flat)
  local out = {}
  for k, v in pairs(flat) do
    local t, parts = out, {}
    for seg in tostring(k):gmatch("[^.]+") do parts[#parts + 1] = math.tointeger(tonumber(seg)) or seg end
    for i = 1, #parts - 1 do
      t[parts[i]] = t[parts[i]] or {}
      t = t[parts[i]]
    end
    t[parts[#parts]] = v
  end
  return out
end

local function list1(t) -- a 0-based list from a file as a 1-based Lua list
  if type(t) == "table" and t[0] ~= nil then
    local r, i = {}, 0
    while t[i] ~= nil do r[i + 1] = t[i]; i = i + 1 end
    return r
  end
  return t
end

function AdamW:load_state_dict(sd)
  if sd.state == nil and sd.param_groups == nil then sd = unflatten(sd) end
  sd.param_groups = list1(sd.param_groups)
  if sd.param_groups and sd.param_groups[1] then sd.param_groups[1].betas = list1(sd.param_groups[1].betas) end
  local n = #self.params
  self.state = {}
  for k, st in pairs(sd.state or {}) do
    local i = math.tointeger(tonumber(k))
    if not i or i < 0 or i >= n then error(("adamw state for parameter %s, but the optimizer has %d"):format(k, n), 2) end
    local p = self.params[i + 1]
    local function f32(t, what)
      if not sfwb.is_tensor(t) then error(("adamw state %d: %s missing"):format(i, what), 3) end
      local s1, s2 = table.concat(t:shape(), "x"), table.concat(p:shape(), "x")
      if s1 ~= s2 then error(("adamw state %d: %s has shape %s, parameter %s"):format(i, what, s1, s2), 3) end
      return t:to(p:device()):float():contiguous():clone()
    end
    local step = st.step
    if sfwb.is_tensor(step) then step = step:item() end
    self.state[i + 1] = {step = math.tointeger(step) or math.floor(step), exp_avg = f32(st.exp_avg, "exp_avg"),
                         exp_avg_sq = f32(st.exp_avg_sq, "exp_avg_sq"),
                         master = p:dtype() ~= "f32" and (st.master and f32(st.master, "master") or p:float():contiguous()) or nil}
  end
  local g = sd.param_groups and sd.param_groups[1]
  if g then
    local mine = self.param_groups[1]
    mine.lr, mine.eps, mine.weight_decay = g.lr or mine.lr, g.eps or mine.eps, g.weight_decay or mine.weight_decay
    if g.betas then mine.betas = {g.betas[1], g.betas[2]} end
  end
end

return M
