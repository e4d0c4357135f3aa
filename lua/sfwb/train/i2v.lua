-- sfwb/train/i2v.lua — Self-Forcing-Plus's I2V training (i2v: true): each LMDB row's `img` (480x832, [-1, 1])
-- goes through the CLIP image encoder into clip_fea and through the VAE into y (WanVAEWrapper.run_vae_encoder:
-- 4 mask channels, 1 on latent frame 0, then the latents of the image followed by zero frames), handed to every
-- model call of the score-distillation trainers; a causal generator also gets the first clean latent frame
-- (ode_latent[:, -1][:, :1]) as initial_latent, as trainer/distillation.py.
local sfwb = require "sfwb"
local S = require "sfwb.train.draws"

local M = {}

local CLIP_FILE = "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"

local function models_dir(cfg) return S.get(cfg, "wan_models_dir", os.getenv("SFWB_WAN_MODELS") or "wan_models") end

-- parts with the LMDB dataset the I2V path reads (the config's data_path) unless one was given
function M.parts(cfg, parts)
  parts = parts or {}
  if parts.dataset or not S.get(cfg, "data_path", nil) then return parts end
  local p = {}
  for k, v in pairs(parts) do p[k] = v end
  p.dataset = sfwb.data.lmdb(cfg.data_path)
  return p
end

-- the image encoder and VAE (given, or from the generator's model folder), and batch_args wrapped
function M.attach(tr, cfg, parts, who)
  parts = parts or {}
  local dir = models_dir(cfg) .. "/" .. S.get(cfg, "generator_name", "Wan2.1-T2V-1.3B")
  local function need(path, what)
    if not S.file_exists(path) then
      error(string.format("%s: i2v: true needs the %s at %s (or parts.%s)", who, what, path,
                          what == "CLIP image encoder" and "image_encoder" or "vae"), 3)
    end
    return path
  end
  tr.image_encoder = parts.image_encoder or sfwb.clip.load(need(dir .. "/" .. CLIP_FILE, "CLIP image encoder"))
  tr.vae = parts.vae or sfwb.vae.load(need(dir .. "/Wan2.1_VAE.pth", "VAE"))
  local shape = S.get(cfg, "image_or_video_shape", {1, 21, 16, 60, 104})
  tr.i2v_video_frames = 1 + 4 * (shape[2] - 1)   -- the pixel frames whose latents are shape[2] frames (81 -> 21)
  local base = tr.batch_args
  tr.batch_args = function(self, batch)
    local a = base(self, batch)
    if not batch.img then error(who .. ": i2v: true needs dataset rows with img (an LMDB written with images)", 2) end
    local img = batch.img
    if img:dim() == 3 then img = img:unsqueeze(1) end
    local dev = self.rollout_opts and self.rollout_opts.device or "cpu"
    sfwb.no_grad(function()
      a.cond.clip_fea = self.image_encoder:encode_image(img):to(dev)
      a.cond.y = self.vae:i2v_condition(img, self.i2v_video_frames):to(dev)
    end)
    if self.generator_type ~= "bidirectional" and batch.ode_latent then
      a.initial_latent = batch.ode_latent:select(2, batch.ode_latent:size(2)):narrow(2, 1, 1):contiguous():to(dev)
    end
    return a
  end
  tr.i2v = true
  return tr
end

return M
