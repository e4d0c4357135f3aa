-- sfwb/vae.lua — the Wan2.1 VAE as Self-Forcing's WanVAEWrapper: encode/decode in [B, F, C, H, W]
-- layouts with the latent mean/std normalisation, streaming decode_chunk (cached_decode) and the
-- I2V conditioning tensor y of Self-Forcing-Plus/LongLive (run_vae_encoder).
local sfwb = require "sfwb"

local M = {}
local VAE = {}
VAE.__index = VAE

-- sfwb.vae.load(pth_or_state_dict, {mean={..}, std={..}, device="cpu", dtype="f32"}) — mean/std default to
-- Wan's 16 constants (zeros/ones for other z_dim). The fused CPU path on "cpu" (results come back on the
-- input's device); on any other device (cuda:N, emu:N) the tensor-op forward of sfwb.vae_device with the
-- backend's convolution kernel. dtype: "f32" (upstream Wan) or "bf16" (Self-Forcing's inference: weights
-- and activations rounded to bf16 at every op output, sums in f32; on the cpu and on devices); vae.dtype holds it.
function M.load(src, opts)
  opts = opts or {}
  local sd = type(src) == "table" and src or sfwb.load(src)
  sd = sfwb.t5._strip_prefixes(sd)
  local dtype = opts.dtype or "f32"
  local core = sfwb._vae.new(sd, {mean = opts.mean, std = opts.std, dtype = dtype})
  local self = setmetatable({core = core, config = core:config(), device = opts.device or "cpu", dtype = core:dtype()}, VAE)
  if self.device ~= "cpu" then
    self.dev = require("sfwb.vae_device").new(sd, self.config, self.device, self.dtype)
    self._streams = {}
  end
  return self
end

local function back(t, like)
  if like:device() ~= "cpu" then return t:to(like:device()) end
  return t
end

-- video [B, 3, T, H, W] in [-1, 1] -> latents [B, 1 + (T-1)//4, z, H/8, W/8] (normalised posterior mean)
function VAE:encode(video)
  if self.dev then return self.dev:encode(video) end
  return back(self.core:encode(video), video)
end

-- latents [B, F, z, h, w] -> video [B, 1 + 4(F-1), 3, 8h, 8w] clamped to [-1, 1]; fresh caches
function VAE:decode(latents)
  if self.dev then return self.dev:decode(latents) end
  return back(self.core:decode(latents), latents)
end

-- streaming decode: caches persist between calls (per batch row) until vae:reset(); the first chunk
-- after a reset gives 1 + 4(F-1) frames, later chunks 4F frames, as cached_decode
function VAE:decode_chunk(latents)
  if self.dev then return self.dev:decode(latents, self._streams) end
  return back(self.core:decode_chunk(latents), latents)
end

-- switch the compute dtype ("f32" | "bf16", cpu path); streaming caches are cleared
function VAE:set_dtype(dtype)
  if self.dev and dtype ~= "f32" and dtype ~= "bf16" then error("vae:set_dtype: '" .. dtype .. "' on " .. self.device .. ": f32 or bf16", 2) end
  if self.dev and dtype ~= self.dtype then
    -- the device copy of f32 weights can be rounded to bf16, not back: bf16 -> f32 needs the file again
    if dtype ~= "bf16" then error("vae:set_dtype: " .. self.device .. " holds bf16 weights now; load again with {dtype='f32'}", 2) end
    self.dev.dtype, self.dev.r = "bf16", function(x) return x:bf16():float() end
    for k, v in pairs(self.dev.sd) do self.dev.sd[k] = self.dev.r(v) end
  end
  self.core:set_dtype(dtype)
  self.core:reset()
  self.dtype = self.core:dtype()
  return self
end

function VAE:reset()
  self.core:reset()
  if self.dev then self._streams = {} end
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
  local lat = self.dev and self.dev:encode(video):cpu() or self.core:encode(video)   -- [B, F, z, h, w]
  local F, h, w = lat:size(2), lat:size(4), lat:size(5)
  local mask = sfwb.zeros({B, 4, F, h, w})
  mask:narrow(3, 1, 1):fill_(1)
  local y = sfwb.cat({mask, lat:permute({1, 3, 2, 4, 5})}, 2)
  return back(y, img)
end

M.VAE = VAE
return M
