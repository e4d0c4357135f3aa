-- sfwb/train/plan.lua — sfwb.train.plan(cfg, {gpus=, gpu_memory_gb=}): the per-rank memory of a DMD-style
-- training config (Self-Forcing, Self-Forcing-Plus, LongLive), so a user knows before launching whether a
-- job fits. Everything is counted from the model shapes; the formulas (docs/training.md, "Memory plan"):
--   parameters P (Wan2.1 DiT, t2v; i2v adds the image cross-attention) from dim d, ffn f, layers n;
--   trained nets (generator, critic): weights w*P, gradients w*P, AdamW moments 8*P and, when the weights
--     are 16-bit (mixed_precision), f32 master weights 4*P — w = 2 bytes with mixed_precision, else 4;
--   frozen nets (teacher, umT5-XXL text encoder): w*P;
--   LoRA (LongLive's `adapter: {type: lora, rank: r}`): every Linear of every block gets r*(in+out)
--     trained parameters (8 of d->d in the two attentions, d->f and f->d in the FFN: n*(16*r*d + 2*r*(d+f)))
--     in the adapter dtype, with gradients and AdamW state; the base weights are frozen (w*P);
--   sharding_strategy full/hybrid over N ranks: all of the above / N, plus the gathered parameters: the
--     whole model while it runs in sfwb (gather = "model", this implementation) or two blocks (one
--     running, one prefetched) in torch FSDP (gather = "block");
--   activations of a forward with gradient over L = B*F*(H/2)*(W/2) tokens (F = the frames that get
--     gradient), per block, in elements: 19*L*d (norms and their statistics, modulated inputs, q/k/v after
--     norm and RoPE, attention and projection outputs, cross-attention, FFN input/output, residuals)
--     + 2*L*f (FFN hidden before/after GELU), at `a` bytes (2 with mixed_precision) — for n blocks (the
--     coefficients are what sfwb's autograd keeps, measured: tests/lua/test_train_plan.lua); with gradient_checkpointing: the n block inputs L*d plus
--     one block's recomputation. The largest graph is one such forward (the generator's grad-enabled
--     rollout steps together cover F frames once; the critic's loss is one forward over F frames).
local M = {}

M.SHAPES = {
  ["1.3B"] = {dim = 1536, ffn_dim = 8960, num_heads = 12, num_layers = 30},
  ["14B"] = {dim = 5120, ffn_dim = 13824, num_heads = 40, num_layers = 40},
}
local COMMON = {in_dim = 16, out_dim = 16, text_dim = 4096, text_len = 512, freq_dim = 256}
M.T5_XXL_ENCODER_PARAMS = 5680910336 -- umT5-XXL encoder (Wan's models_t5_umt5-xxl-enc-bf16.pth)

local get = require("sfwb.train.base").get -- a config value, the default for nil or YAML null

-- parameters of a Wan2.1 DiT (t2v; i2v: image cross-attention and CLIP projection), counted from the shapes
function M.wan_params(s, i2v)
  local d, f = s.dim, s.ffn_dim
  local c = {}
  for k, v in pairs(COMMON) do c[k] = v end
  for k, v in pairs(s) do c[k] = v end
  local lin = function(i, o) return i * o + o end
  local attn = 4 * lin(d, d) + 2 * d                     -- q, k, v, o; RMSNorm q and k
  local block = attn                                     -- self-attention
    + attn                                               -- cross-attention (text)
    + 2 * d                                              -- norm3 (cross_attn_norm, affine)
    + lin(d, f) + lin(f, d)                              -- FFN
    + 6 * d                                              -- modulation
  if i2v then block = block + 2 * lin(d, d) + d end      -- k_img, v_img, norm_k_img
  local p = c.num_layers * block
    + c.in_dim * 4 * d + d                               -- patch embedding (1, 2, 2)
    + lin(c.text_dim, d) + lin(d, d)                     -- text embedding
    + lin(c.freq_dim, d) + lin(d, d)                     -- time embedding
    + lin(d, 6 * d)                                      -- time projection
    + lin(d, c.out_dim * 4) + 2 * d                      -- head + head modulation
  if i2v then p = p + 2 * 1280 + lin(1280, 1280) + lin(1280, d) + 2 * d end -- img_emb (CLIP 1280)
  return p
end

-- elements one block keeps for backward over L tokens (see the header)
function M.block_activation_elems(L, d, f) return 19 * L * d + 2 * L * f end

local function size_of(name)
  name = tostring(name or "")
  if name:find("14B") then return "14B" end
  return "1.3B"
end

local GB = 1024 ^ 3

-- LongLive's LoRA adapter on a trained net: {rank=, bytes=} or nil
local function lora_of(cfg, role)
  local a = get(cfg, "adapter", nil)
  if type(a) ~= "table" or (a.type or "lora") ~= "lora" then return nil end
  if role == "critic" and a.apply_to_critic == false then return nil end
  local dt = tostring(a.dtype or "bfloat16")
  return {rank = a.rank or 16, bytes = (dt:find("32") and 4) or 2}
end

-- plan(cfg, {gpus = N, gpu_memory_gb = 80, gather = "model"|"block", text_encoder = true})
function M.plan(cfg, o)
  if type(cfg) ~= "table" then error("train.plan: expects a config table", 2) end
  o = o or {}
  local N = o.gpus or 1
  if math.type(N) ~= "integer" or N < 1 then error("train.plan: gpus must be an integer >= 1, got " .. tostring(o.gpus), 2) end
  local budget = o.gpu_memory_gb or 80
  local mixed = get(cfg, "mixed_precision", false)
  local w = mixed and 2 or 4
  local i2v = get(cfg, "i2v", false)
  local strategy = get(cfg, "sharding_strategy", nil)
  local sharded = N > 1 and strategy ~= nil and strategy ~= "no_shard"
  local gather = o.gather or "model"
  local nets = {
    {role = "generator", name = get(cfg, "generator_name", "Wan2.1-T2V-1.3B"), trained = true},
    {role = "critic", name = get(cfg, "fake_name", "Wan2.1-T2V-1.3B"), trained = true},
    {role = "teacher", name = get(cfg, "real_name", "Wan2.1-T2V-1.3B"), trained = false},
  }
  local out = {gpus = N, gpu_memory_gb = budget, sharded = sharded, gather = gather, nets = {},
               weights = 0, grads = 0, optimizer = 0, gathered = 0}
  local div = sharded and N or 1
  local biggest_gathered = 0
  for _, n in ipairs(nets) do
    local size = size_of(n.name)
    local s = M.SHAPES[size]
    local P = M.wan_params(s, i2v)
    local e = {role = n.role, model = size, params = P, weights = w * P / div}
    local lora = n.trained and lora_of(cfg, n.role)
    if lora then
      local r, d, f = lora.rank, s.dim, s.ffn_dim
      local Q = s.num_layers * (16 * r * d + 2 * r * (d + f))
      local lw = lora.bytes
      e.lora_params = Q
      e.weights = e.weights + lw * Q / div
      e.grads = lw * Q / div
      e.optimizer = (8 + (lw == 2 and 4 or 0)) * Q / div
    elseif n.trained then
      e.grads = w * P / div
      e.optimizer = (8 + (w == 2 and 4 or 0)) * P / div
    else
      e.grads, e.optimizer = 0, 0
    end
    out.nets[#out.nets + 1] = e
    out.weights = out.weights + e.weights
    out.grads = out.grads + e.grads
    out.optimizer = out.optimizer + e.optimizer
    if sharded then
      local g = gather == "block" and 2 * w * (P / s.num_layers) or w * P
      if gather == "block" then biggest_gathered = math.max(biggest_gathered, g)
      else out.gathered = out.gathered + g end -- sfwb gathers each model for the whole step
    end
  end
  if gather == "block" then out.gathered = biggest_gathered end
  if o.text_encoder ~= false then
    out.text_encoder = w * M.T5_XXL_ENCODER_PARAMS / div
    out.weights = out.weights + out.text_encoder
  end
  -- activations: one forward with gradient over the frames that get gradient
  local shape = get(cfg, "image_or_video_shape", {1, 21, 16, 60, 104})
  local F = math.min(shape[2], get(cfg, "num_training_frames", 21), get(cfg, "slice_last_frames", 21))
  local L = shape[1] * F * (shape[4] // 2) * (shape[5] // 2)
  local a = mixed and 2 or 4
  local act, act_ck = 0, 0
  for _, n in ipairs(out.nets) do
    if n.role ~= "teacher" then
      local s = M.SHAPES[n.model]
      local per_block = M.block_activation_elems(L, s.dim, s.ffn_dim) * a
      act = math.max(act, s.num_layers * per_block)
      act_ck = math.max(act_ck, s.num_layers * L * s.dim * a + per_block)
    end
  end
  out.tokens, out.frames = L, F
  out.activations, out.activations_checkpointed = act, act_ck
  local states = out.weights + out.grads + out.optimizer + out.gathered
  out.total = states + act
  out.total_checkpointed = states + act_ck
  local ck = get(cfg, "gradient_checkpointing", false)
  out.gradient_checkpointing = ck
  out.need = ck and out.total_checkpointed or out.total
  out.fits = out.need <= budget * GB
  return setmetatable(out, {__index = M.Plan})
end

M.Plan = {}
-- a readable report in GB
function M.Plan.report(p)
  local f = function(b) return string.format("%.1f", b / GB) end
  local lines = {string.format("per-rank memory on %d GPU(s) of %g GB (%s%s):", p.gpus, p.gpu_memory_gb,
    p.sharded and "sharded" or "replicated", p.sharded and (", parameters gathered per " .. p.gather) or "")}
  for _, n in ipairs(p.nets) do
    lines[#lines + 1] = string.format("  %-9s Wan %-4s %5.2fB params%s: weights %s, grads %s, optimizer %s GB", n.role,
      n.model, n.params / 1e9, n.lora_params and string.format(" (LoRA %.0fM trained)", n.lora_params / 1e6) or "",
      f(n.weights), f(n.grads), f(n.optimizer))
  end
  if p.text_encoder then lines[#lines + 1] = "  text encoder umT5-XXL: " .. f(p.text_encoder) .. " GB" end
  if p.sharded then lines[#lines + 1] = "  gathered parameters: " .. f(p.gathered) .. " GB" end
  lines[#lines + 1] = string.format("  activations (%d tokens): %s GB, with checkpointing %s GB", p.tokens,
    f(p.activations), f(p.activations_checkpointed))
  lines[#lines + 1] = string.format("  total: %s GB (%s GB with checkpointing) -> %s", f(p.total),
    f(p.total_checkpointed), p.fits and "fits" or "does NOT fit")
  return table.concat(lines, "\n")
end

return M
