-- sfwb/wan_methods.lua — Wan model methods written in Lua (the model's __index falls back here): LoRA as
-- LongLive uses it (utils/lora_utils.py + PEFT's LoraLayer): load a checkpoint's adapters merged or kept
-- separate, attach fresh adapters for training, merge them, save them under PEFT's key names.
local sfwb = require "sfwb"

local M = {}

local PEFT_PREFIX = "base_model.model."

-- the Linear layers LongLive adapts: every nn.Linear inside an attention block (configure_lora_for_model),
-- i.e. q/k/v/o of self- and cross-attention (k_img/v_img too for i2v) and the two FFN layers
local BLOCK_LINEARS = {"self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o",
                       "cross_attn.q", "cross_attn.k", "cross_attn.v", "cross_attn.o",
                       "cross_attn.k_img", "cross_attn.v_img", "ffn.0", "ffn.2"}

-- base names ("blocks.3.ffn.0") of the adaptable linears of m, filtered by targets (a list of Lua patterns
-- matched against the base name; a plain suffix such as "self_attn.q" works as one)
local function target_linears(m, targets)
  local params = m:parameters()
  local out = {}
  for i = 0, m.config.num_layers - 1 do
    for _, l in ipairs(BLOCK_LINEARS) do
      local base = string.format("blocks.%d.%s", i, l)
      if params[base .. ".weight"] then
        local keep = targets == nil
        for _, pat in ipairs(targets or {}) do
          if base:find(pat) then keep = true; break end
        end
        if keep then out[#out + 1] = base end
      end
    end
  end
  return out
end

-- a PEFT key -> (base linear name, "A"|"B") or nil; accepts get_peft_model_state_dict's names
-- ("base_model.model.blocks.0.self_attn.q.lora_A.weight"), the adapter-named form (".lora_A.default.weight")
-- and sfwb's own names without the PEFT prefix
local function parse_key(k)
  k = k:gsub("_fsdp_wrapped_module%.", ""):gsub("_checkpoint_wrapped_module%.", ""):gsub("_orig_mod%.", "")
  if k:sub(1, #PEFT_PREFIX) == PEFT_PREFIX then k = k:sub(#PEFT_PREFIX + 1) end
  if k:sub(1, 6) == "model." then k = k:sub(7) end
  local base, ab = k:match("^(.-)%.lora_([AB])%.weight$")
  if not base then base, ab = k:match("^(.-)%.lora_([AB])%.[%w_]+%.weight$") end
  return base, ab
end

-- the adapters {base = {A=, B=}} of a checkpoint table or file
local function read_adapters(src, key, where)
  local sd = src
  if type(src) == "string" then sd = sfwb.load(src) end
  if type(sd) ~= "table" then error("load_lora: expected a path or a {name = tensor} table", 3) end
  local prefix = key and (key .. ".") or nil
  local sub = {}
  local found = false
  if prefix then
    for k, v in pairs(sd) do
      if k:sub(1, #prefix) == prefix then sub[k:sub(#prefix + 1)] = v; found = true end
    end
  end
  if not found then sub = sd end   -- a raw PEFT state dict (LongLive accepts both)
  local ad, n = {}, 0
  for k, v in pairs(sub) do
    local base, ab = parse_key(k)
    if base then
      ad[base] = ad[base] or {}
      ad[base][ab] = v
      n = n + 1
    end
  end
  if n == 0 then
    error(string.format("load_lora: %s holds no LoRA weights (no key %s, no *.lora_A.weight / *.lora_B.weight)",
                        where, prefix and ("'" .. key .. "'") or ""), 3)
  end
  return ad
end

local function dtype_device(params)
  local W = params["blocks.0.self_attn.q.weight"]
  return W:dtype(), W:device()
end

local function delta(A, B, scale)
  -- PEFT's get_delta_weight: B @ A * scaling, in f32 for low-precision weights on the CPU
  return sfwb.matmul(B:float(), A:float()) * scale
end

-- m:load_lora(path_or_table, {rank=, alpha=, dropout=, merge=true, key="generator_lora"})
function M.load_lora(m, src, o)
  o = o or {}
  local key = o.key
  if key == nil then key = "generator_lora" end
  local where = type(src) == "string" and src or "the table"
  local ad = read_adapters(src, key, where)
  local params = m:parameters()
  local rank
  local names = {}
  for base, ab in pairs(ad) do
    if not ab.A or not ab.B then
      error(string.format("load_lora: %s: %s has lora_%s but not lora_%s", where, base, ab.A and "A" or "B", ab.A and "B" or "A"), 2)
    end
    local W = params[base .. ".weight"]
    if not W then error(string.format("load_lora: %s: no linear %s.weight in the model for its adapter", where, base), 2) end
    local r = ab.A:size(1)
    if ab.A:dim() ~= 2 or ab.B:dim() ~= 2 or ab.A:size(2) ~= W:size(2) or ab.B:size(1) ~= W:size(1) or ab.B:size(2) ~= r then
      error(string.format("load_lora: %s: %s adapters A %s, B %s do not fit the weight %s", where, base,
                          table.concat(ab.A:shape(), "x"), table.concat(ab.B:shape(), "x"), table.concat(W:shape(), "x")), 2)
    end
    if rank and r ~= rank then error(string.format("load_lora: %s: mixed ranks %d and %d", where, rank, r), 2) end
    rank = r
    names[#names + 1] = base
  end
  table.sort(names)
  if o.rank and o.rank ~= rank then
    error(string.format("load_lora: rank=%d but %s holds rank-%d adapters", o.rank, where, rank), 2)
  end
  local alpha = o.alpha or rank         -- LongLive: lora_alpha = alpha or rank
  local scale = alpha / rank            -- PEFT: scaling = lora_alpha / r
  local merge = o.merge
  if merge == nil then merge = true end
  local dt, dev = dtype_device(params)
  if merge then
    for _, base in ipairs(names) do
      local W = params[base .. ".weight"]
      local merged = (W:float() + delta(ad[base].A:to(dev), ad[base].B:to(dev), scale)):to(dt)
      sfwb.no_grad(function() W:copy_(merged) end)
    end
  else
    local r0, s0 = m:_lora_config()
    if r0 > 0 and (r0 ~= rank or math.abs(s0 - scale) > 1e-12) then
      error(string.format("load_lora: the model already carries rank-%d adapters (scale %g); merge_lora() them first", r0, s0), 2)
    end
    for _, base in ipairs(names) do
      m:_set_param(base .. ".lora_A.weight", ad[base].A:to(dev):to(dt):contiguous():clone())
      m:_set_param(base .. ".lora_B.weight", ad[base].B:to(dev):to(dt):contiguous():clone())
    end
    m:_lora_config{rank = rank, scale = scale, dropout = o.dropout or 0}
  end
  return m, {rank = rank, alpha = alpha, scale = scale, layers = #names, merged = merge}
end

-- m:lora{rank=16, alpha=rank, dropout=0, targets=nil}: fresh adapters as PEFT initialises them (A kaiming-uniform
-- with a = sqrt(5), i.e. U(-1/sqrt(in), 1/sqrt(in)); B zeros), base weights frozen, adapters trainable
function M.lora(m, o)
  o = o or {}
  local rank = o.rank or 16
  if math.type(rank) ~= "integer" or rank < 1 then error("lora: rank must be a positive integer", 2) end
  local alpha = o.alpha or rank
  local dropout = o.dropout or 0
  if dropout ~= 0 then
    error("lora: dropout > 0 is not supported (sfwb has no dropout op; LongLive's configs use 0.0)", 2)
  end
  local r0 = m:_lora_config()
  if r0 > 0 then error("lora: the model already carries adapters; merge_lora() them first", 2) end
  local targets = o.targets
  if type(targets) == "string" then targets = {targets} end
  local bases = target_linears(m, targets)
  if #bases == 0 then error("lora: targets match no linear layer of the attention blocks", 2) end
  local params = m:parameters()
  local dt, dev = dtype_device(params)
  m:requires_grad_(false)
  for _, base in ipairs(bases) do
    local W = params[base .. ".weight"]
    local fin = W:size(2)
    local bound = 1 / math.sqrt(fin)
    local A = (sfwb.rand({rank, fin}) * (2 * bound) - bound):to(dev):to(dt):contiguous()
    local B = sfwb.zeros({W:size(1), rank}, {dtype = dt, device = dev})
    A:requires_grad_(true)
    B:requires_grad_(true)
    m:_set_param(base .. ".lora_A.weight", A)
    m:_set_param(base .. ".lora_B.weight", B)
  end
  m:_lora_config{rank = rank, scale = alpha / rank, dropout = dropout}
  return m
end

-- the adapter tensors {sfwb name = tensor}
function M.lora_parameters(m)
  local out = {}
  for k, v in pairs(m:parameters()) do
    if k:find(".lora_", 1, true) then out[k] = v end
  end
  return out
end

-- {PEFT name = tensor}: get_peft_model_state_dict's names ("base_model.model.<linear>.lora_A.weight")
function M.lora_state_dict(m)
  local out = {}
  for k, v in pairs(M.lora_parameters(m)) do out[PEFT_PREFIX .. k] = v:detach() end
  return out
end

-- m:save_lora(path, {key="generator_lora", extra={...}}): LongLive's checkpoint layout {generator_lora = {...}}
function M.save_lora(m, path, o)
  o = o or {}
  local key = o.key
  if key == nil then key = "generator_lora" end
  local sd = M.lora_state_dict(m)
  if next(sd) == nil then error("save_lora: the model carries no adapters", 2) end
  local tbl = {}
  for k, v in pairs(o.extra or {}) do tbl[k] = v end
  if key then tbl[key] = sd else tbl = sd end
  sfwb.save(path, tbl)
  return path
end

-- m:merge_lora(): W += scale * B @ A for every adapter, then the adapters are dropped
function M.merge_lora(m)
  local rank, scale = m:_lora_config()
  if rank == 0 then return m end
  local params = m:parameters()
  for k, A in pairs(params) do
    local base = k:match("^(.-)%.lora_A%.weight$")
    if base then
      local B = params[base .. ".lora_B.weight"]
      local W = params[base .. ".weight"]
      local merged = (W:detach():float() + delta(A:detach(), B:detach(), scale)):to(W:dtype())
      sfwb.no_grad(function() W:copy_(merged) end)
    end
  end
  m:_drop_params(".lora_")
  m:_lora_config{rank = 0, scale = 0, dropout = 0}
  return m
end

return M
