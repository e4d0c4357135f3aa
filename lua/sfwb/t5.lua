-- sfwb/t5.lua — the umT5-XXL text encoder as Self-Forcing's WanTextEncoder: tokenizer (512 tokens,
-- whitespace cleaning), the C encoder (sfwb._t5), padded rows zeroed, and a per-prompt embedding cache.
local sfwb = require "sfwb"

local M = {}
local T5 = {}
T5.__index = T5

-- wrapper prefixes that checkpoints sometimes carry (FSDP, torch.compile, DataParallel)
local PREFIXES = {"_fsdp_wrapped_module.", "_orig_mod.", "module.", "model."}

local function strip_prefixes(sd)
  local out = {}
  for k, v in pairs(sd) do
    local name, changed = k, true
    while changed do
      changed = false
      for _, p in ipairs(PREFIXES) do
        if name:sub(1, #p) == p then name, changed = name:sub(#p + 1), true end
      end
      name = name:gsub("%._fsdp_wrapped_module%.", ".")
    end
    out[name] = v
  end
  return out
end
M._strip_prefixes = strip_prefixes

-- sfwb.t5.load(pth_or_state_dict, {tokenizer=dir_or_tokenizer, device="cpu", text_len=512, cache_size=64})
-- Weights stay in their file dtype on the cpu (mmap views) and are converted to f32 per matrix; compute is
-- f32. One forward (src/models/t5_forward.c, the backend's tensor ops) runs on every device: device="cpu"
-- (default) lets the encoder sit on the cpu beside a DiT on a GPU; on another device (cuda:N, emu:N) the
-- weights move one matrix at a time. dtype="f32" (default, Self-Forcing's WanTextEncoder as built), "bf16"
-- (the reference after its pipeline's .to(bfloat16), upstream Wan's t5_dtype) or "f16" (with T5's
-- fp16_clamp): activations rounded at every op output as the reference's CUDA kernels do, sums in f32; every
-- dtype on every device. t5.dtype holds it; t5:set_dtype(d) switches (and clears the embedding cache).
function M.load(src, opts)
  opts = opts or {}
  local sd = type(src) == "table" and src or sfwb.load(src)
  sd = strip_prefixes(sd)
  local core = sfwb._t5.new(sd)
  if opts.dtype then core:set_dtype(opts.dtype) end
  local self = setmetatable({
    core = core,
    config = core:config(),
    device = opts.device or "cpu",
    dtype = core:dtype(),
    text_len = opts.text_len or 512,
    cache_size = opts.cache_size or 64,
    _cache = {},
    _order = {},
  }, T5)
  if opts.tokenizer then
    if type(opts.tokenizer) == "string" then
      self.tokenizer = sfwb.tokenizer.load(opts.tokenizer, {seq_len = self.text_len})
    else
      self.tokenizer = opts.tokenizer
    end
  end
  return self
end

local function to_device(self, t)
  if self.device ~= "cpu" and t:device() ~= self.device then return t:to(self.device) end
  return t
end

-- raw encoder output [B, L, dim] (no zeroing), as T5Encoder(ids, mask), on the model's device
function T5:encode_ids(ids, mask)
  if self.device ~= "cpu" then return self.core:encode_ids_on(ids, mask, self.device) end
  return self.core:encode_ids(ids, mask)
end

-- the layer stack alone (benchmarks, probing): x [B, L, dim] -> [B, L, dim] on the model's device
function T5:run_blocks(x, mask, first, count)
  return self.core:run_blocks(to_device(self, x), mask, first, count)
end

function T5:set_dtype(dtype)
  self.core:set_dtype(dtype)
  self.dtype = self.core:dtype()
  self:clear_cache()
  return self
end

function T5:clear_cache()
  self._cache, self._order = {}, {}
end

function T5:_remember(prompt, row)
  if self.cache_size <= 0 then return end
  if not self._cache[prompt] then
    self._order[#self._order + 1] = prompt
    if #self._order > self.cache_size then
      local old = table.remove(self._order, 1)
      self._cache[old] = nil
    end
  end
  self._cache[prompt] = row
end

-- t5:encode({"a prompt", ...}) -> {prompt_embeds = f32 [B, text_len, dim]}: rows at and after each
-- prompt's token count (text + EOS) are zero, as Self-Forcing's WanTextEncoder.forward
function T5:encode(prompts)
  if type(prompts) == "string" then prompts = {prompts} end
  assert(type(prompts) == "table" and #prompts > 0, "t5:encode expects a list of prompts")
  if not self.tokenizer then error("t5:encode needs a tokenizer: sfwb.t5.load(path, {tokenizer=dir})", 2) end
  local rows, missing = {}, {}
  for i, p in ipairs(prompts) do
    if type(p) ~= "string" then error("t5:encode: prompt " .. i .. " is not a string", 2) end
    if self._cache[p] then rows[i] = self._cache[p] else missing[#missing + 1] = i end
  end
  if #missing > 0 then
    local texts = {}
    for k, i in ipairs(missing) do texts[k] = prompts[i] end
    local ids, mask = self.tokenizer:encode(texts, {max_length = self.text_len})
    local out = self:encode_ids(ids, mask)
    local L = out:size(2)
    local lens = mask:sum(2):totable()
    for k, i in ipairs(missing) do
      local row = out:select(1, k):clone()
      local n = math.floor(lens[k])
      if n < L then row:narrow(1, n + 1, L - n):fill_(0) end
      self:_remember(prompts[i], row)
      rows[i] = row
    end
  end
  return {prompt_embeds = to_device(self, sfwb.stack(rows, 1))}
end

M.T5 = T5
return M
