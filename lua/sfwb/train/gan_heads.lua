-- sfwb/train/gan_heads.lua — the discriminator of Self-Forcing's GAN on the critic (fake score) network:
-- WanDiffusionWrapper.adding_cls_branch (utils/wan_wrapper.py) and WanModel._forward(classify_mode=True)
-- (wan/modules/model.py). Three RMS-normed register tokens, one GanAttentionBlock per register reading the
-- residual stream after a chosen block (the register is the query, the video tokens keys and values), the
-- three outputs (plus 10 * the time embedding with concat_time_embeddings) through LayerNorm -> Linear ->
-- SiLU -> Linear into num_class logits.
--
-- The weights are parameters of the critic model itself, under the original's names (`_cls_pred_branch.*`,
-- `_register_tokens.*`, `_gan_ca_blocks.*`), so its state_dict / load_state_dict / parameters reach them and a
-- checkpoint's "critic" entry interchanges with the original's.
--
-- Fixes of the original, each the smallest (docs/training.md): its widths are hard-coded for Wan 1.3B (dim 1536,
-- ffn 8192, 12 heads, the branch's hidden width 1536); sfwb takes them from the critic's config (the same
-- numbers for 1.3B). Its feature blocks are hard-coded to 13, 21, 29 (the default here; `blocks` overrides it
-- for smaller networks).
local sfwb = require "sfwb"

local M = {}
M.NUM_REGISTERS = 3
M.FEATURE_BLOCKS = {13, 21, 29}

local function names(cfg, num_class, concat_time)
  local D, FF = cfg.dim, cfg.ffn_dim
  local In = D * M.NUM_REGISTERS + (concat_time and D or 0)
  local shapes = {
    {"_cls_pred_branch.0.weight", {In}, "one"}, {"_cls_pred_branch.0.bias", {In}, "zero"},
    {"_cls_pred_branch.1.weight", {D, In}, In}, {"_cls_pred_branch.1.bias", {D}, In},
    {"_cls_pred_branch.3.weight", {num_class, D}, D}, {"_cls_pred_branch.3.bias", {num_class}, D},
    {"_register_tokens.register_tokens", {M.NUM_REGISTERS, D}, "normal"},
    {"_register_tokens.rms_norm.weight", {D}, "one"},
  }
  for j = 0, M.NUM_REGISTERS - 1 do
    local b = "_gan_ca_blocks." .. j .. "."
    for _, l in ipairs({"q", "k", "v", "o"}) do
      shapes[#shapes + 1] = {b .. "cross_attn." .. l .. ".weight", {D, D}, D}
      shapes[#shapes + 1] = {b .. "cross_attn." .. l .. ".bias", {D}, D}
    end
    shapes[#shapes + 1] = {b .. "cross_attn.norm_q.weight", {D}, "one"}
    shapes[#shapes + 1] = {b .. "cross_attn.norm_k.weight", {D}, "one"}
    shapes[#shapes + 1] = {b .. "norm3.weight", {D}, "one"}
    shapes[#shapes + 1] = {b .. "norm3.bias", {D}, "zero"}
    shapes[#shapes + 1] = {b .. "ffn.0.weight", {FF, D}, D}
    shapes[#shapes + 1] = {b .. "ffn.0.bias", {FF}, D}
    shapes[#shapes + 1] = {b .. "ffn.2.weight", {D, FF}, FF}
    shapes[#shapes + 1] = {b .. "ffn.2.bias", {D}, FF}
  end
  return shapes
end

-- trainer/gan.py's test for its discriminator parameter group (lr * discriminator_lr_multiplier, the only
-- parameters trained during the discriminator warm-up): "_cls_pred_branch" or "_gan_ca_blocks" in the name.
-- The register tokens are not in it (they train with the critic body, at critic_lr), as in the original.
function M.is_head(name)
  return name:find("_cls_pred_branch", 1, true) ~= nil or name:find("_gan_ca_blocks", 1, true) ~= nil
end

-- every parameter the heads add (for the checkpoint layout: these keys sit beside "model.*")
function M.is_added(name)
  return M.is_head(name) or name:find("_register_tokens", 1, true) ~= nil
end

-- adds the heads to a (bidirectional) Wan critic; init as PyTorch's defaults (nn.Linear: U(+-1/sqrt(fan_in)) for
-- weight and bias; LayerNorm / RMSNorm ones and zeros; register tokens N(0, 0.02^2)). Existing heads are kept.
-- o: {num_class=, concat_time_embeddings=, blocks = {13, 21, 29}}; returns the heads' descriptor.
function M.add(critic, o)
  local cfg = critic.config
  local nc = o.num_class
  if math.type(nc) ~= "integer" or nc < 1 then
    error("gan: num_class must be an integer >= 1 (model/gan.py reads args.num_class), got " .. tostring(nc), 3)
  end
  local blocks = o.blocks or M.FEATURE_BLOCKS
  if #blocks ~= M.NUM_REGISTERS then
    error(string.format("gan: gan_feature_blocks must list %d block ids (one per register token), got %d",
                        M.NUM_REGISTERS, #blocks), 3)
  end
  for _, b in ipairs(blocks) do
    if math.type(b) ~= "integer" or b < 0 or b >= cfg.num_layers then
      error(string.format("gan: the discriminator reads the critic's blocks %s (model/gan.py hard-codes 13, 21, 29 " ..
        "for Wan 1.3B/14B) but the critic has blocks 0..%d; set gan_feature_blocks", table.concat(blocks, ", "),
        cfg.num_layers - 1), 3)
    end
  end
  local have = critic:parameters()
  local ref = have["patch_embedding.weight"]
  local opts = {dtype = ref:dtype(), device = ref:device()}
  for _, s in ipairs(names(cfg, nc, o.concat_time_embeddings)) do
    local name, shape, init = s[1], s[2], s[3]
    if not have[name] then
      local t
      if init == "one" then t = sfwb.ones(shape, opts)
      elseif init == "zero" then t = sfwb.zeros(shape, opts)
      elseif init == "normal" then t = (sfwb.randn(shape) * 0.02):to(opts)
      else
        local bound = 1 / math.sqrt(init)
        t = ((sfwb.rand(shape) * 2 - 1) * bound):to(opts)
      end
      critic:_set_param(name, t:contiguous())
    elseif #have[name]:shape() ~= #shape then
      error("gan: the critic's " .. name .. " has another shape than the heads need", 3)
    end
  end
  return {blocks = blocks, num_class = nc, concat_time_embeddings = o.concat_time_embeddings and true or false,
          dim = cfg.dim, heads = cfg.num_heads}
end

local function lin(P, x, name) return sfwb.linear(x, P[name .. ".weight"], P[name .. ".bias"]) end

-- GanAttentionBlock.forward(x, token): token + cross-attention of the register (query) over the norm3'd
-- video tokens (keys, values), then + FFN of its no-affine LayerNorm. x [B, L, D], token [B, 1, D] -> [B, 1, D]
local function gan_block(P, j, x, token, H)
  local b = "_gan_ca_blocks." .. j .. "."
  local B, L, D = x:size(1), x:size(2), x:size(3)
  local d = D // H
  local eps = 1e-6
  local n3 = sfwb.nn.layer_norm(x, P[b .. "norm3.weight"], P[b .. "norm3.bias"], eps)
  local q = sfwb.nn.rms_norm(lin(P, token, b .. "cross_attn.q"), P[b .. "cross_attn.norm_q.weight"], eps)
  local k = sfwb.nn.rms_norm(lin(P, n3, b .. "cross_attn.k"), P[b .. "cross_attn.norm_k.weight"], eps)
  local v = lin(P, n3, b .. "cross_attn.v")
  local a = sfwb.nn.attention(q:view({B, 1, H, d}), k:view({B, L, H, d}), v:view({B, L, H, d}))
  local t2 = token + lin(P, a:reshape({B, 1, D}), b .. "cross_attn.o")
  local h = lin(P, lin(P, sfwb.nn.layer_norm(t2, nil, nil, eps), b .. "ffn.0"):gelu("tanh"), b .. "ffn.2")
  return h + t2
end

-- the logits of the critic in classify mode: x [B, C, F, H, W] (the model's layout), t [B], ctx [B, L, D_text];
-- fo: extra forward options (checkpoint=). Returns logits [B, num_class] (f32) and the critic's flow output.
function M.logits(critic, heads, x, t, ctx, fo)
  local o = {features = heads.blocks}
  for k, v in pairs(fo or {}) do o[k] = v end
  local flow, feats, e = critic:forward(x, t, ctx, o)
  local P = critic:parameters()
  local B = x:size(1)
  local D = heads.dim
  local regs = sfwb.nn.rms_norm(P["_register_tokens.register_tokens"], P["_register_tokens.rms_norm.weight"], 1e-6)
  local outs = {}
  for j = 1, M.NUM_REGISTERS do
    local token = regs:narrow(1, j, 1):view({1, 1, D}):expand({B, 1, D}):contiguous()
    outs[j] = gan_block(P, j - 1, feats[j], token, heads.heads)
  end
  if heads.concat_time_embeddings then
    -- WanModel: cat([final_x, 10 * e[:, None, :]], dim=1) with e [B, D] (one timestep per sample)
    outs[#outs + 1] = (e:narrow(2, 1, 1) * 10):reshape({B, 1, D}):to(outs[1]:dtype())
  end
  local f = sfwb.cat(outs, 2):reshape({B, -1})
  local h = sfwb.nn.layer_norm(f, P["_cls_pred_branch.0.weight"], P["_cls_pred_branch.0.bias"], 1e-5)
  h = lin(P, lin(P, h, "_cls_pred_branch.1"):silu(), "_cls_pred_branch.3")
  return h:float(), flow
end

return M
