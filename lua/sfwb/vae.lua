-- sfwb/vae.lua — the Wan2.1 VAE as Self-Forcing's WanVAEWrapper: encode/decode in [B, F, C, H, W]
-- layouts with the latent mean/std normalisation, streaming decode_chunk (cached_decode) and the
-- I2V conditioning tensor y of Self-Forcing-Plus/LongLive (run_vae_encoder).
local sfwb = require "sfwb"

local M = {}
local VAE = {}
VAE.__index = VAE

-- sfwb.vae.load(pth_or_state_dict, {mean={..}, std={..}, device="cpu", dtype="f32"}) — mean/std default to
-- Wan's 16 constants (zeros/ones for other z_dim). One C forward (src/models/vae_*.c) on every device: the
-- weights go to `device` once; on "cpu" results come back on the input's device, elsewhere they stay on the
-- VAE's device. dtype: "f32" (upstream Wan) or "bf16" (Self-Forcing's inference: weights and activations
-- rounded to bf16 at every op output, sums in f32); vae.dtype holds it, vae:set_dtype switches it either way.
function M.load(src, opts)
  opts = opts or {}
  local sd = type(src) == "table" and src or sfwb.load(src)
  sd = sfwb.t5._strip_prefixes(sd)
  local device = opts.device or "cpu"
  local core = sfwb._vae.new(sd, {mean = opts.mean, std = opts.std, dtype = opts.dtype or "f32", device = device})
  return setmetatable({core = core, config = core:config(), device = device, dtype = core:dtype()}, VAE)
end

-- a cpu VAE hands results back on the input's device
function VAE:_back(t, like)
  if self.device == "cpu" and like:device() ~= "cpu" then return t:to(like:device()) end
  return t
end

-- video [B, 3, T, H, W] in [-1, 1] -> latents [B, 1 + (T-1)//4, z, H/8, W/8] (normalised posterior mean)
function VAE:encode(video)
  return self:_back(self.core:encode(video), video)
end

-- latents [B, F, z, h, w] -> video [B, 1 + 4(F-1), 3, 8h, 8w] clamped to [-1, 1]; fresh caches
function VAE:decode(latents)
  return self:_back(self.core:decode(latents), latents)
end

-- streaming decode: caches persist between calls (per batch row) until vae:reset(); the first chunk
-- after a reset gives 1 + 4(F-1) frames, later chunks 4F frames, as cached_decode
function VAE:decode_chunk(latents)
  return self:_back(self.core:decode_chunk(latents), latents)
end

-- switch the compute dtype ("f32" | "bf16", any device; the f32 weights are kept); streaming caches are cleared
function VAE:set_dtype(dtype)
  self.core:set_dtype(dtype)
  self.core:reset()
  self.dtype = self.core:dtype()
  return self
end

function VAE:reset()
  self.core:reset()
end
VAE.clear_cache = VAE.reset

-- y for Wan I2V: img [3, H, W] or [B, 3, H, W] in [-1, 1], num_frames pixel frames (1 + 4k, e.g. 81)
-- -> [B, 4 + z, F, H/8, W/8] (the DiT's [B, C, F, H, W] layout): channels 0..3 are 1 on latent frame 0
-- and 0 elsewhere; then the latents of the image followed by num_frames - 1 zero frames
function VAE:i2v_condition(img, num_frames)
  num_frames = num_frames or 81
  if (num_frames - 1) % 4 ~= 0 then
    error("vae:i2v_condition: num_frames must be 1 + 4k (got " .. num_frames .. ")", 2)
  end
  if img:dim() == 3 then img = img:unsqueeze(1) end
  if img:dim() ~= 4 or img:size(2) ~= 3 then error("vae:i2v_condition expects an image [3, H, W] or [B, 3, H, W]", 2) end
  local B, H, W = img:size(1), img:size(3), img:size(4)
  local video = sfwb.zeros({B, 3, num_frames, H, W})
  video:select(3, 1):copy_(img:float():cpu())
  local lat = self.core:encode(video):cpu()   -- [B, F, z, h, w]
  local F, h, w = lat:size(2), lat:size(4), lat:size(5)
  local mask = sfwb.zeros({B, 4, F, h, w})
  mask:narrow(3, 1, 1):fill_(1)
  local y = sfwb.cat({mask, lat:permute({1, 3, 2, 4, 5})}, 2)
  if img:device() ~= "cpu" then y = y:to(img:device()) end
  return y
end

M.VAE = VAE
return M
