-- sfwb/train/lora.lua — LongLive's LoRA training inside the DMD trainer (trainer/distillation.py: `adapter` in the
-- config): fresh PEFT adapters on every linear of the generator's attention blocks (and the critic's, with
-- apply_to_critic, default true), base weights frozen, the optimizers over the adapters only, no EMA (LongLive
-- skips it in LoRA mode), checkpoints {generator_lora, critic_lora, step} in get_peft_model_state_dict's names,
-- `lora_ckpt` (a checkpoint holding both entries) loaded after the adapters are attached, its step restored.
local sfwb = require "sfwb"

local M = {}

local get = require("sfwb.train.base").get -- a config value, the default for nil or YAML null

-- the adapter settings of cfg.adapter, or nil without one
function M.settings(cfg)
  local a = get(cfg, "adapter", nil)
  if a == nil then return nil end
  if type(a) ~= "table" then error("config: adapter must be a mapping (type, rank, alpha, dropout, ...)", 0) end
  local kind = get(a, "type", "lora")
  if kind ~= "lora" then error(string.format("config: adapter.type %s is not implemented (LongLive has lora only)", tostring(kind)), 0) end
  local rank = get(a, "rank", 16)
  local alpha = get(a, "alpha", nil)
  if alpha == nil or alpha == 0 then alpha = rank end -- LongLive: lora_alpha = alpha or rank
  return {rank = rank, alpha = alpha, dropout = get(a, "dropout", 0.0), apply_to_critic = get(a, "apply_to_critic", true),
          dtype = get(a, "dtype", nil)}
end

-- attach the adapters (before the optimizers are built)
function M.attach(tr, s)
  tr.generator:lora{rank = s.rank, alpha = s.alpha, dropout = s.dropout}
  if s.apply_to_critic then tr.critic:lora{rank = s.rank, alpha = s.alpha, dropout = s.dropout} end
  tr.lora = s
end

-- the parameters an optimizer trains: the adapters in LoRA mode, else every parameter
function M.trainable(m)
  local lp = m:lora_parameters()
  if next(lp) ~= nil then return lp end
  return m:parameters()
end

-- copy a PEFT state dict (prefix "base_model.model.", adapter names with or without ".default") into the adapters
-- the model carries (in place: the optimizer keeps its tensors)
local function copy_into(m, sd, where)
  local params = m:parameters()
  local n = 0
  for k, v in pairs(sd) do
    local name = k:gsub("^base_model%.model%.", ""):gsub("%.lora_([AB])%.default%.weight$", ".lora_%1.weight")
    local p = params[name]
    if not p then error(string.format("train: %s: %s has no adapter in the model (rank or targets differ?)", where, k), 0) end
    if table.concat(p:shape(), "x") ~= table.concat(v:shape(), "x") then
      error(string.format("train: %s: %s is %s, the adapter %s", where, k, table.concat(v:shape(), "x"),
                          table.concat(p:shape(), "x")), 0)
    end
    sfwb.no_grad(function() p:copy_(v:to(p:device()):to(p:dtype())) end)
    n = n + 1
  end
  return n
end

local function sub(t, key)
  local out, found = {}, false
  for k, v in pairs(t) do
    if type(k) == "string" and k:sub(1, #key + 1) == key .. "." then out[k:sub(#key + 2)] = v; found = true end
  end
  return found and out or nil
end

-- a LongLive LoRA checkpoint (model.pt with generator_lora and critic_lora) into the adapters; returns its step
function M.load(tr, path)
  local ck = sfwb.load(path)
  local g, c = sub(ck, "generator_lora"), sub(ck, "critic_lora")
  if not g or (tr.lora.apply_to_critic and not c) then
    error(string.format("train: %s is not a LoRA checkpoint (LongLive needs generator_lora and critic_lora)", path), 0)
  end
  copy_into(tr.generator, g, path .. " generator_lora")
  if c and tr.lora.apply_to_critic then copy_into(tr.critic, c, path .. " critic_lora") end
  local step = ck.step
  if type(step) == "userdata" then step = step:item() end
  return step and math.tointeger(step) or nil
end

-- model.pt as LongLive writes it in LoRA mode
function M.checkpoint(tr)
  local ck = {generator_lora = tr.generator:lora_state_dict(), step = tr.step_count}
  local c = tr.critic:lora_state_dict()
  if next(c) ~= nil then ck.critic_lora = c end
  return ck
end

return M
