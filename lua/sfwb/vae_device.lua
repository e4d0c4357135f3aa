-- sfwb/vae_device.lua — the Wan VAE forward on device tensors (cuda:N, emu:N): the same modules, caches and
-- chunking as the fused CPU path (src/models/vae_*.c), written with the tensor ops and the backend's conv
-- table (implicit-GEMM kernel), one call per layer. Tensors are [N, C, T, H, W] f32 inside. With dtype "bf16"
-- (Self-Forcing's VAE after .to(bfloat16)) weights are bf16 values and every op's output is rounded to bf16
-- (self:r), sums in f32, as the CPU path (src/models/vae_*.c) and the reference's kernels.
local sfwb = require "sfwb"

local M = {}
local Dev = {}
Dev.__index = Dev

local conv3d = function(...) return sfwb._vae.conv3d(...) end

local function bf16r(x) return x:bf16():float() end
local function same(x) return x end

-- module list of "encoder.downsamples" / "decoder.upsamples" read from the keys, as the C loader
local function modules(sd, prefix, up)
  local mods = {}
  for i = 0, 1000 do
    local p = prefix .. "." .. i
    if sd[p .. ".residual.0.gamma"] then mods[#mods + 1] = {kind = "res", p = p}
    elseif sd[p .. ".to_qkv.weight"] then mods[#mods + 1] = {kind = "attn", p = p}
    elseif sd[p .. ".resample.1.weight"] then
      local t = sd[p .. ".time_conv.weight"] ~= nil
      mods[#mods + 1] = {kind = (up and "up" or "down") .. (t and "3d" or "2d"), p = p}
    else break end
  end
  return mods
end

-- opts: device, mean, std (z values)
function M.new(sd, core_config, device, dtype)
  if dtype ~= nil and dtype ~= "f32" and dtype ~= "bf16" then
    error("sfwb.vae: dtype '" .. tostring(dtype) .. "' on " .. device .. ": f32 or bf16", 3)
  end
  local self = setmetatable({device = device, sd = {}, cfg = core_config, dtype = dtype or "f32"}, Dev)
  self.r = self.dtype == "bf16" and bf16r or same
  for k, v in pairs(sd) do
    if type(k) == "string" and (k:match("^encoder%.") or k:match("^decoder%.") or k:match("^conv[12]%.")) then
      self.sd[k] = self.r(v:float():to(device))
    end
  end
  self.enc = modules(self.sd, "encoder.downsamples", false)
  self.dec = modules(self.sd, "decoder.upsamples", true)
  self.z = core_config.z_dim
  -- the wrapper's scale = [mean, 1 / std]; in bf16 [mean.to(bf16), 1.0 / std.to(bf16)], each rounded
  self.mean = self.r(sfwb.tensor(core_config.mean, {dtype = "f32"})):view({1, self.z, 1, 1, 1}):to(device)
  self.inv = self.r(1 / self.r(sfwb.tensor(core_config.std, {dtype = "f32"}))):view({1, self.z, 1, 1, 1}):to(device)
  return self
end

local function zeros_like_frames(x, n)
  local s = x:shape()
  s[3] = n
  return sfwb.zeros(s, {device = x:device()})
end

-- plain conv with the causal temporal zero padding (2 * pt frames in front)
function Dev:conv(name, x, pt, ph, pw, stride)
  if pt > 0 then x = sfwb.cat({zeros_like_frames(x, 2 * pt), x}, 3) end
  return self.r(conv3d(x, self.sd[name .. ".weight"], self.sd[name .. ".bias"], stride or 1, {0, ph, pw}))
end

-- the cached 3-tap causal conv (CACHE_T = 2)
function Dev:cconv(name, x, st)
  local i = st.idx
  st.idx = i + 1
  local T = x:size(3)
  local new = x:narrow(3, T - math.min(2, T) + 1, math.min(2, T))
  if T < 2 and st[i] then new = sfwb.cat({st[i]:narrow(3, st[i]:size(3), 1), new}, 3) end
  local inp = x
  if st[i] then inp = sfwb.cat({st[i], x}, 3) end
  local front = 2 - (st[i] and st[i]:size(3) or 0)
  if front > 0 then inp = sfwb.cat({zeros_like_frames(x, front), inp}, 3) end
  local y = self.r(conv3d(inp, self.sd[name .. ".weight"], self.sd[name .. ".bias"], 1, {0, 1, 1}))
  st[i] = new:contiguous()
  return y
end

-- F.normalize over channels * sqrt(C) * gamma; in bf16 every op rounded as the CPU path (the norm summed in f32)
local function rms(x, gamma, r)
  if r == same then
    local n = (x * x):sum(2, true):sqrt():clamp(1e-12, nil)
    return x / n * math.sqrt(x:size(2)) * gamma
  end
  local n = r((x * x):sum(2, true):sqrt()):clamp(r(sfwb.tensor(1e-12)):item(), nil)
  return r(r(r(x / n) * math.sqrt(x:size(2))) * gamma)
end

function Dev:res(p, x, st)
  local sd, r = self.sd, self.r
  local h = sd[p .. ".shortcut.weight"] and self:conv(p .. ".shortcut", x, 0, 0, 0) or x
  local t = r(rms(x, sd[p .. ".residual.0.gamma"], r):silu())
  t = self:cconv(p .. ".residual.2", t, st)
  t = r(rms(t, sd[p .. ".residual.3.gamma"], r):silu())
  t = self:cconv(p .. ".residual.6", t, st)
  return r(t + h)
end

function Dev:attn(p, x)
  local sd, r = self.sd, self.r
  local N, C, T, H, W = table.unpack(x:shape())
  local y = x:permute({1, 3, 2, 4, 5}):reshape({N * T, C, 1, H, W})
  local g = sd[p .. ".norm.gamma"]:view({C, 1, 1, 1})
  y = rms(y, g, r)
  local qkv = r(conv3d(y, sd[p .. ".to_qkv.weight"]:view({3 * C, C, 1, 1, 1}), sd[p .. ".to_qkv.bias"], 1, 0))
  qkv = qkv:reshape({N * T, 3 * C, H * W}):transpose(2, 3)            -- [NT, HW, 3C]
  local q, k, v = qkv:narrow(3, 1, C), qkv:narrow(3, C + 1, C), qkv:narrow(3, 2 * C + 1, C)
  -- f32 inside with one rounding of the output (a fused SDPA kernel), as the CPU path
  local a = r(sfwb.matmul((sfwb.matmul(q, k:transpose(2, 3)) * (1 / math.sqrt(C))):softmax(3), v))
  a = a:transpose(2, 3):reshape({N * T, C, 1, H, W})
  a = r(conv3d(a, sd[p .. ".proj.weight"]:view({C, C, 1, 1, 1}), sd[p .. ".proj.bias"], 1, 0))
  return r(x + a:reshape({N, T, C, H, W}):permute({1, 3, 2, 4, 5}))
end

local function spatial(self, p, x, up)
  local sd = self.sd
  local w = sd[p .. ".resample.1.weight"]
  local s = w:shape()
  w = w:view({s[1], s[2], 1, s[3], s[4]})
  local N, C, T, H, W = table.unpack(x:shape())
  if up then
    x = x:reshape({N, C, T, H, 1, W, 1}):expand({N, C, T, H, 2, W, 2}):reshape({N, C, T, 2 * H, 2 * W})
    return self.r(conv3d(x, w, sd[p .. ".resample.1.bias"], 1, {0, 1, 1}))
  end
  -- ZeroPad2d(0, 1, 0, 1) then a stride-2 conv
  x = sfwb.cat({x, sfwb.zeros({N, C, T, H, 1}, {device = x:device()})}, 5)
  x = sfwb.cat({x, sfwb.zeros({N, C, T, 1, W + 1}, {device = x:device()})}, 4)
  return self.r(conv3d(x, w, sd[p .. ".resample.1.bias"], {1, 2, 2}, 0))
end

function Dev:down(m, x, st)
  x = spatial(self, m.p, x, false)
  if m.kind == "down3d" then
    local i = st.idx
    st.idx = i + 1
    if not st[i] then
      st[i] = x:narrow(3, x:size(3), 1):contiguous()
    else
      local last = x:narrow(3, x:size(3), 1):contiguous()
      x = self.r(conv3d(sfwb.cat({st[i]:narrow(3, st[i]:size(3), 1), x}, 3), self.sd[m.p .. ".time_conv.weight"],
                 self.sd[m.p .. ".time_conv.bias"], {2, 1, 1}, 0))
      st[i] = last
    end
  end
  return x
end

function Dev:up(m, x, st)
  if m.kind == "up3d" then
    local i = st.idx
    st.idx = i + 1
    if not st[i] then
      st[i] = "Rep"
    else
      local N, C, T, H, W = table.unpack(x:shape())
      local new = x:narrow(3, T - math.min(2, T) + 1, math.min(2, T))
      if T < 2 then
        local prev = st[i] == "Rep" and zeros_like_frames(new, 1) or st[i]:narrow(3, st[i]:size(3), 1)
        new = sfwb.cat({prev, new}, 3)
      end
      local inp = x
      local front = 2
      if st[i] ~= "Rep" then inp = sfwb.cat({st[i], x}, 3); front = 2 - st[i]:size(3) end
      if front > 0 then inp = sfwb.cat({zeros_like_frames(x, front), inp}, 3) end
      local y = self.r(conv3d(inp, self.sd[m.p .. ".time_conv.weight"], self.sd[m.p .. ".time_conv.bias"], 1, 0))
      st[i] = new:contiguous()
      -- [N, 2C, T] -> [N, C, 2T]: frame 2t = channels 0..C-1 of step t, 2t+1 = channels C..2C-1
      x = y:reshape({N, 2, C, T, H, W}):permute({1, 3, 4, 2, 5, 6}):reshape({N, C, 2 * T, H, W})
    end
  end
  return spatial(self, m.p, x, true)
end

function Dev:middle(name, x, st)
  x = self:res(name .. ".middle.0", x, st)
  x = self:attn(name .. ".middle.1", x)
  return self:res(name .. ".middle.2", x, st)
end

function Dev:coder(name, mods, x, st)
  st.idx = 1
  x = self:cconv(name .. ".conv1", x, st)
  if name == "decoder" then x = self:middle(name, x, st) end
  for _, m in ipairs(mods) do
    if m.kind == "res" then x = self:res(m.p, x, st)
    elseif m.kind == "attn" then x = self:attn(m.p, x)
    elseif m.kind:sub(1, 4) == "down" then x = self:down(m, x, st)
    else x = self:up(m, x, st) end
  end
  if name == "encoder" then x = self:middle(name, x, st) end
  x = self.r(rms(x, self.sd[name .. ".head.0.gamma"], self.r):silu())
  return self:cconv(name .. ".head.2", x, st)
end

-- video [B, 3, T, H, W] -> latents [B, F, z, h, w]
function Dev:encode(video)
  video = self.r(video:float():to(self.device))
  local outs = {}
  for b = 1, video:size(1) do
    local v = video:narrow(1, b, 1)
    local st, parts = {}, {}
    local T = v:size(3)
    for i = 0, (T - 1) // 4 do
      local chunk = i == 0 and v:narrow(3, 1, 1) or v:narrow(3, 2 + 4 * (i - 1), 4)
      parts[#parts + 1] = self:coder("encoder", self.enc, chunk, st)
    end
    local mu = self:conv("conv1", sfwb.cat(parts, 3), 0, 0, 0):narrow(2, 1, self.z)
    outs[b] = self.r(self.r(mu - self.mean) * self.inv):permute({1, 3, 2, 4, 5})
  end
  return sfwb.cat(outs, 1):contiguous()
end

-- latents [B, F, z, h, w] -> video [B, T, 3, H, W] clamped; states: per-batch cache tables (streaming) or nil
function Dev:decode(latents, states)
  latents = self.r(latents:float():to(self.device))
  local outs = {}
  for b = 1, latents:size(1) do
    local z = latents:narrow(1, b, 1):permute({1, 3, 2, 4, 5})
    local x = self:conv("conv2", self.r(self.r(z / self.inv) + self.mean), 0, 0, 0)
    local st = states and states[b] or {}
    if states then states[b] = st end
    local parts = {}
    for i = 1, x:size(3) do parts[i] = self:coder("decoder", self.dec, x:narrow(3, i, 1), st) end
    outs[b] = sfwb.cat(parts, 3):clamp(-1, 1):permute({1, 3, 2, 4, 5})
  end
  return sfwb.cat(outs, 1):contiguous()
end

return M
