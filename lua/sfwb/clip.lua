-- sfwb/clip.lua — the I2V image encoder: the visual tower of open-clip xlm-roberta-large ViT-H/14 as Wan
-- uses it (bicubic resize to 224, CLIP normalisation, all blocks but the last) -> [B, 257, 1280].
local sfwb = require "sfwb"

local M = {}
local CLIP = {}
CLIP.__index = CLIP

-- sfwb.clip.load(pth_or_state_dict, {num_heads=16, num_layers=, device="cpu"}) — "visual.*" keys; the text
-- tower and log_scale in the official file are ignored. One forward (src/models/clip_forward.c, the
-- backend's tensor ops) on every device (cpu, cuda:N, emu:N). dtype="f32" (default) or "f16" (Wan's
-- clip_dtype: fp16 weights under fp16 autocast, LayerNorms in f32; also "bf16"): op outputs rounded as the
-- reference's CUDA kernels; every dtype on every device; clip.dtype holds it, clip:set_dtype(d) switches.
function M.load(src, opts)
  opts = opts or {}
  local sd = type(src) == "table" and src or sfwb.load(src)
  sd = sfwb.t5._strip_prefixes(sd)
  local core = sfwb._clip.new(sd, {num_heads = opts.num_heads or 16, num_layers = opts.num_layers})
  if opts.dtype then core:set_dtype(opts.dtype) end
  local self = setmetatable({core = core, config = core:config(), device = opts.device or "cpu", dtype = core:dtype()}, CLIP)
  return self
end

function CLIP:set_dtype(dtype)
  self.core:set_dtype(dtype)
  self.dtype = self.core:dtype()
  return self
end

-- img [B, 3, H, W] (or [3, H, W]) in [-1, 1] at any resolution -> f32 [B, 1 + grid^2, dim]
function CLIP:encode_image(img)
  if self.device ~= "cpu" then return self.core:encode_image_on(img, self.device) end
  return self.core:encode_image(img)
end

M.resize_bicubic = function(img, h, w) return sfwb._clip.resize(img, h, w) end
M.CLIP = CLIP
return M
