-- sfwb/ema.lua — sfwb.ema(model, decay, {start_step=}) as Self-Forcing's EMA_FSDP: an f32 shadow of every
-- parameter, shadow <- decay * shadow + (1 - decay) * param after each generator step (one fused kernel
-- per tensor), copy_to(model) writes it back, state_dict() is the shadow itself {name = f32 tensor}.
-- With start_step > 0 the shadow does not exist until :maybe_start(step) sees step >= start_step; it is
-- then taken from the current weights (the trainer calls it at the end of each iteration, as SF does).
local sfwb = require "sfwb"
local T = sfwb._train

local EMA = {}
EMA.__index = EMA

local function named_params(model)
  if type(model) ~= "table" and type(model) ~= "userdata" then error("ema: expected a model or {name = tensor}", 3) end
  if type(model.parameters) == "function" then return model:parameters() end
  return model
end

function EMA:start()
  self.shadow = {}
  sfwb.no_grad(function()
    for name, p in pairs(named_params(self.model)) do self.shadow[name] = p:float():contiguous():clone() end
  end)
  self.started = true
end

function EMA:maybe_start(step)
  if not self.started and step >= self.start_step then self:start() end
  return self.started
end

-- returns false (and does nothing) before the EMA has started
function EMA:update()
  if not self.started then return false end
  local d = self.decay
  sfwb.no_grad(function()
    for name, p in pairs(named_params(self.model)) do
      local s = self.shadow[name]
      if s then T.ema(s, p, d) end -- names unknown to the shadow are skipped, as LongLive's EMA
    end
  end)
  return true
end

function EMA:copy_to(model)
  if not self.started then error("ema: copy_to before the EMA has started", 2) end
  local params = named_params(model or self.model)
  sfwb.no_grad(function()
    for name, s in pairs(self.shadow) do
      local p = params[name]
      if p then p:copy_(s) end
    end
  end)
end

function EMA:state_dict() return self.shadow or {} end

function EMA:load_state_dict(sd)
  self.shadow = {}
  for name, t in pairs(sd) do
    local clean = tostring(name):gsub("_fsdp_wrapped_module%.", "")
    self.shadow[clean] = t:float():contiguous():clone()
  end
  self.started = true
end

return function(model, decay, opts)
  opts = opts or {}
  local self = setmetatable({model = model, decay = decay or 0.99, start_step = opts.start_step or 0,
                             started = false}, EMA)
  if self.start_step <= 0 then self:start() end
  return self
end
