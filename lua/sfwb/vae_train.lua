-- sfwb/vae_train.lua — a Wan VAE made of autograd ops, for training one (the toy world's tiny VAE):
-- the same state-dict keys and shapes as Wan2.1_VAE.pth (so sfwb.vae.load and the originals read what
-- it trains), and the same encode/decode values as sfwb.vae (tests/lua/test_vae_train.lua checks both).
--
--   local V = sfwb.vae_train.new(state_dict [, {mean=, std=}])   -- tensors become trainable leaves
--   V:parameters() -> {name = tensor}      V:state_dict() (detached copies)
--   mu = V:encode(video [B, 3, T, H, W] in [-1, 1])   -> normalised latents [B, 1 + (T-1)/4, z, h, w]
--   x  = V:decode(latents [B, F, z, h, w])            -> video [B, 1 + 4 (F-1), 3, H, W] (not clamped)
--
-- Whole sequences instead of chunks. Wan runs its encoder on chunks of 1, 4, 4, ... frames and its
-- decoder on one latent frame at a time, with per-conv caches; these equal whole-sequence operations:
--  * a causal 3-D conv with its 2-frame cache is a causal conv over the whole sequence (zeros in front);
--  * downsample3d keeps the first frame of the first chunk as is and then convolves (stride 2 in time,
--    3 taps, no padding) the previous chunk's last frame with the chunk: over the whole sequence that
--    is [x0, conv_stride2(x0 .. x_end)];
--  * upsample3d passes the first chunk through ("Rep") and from the second chunk on convolves the
--    frames after the first causally (the cache after the "Rep" chunk is zeros, so x0 never enters):
--    [x0, interleave(causal_conv(x1 .. x_end))], each output frame split into two (channel halves).
local sfwb = require "sfwb"

local M = {}

local conv3d, conv2d = sfwb._vae.conv3d, sfwb._vae.conv2d

-- RMS_norm of the Wan VAE: F.normalize over channels (dim 2) * sqrt(C) * gamma = x / rms(x) * gamma
local function rms(x, gamma)
  local ms = (x * x):mean(2, true)
  return x * (ms + 1e-24):rsqrt() * gamma
end

local function zeros_frames(x, n) -- [B, C, n, H, W] zeros like x's frames
  local s = x:shape()
  s[3] = n
  return sfwb.zeros(s)
end

-- causal conv over time (kt - 1 zero frames in front), spatial padding kh // 2
local function causal(x, w, b)
  local kt, kh, kw = w:size(3), w:size(4), w:size(5)
  if kt > 1 then x = sfwb.cat({zeros_frames(x, kt - 1), x}, 3) end
  return conv3d(x, w, b, {1, 1, 1}, {0, kh // 2, kw // 2})
end

-- [B, C, T, H, W] -> [B*T, C, H, W] and back
local function frames2d(x)
  local B, C, T, H, W = table.unpack(x:shape())
  return x:permute({1, 3, 2, 4, 5}):reshape({B * T, C, H, W}), B, T
end
local function frames3d(y, B, T)
  local _, C, H, W = table.unpack(y:shape())
  return y:reshape({B, T, C, H, W}):permute({1, 3, 2, 4, 5})
end

local Vae = {}
Vae.__index = Vae

function M.new(sd, opts)
  opts = opts or {}
  local self = setmetatable({p = {}, mean = opts.mean, std = opts.std}, Vae)
  for k, v in pairs(sd) do self.p[k] = v:float():clone():requires_grad_(true) end
  local z = self.p["conv2.weight"]
  if not z then error("vae_train: the state dict has no conv2.weight (not a Wan VAE?)", 2) end
  self.z_dim = z:size(1)
  if not self.mean then
    if self.z_dim ~= 16 then error("vae_train: z_dim " .. self.z_dim .. " needs mean= and std=", 2) end
    self.mean = {-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
                 0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921}
    self.std = {2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
                3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160}
  end
  self.mean_t = sfwb.tensor(self.mean):view({1, 1, self.z_dim, 1, 1})
  self.std_t = sfwb.tensor(self.std):view({1, 1, self.z_dim, 1, 1})
  return self
end

function Vae:parameters() return self.p end

function Vae:state_dict()
  local out = {}
  for k, v in pairs(self.p) do out[k] = v:detach():clone() end
  return out
end

function Vae:has(name) return self.p[name] ~= nil end

function Vae:residual(pre, x)
  local P = self.p
  local h = causal(rms(x, P[pre .. ".residual.0.gamma"]):silu(), P[pre .. ".residual.2.weight"], P[pre .. ".residual.2.bias"])
  h = causal(rms(h, P[pre .. ".residual.3.gamma"]):silu(), P[pre .. ".residual.6.weight"], P[pre .. ".residual.6.bias"])
  local sc = x
  if P[pre .. ".shortcut.weight"] then sc = causal(x, P[pre .. ".shortcut.weight"], P[pre .. ".shortcut.bias"]) end
  return h + sc
end

-- per-frame spatial self-attention (one head over the channels), residual
function Vae:attention(pre, x)
  local P = self.p
  local y, B, T = frames2d(x)
  local N, C, H, W = table.unpack(y:shape())
  local g = P[pre .. ".norm.gamma"] -- [C, 1, 1]
  local ms = (y * y):mean(2, true)
  local n = y * (ms + 1e-24):rsqrt() * g
  local qkv = conv2d(n, P[pre .. ".to_qkv.weight"], P[pre .. ".to_qkv.bias"], {1, 1}, {0, 0}) -- [N, 3C, H, W]
  qkv = qkv:reshape({N, 3 * C, H * W}):transpose(2, 3)                                        -- [N, HW, 3C]
  local q, k, v = qkv:narrow(3, 1, C), qkv:narrow(3, C + 1, C), qkv:narrow(3, 2 * C + 1, C)
  local a = (sfwb.matmul(q, k:transpose(2, 3)) * (1 / math.sqrt(C))):softmax(3)
  local o = sfwb.matmul(a, v):transpose(2, 3):reshape({N, C, H, W})
  o = conv2d(o, P[pre .. ".proj.weight"], P[pre .. ".proj.bias"], {1, 1}, {0, 0})
  return frames3d(o, B, T) + x
end

function Vae:downsample(pre, x)
  local P = self.p
  local y, B, T = frames2d(x)
  local N, C, H, W = table.unpack(y:shape())
  -- ZeroPad2d((0, 1, 0, 1)) then a stride-2 3x3 conv
  y = sfwb.cat({y, sfwb.zeros({N, C, H, 1})}, 4)
  y = sfwb.cat({y, sfwb.zeros({N, C, 1, W + 1})}, 3)
  y = conv2d(y, P[pre .. ".resample.1.weight"], P[pre .. ".resample.1.bias"], {2, 2}, {0, 0})
  x = frames3d(y, B, T)
  local tw = P[pre .. ".time_conv.weight"]
  if tw and T > 1 then
    local rest = conv3d(x, tw, P[pre .. ".time_conv.bias"], {2, 1, 1}, {0, 0, 0})
    x = sfwb.cat({x:narrow(3, 1, 1), rest}, 3)
  end
  return x
end

function Vae:upsample(pre, x)
  local P = self.p
  local tw = P[pre .. ".time_conv.weight"]
  if tw then
    local B, C, T, H, W = table.unpack(x:shape())
    if T > 1 then
      local y = causal(x:narrow(3, 2, T - 1), tw, P[pre .. ".time_conv.bias"]) -- [B, 2C, T-1, H, W]
      -- reshape(b, 2, c, t, h, w) then stack on a new dim after t: frame 2t from the first half
      y = y:reshape({B, 2, C, T - 1, H, W}):permute({1, 3, 4, 2, 5, 6}):reshape({B, C, 2 * (T - 1), H, W})
      x = sfwb.cat({x:narrow(3, 1, 1), y}, 3)
    end
  end
  local y, B, T = frames2d(x)
  local N, C, H, W = table.unpack(y:shape())
  y = y:reshape({N, C, H, 1, W, 1}):expand({N, C, H, 2, W, 2}):reshape({N, C, 2 * H, 2 * W}) -- nearest 2x
  y = conv2d(y, P[pre .. ".resample.1.weight"], P[pre .. ".resample.1.bias"], {1, 1}, {1, 1})
  return frames3d(y, B, T)
end

function Vae:module(pre, x, up)
  local P = self.p
  if P[pre .. ".residual.0.gamma"] then return self:residual(pre, x) end
  if P[pre .. ".to_qkv.weight"] then return self:attention(pre, x) end
  if P[pre .. ".resample.1.weight"] then
    if up then return self:upsample(pre, x) end
    return self:downsample(pre, x)
  end
  return nil
end

function Vae:coder(name, x, up)
  local P = self.p
  x = causal(x, P[name .. ".conv1.weight"], P[name .. ".conv1.bias"])
  local function middle()
    for i = 0, 2 do x = self:module(name .. ".middle." .. i, x, up) end
  end
  if up then middle() end
  local i = 0
  while true do
    local y = self:module(name .. (up and ".upsamples." or ".downsamples.") .. i, x, up)
    if not y then break end
    x = y
    i = i + 1
  end
  if not up then middle() end
  x = rms(x, P[name .. ".head.0.gamma"]):silu()
  return causal(x, P[name .. ".head.2.weight"], P[name .. ".head.2.bias"])
end

function Vae:encode(video)
  if video:dim() ~= 5 or video:size(2) ~= 3 then error("vae_train: encode wants a video [B, 3, T, H, W]", 2) end
  local h = self:coder("encoder", video, false)
  h = causal(h, self.p["conv1.weight"], self.p["conv1.bias"])
  local mu = h:narrow(2, 1, self.z_dim):permute({1, 3, 2, 4, 5}) -- [B, F, z, h, w]
  return (mu - self.mean_t) / self.std_t
end

function Vae:decode(latents)
  if latents:dim() ~= 5 or latents:size(3) ~= self.z_dim then
    error("vae_train: decode wants latents [B, F, " .. self.z_dim .. ", h, w]", 2)
  end
  local z = (latents * self.std_t + self.mean_t):permute({1, 3, 2, 4, 5})
  z = causal(z, self.p["conv2.weight"], self.p["conv2.bias"])
  return self:coder("decoder", z, true):permute({1, 3, 2, 4, 5}) -- [B, T, 3, H, W]
end

return M
