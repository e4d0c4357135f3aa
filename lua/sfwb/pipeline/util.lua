-- sfwb/pipeline/util.lua — pieces the pipelines share: layouts, the x0/re-noise steps, the warped step
-- list, text conditioning, noise draws and progress lines.
local sfwb = require "sfwb"

local U = {}

-- the device a model's weights live on ("cpu", "emu:0", "cuda:0")
function U.model_device(m)
  if type(m.device) == "string" then return m.device end
  if type(m.device) == "function" then
    local ok, d = pcall(m.device, m)
    if ok and type(d) == "string" then return d end
  end
  for _, t in pairs(m:parameters()) do return t:device() end
  return "cpu"
end

-- the dtype a model computes in (its weights'), "f32" when unknown
function U.model_dtype(m)
  if type(m.dtype) == "string" then return m.dtype end
  local ok, ps = pcall(m.parameters, m)
  if ok and type(ps) == "table" then for _, t in pairs(ps) do return t:dtype() end end
  return "f32"
end

-- Self-Forcing's pipeline layout [B, F, C, H, W] <-> the model's [B, C, F, H, W]
function U.to_model(x) return x:permute({1, 3, 2, 4, 5}):contiguous() end
function U.from_model(x) return x:permute({1, 3, 2, 4, 5}):contiguous() end

local function flat(x) -- [B, F, ...] -> [B*F, ...]
  local s = x:shape()
  local shape = {s[1] * s[2]}
  for i = 3, #s do shape[#shape + 1] = s[i] end
  return x:reshape(shape)
end
U.flat = flat

-- the noise's [B, F, C, h, w] checked before any step: a zero or negative extent (height 4 -> h 0) is an
-- error naming the sizes, never a division by zero further down
function U.check_noise_shape(who, s, o)
  if #s ~= 5 then error(string.format("%s: noise must be [B, F, C, h, w], got %d dims", who, #s), 3) end
  for i, name in ipairs({"batch", "frames", "channels", "latent height", "latent width"}) do
    if s[i] < 1 then
      error(string.format("%s: %s is %d (noise [%s]); latent sizes must be >= 1%s", who, name, s[i], table.concat(s, ", "),
        (i >= 4 and o and (o.height or o.width)) and " (height and width are pixels: at least 16, multiples of 16)" or ""), 3)
    end
  end
end

-- the scheduler every pipeline uses (Self-Forcing: shift = timestep_shift, sigma_min 0, extra step)
function U.scheduler(shift)
  return sfwb.scheduler.flow_match{shift = shift or 5.0, sigma_min = 0.0, extra_one_step = true,
                                   num_train_timesteps = 1000}
end

-- the denoising steps actually used: a trailing 0 dropped, warped through the grid when asked
function U.denoising_steps(sched, list, warp)
  list = list or {1000, 750, 500, 250}
  local l = {}
  for i, v in ipairs(list) do l[i] = v end
  if #l > 1 and l[#l] == 0 then l[#l] = nil end
  if #l == 0 then error("pipeline: denoising_step_list is empty", 3) end
  if warp then return sched:warp(l) end
  return sfwb.tensor(l, {dtype = "f32"})
end

-- flow prediction -> x0 in the pipeline layout, as the wrapper does (sigma of the nearest grid step)
function U.pred_x0(sched, flow, x, tval)
  local s = x:shape()
  local n = s[1] * s[2]
  local t = sfwb.full({n}, tval, {dtype = "f32"})
  return sched:pred_x0(flat(flow), flat(x), t):reshape(s)
end

-- x0 re-noised to timestep tval with the given noise (scheduler.add_noise over flattened frames)
function U.add_noise(sched, x0, noise, tval)
  local s = x0:shape()
  local n = s[1] * s[2]
  local t = sfwb.full({n}, tval, {dtype = "f32"})
  return sched:add_noise(flat(x0), flat(noise), t):reshape(s)
end

-- text conditioning: explicit embeddings win; otherwise the encoder (required then)
function U.context(text_encoder, prompts, prompt_embeds, device)
  if prompt_embeds then
    if prompt_embeds:dim() ~= 3 then
      error("pipeline: prompt_embeds must be [B, L, text_dim], got " .. table.concat(prompt_embeds:shape(), "x"), 3)
    end
    return prompt_embeds:to(device)
  end
  if not prompts then error("pipeline: give prompts={...} or prompt_embeds=", 3) end
  if type(prompts) == "string" then prompts = {prompts} end
  if not text_encoder then error("pipeline: prompts need a text_encoder (or pass prompt_embeds=)", 3) end
  local out = text_encoder:encode(prompts)
  local e = out.prompt_embeds or out
  return e:to(device)
end

-- one draw of Gaussian noise of `shape`: the caller's step_noise function, or the global RNG
function U.draw(step_noise, shape, dtype, device)
  if step_noise then
    local t = step_noise(shape)
    if type(t) ~= "userdata" then error("pipeline: step_noise must return a tensor", 3) end
    -- the reference draws randn_like(x0.flatten(0, 1)): any layout with the same elements is accepted
    local n = 1
    for i = 1, #shape do n = n * shape[i] end
    if t:numel() ~= n then
      error(string.format("pipeline: step_noise returned %s, expected %s (or the same elements flattened)",
                          table.concat(t:shape(), "x"), table.concat(shape, "x")), 3)
    end
    return t:contiguous():reshape(shape):to(device):to(dtype)
  end
  return sfwb.randn(shape, {dtype = dtype, device = device})
end

function U.copy_list(t)
  local r = {}
  for i, v in ipairs(t) do r[i] = v end
  return r
end

function U.fmt_seconds(s)
  if s >= 3600 then return string.format("%dh%02dm", s // 3600, (s % 3600) // 60) end
  if s >= 60 then return string.format("%dm%02ds", s // 60, math.floor(s % 60)) end
  return string.format("%.1fs", s)
end

return U
