-- sfwb/train/wrapper.lua — a Wan network as Self-Forcing's WanDiffusionWrapper sees it: inputs in the
-- pipeline layout [B, F, C, h, w], per-frame timesteps [B, F], and an x0 prediction computed from the
-- flow output with THAT wrapper's own shifted grid (generator shift 5, score networks shift 8).
local sfwb = require "sfwb"

local M = {}
local Wrapper = {}
Wrapper.__index = Wrapper

-- model: a sfwb.wan model; shift: the grid used to turn flow into x0; causal: per-frame timesteps
function M.new(model, shift, opts)
  opts = opts or {}
  local self = setmetatable({}, Wrapper)
  self.model = model
  self.shift = shift
  self.causal = opts.causal
  self.checkpoint = opts.checkpoint -- recompute each block in backward (gradient_checkpointing)
  if self.causal == nil then self.causal = model.config and model.config.causal or false end
  self.scheduler = sfwb.scheduler.flow_match{shift = shift, num_train_timesteps = 1000, sigma_min = 0.0,
                                             extra_one_step = true}
  return self
end

local U = require "sfwb.pipeline.util"
local to_model, from_model = U.to_model, U.from_model -- [B,F,C,h,w] <-> the model's [B,C,F,h,w]

-- flatten [B, F, ...] to [B*F, ...] and timesteps [B, F] to [B*F] for the scheduler's per-sample calls
local function flat(x)
  local s = x:shape()
  local rest = {s[1] * s[2]}
  for i = 3, #s do rest[#rest + 1] = s[i] end
  return x:reshape(rest)
end

-- x [B, F, C, h, w] noisy latents, t [B, F] timesteps, ctx [B, L, D]; extra: clip_fea, y, kv_cache, ...
-- returns flow, x0 (both [B, F, C, h, w])
function Wrapper:forward(x, t, ctx, extra)
  local tm = t
  if not self.causal then tm = t:select(2, 1):contiguous() end  -- bidirectional: one timestep per sample, t[:, 0]
  extra = extra or {}
  if self.checkpoint and sfwb.is_grad_enabled() then
    local e = {}
    for k, v in pairs(extra) do e[k] = v end
    e.checkpoint = true
    extra = e
  end
  if extra.clean_x then -- teacher forcing: the clean sequence in the model's layout too
    local e = {}
    for k, v in pairs(extra) do e[k] = v end
    e.clean_x = to_model(extra.clean_x)
    extra = e
  end
  local flow = from_model(self.model:forward(to_model(x), tm, ctx, extra))
  local x0 = self.scheduler:pred_x0(flat(flow), flat(x), flat(t):contiguous()):view(x:shape())
  return flow, x0
end

-- v = (x_t - x0) / sigma(t) on this wrapper's grid (Self-Forcing's _convert_x0_to_flow_pred, float64)
function Wrapper:x0_to_flow(x0, xt, t)
  return self.scheduler:x0_to_flow(flat(x0), flat(xt), flat(t):contiguous()):view(x0:shape())
end

M.to_model, M.from_model, M.flat = to_model, from_model, flat
return M
