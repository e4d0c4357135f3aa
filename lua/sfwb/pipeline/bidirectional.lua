-- sfwb/pipeline/bidirectional.lua — few-step joint denoising of the whole clip with a bidirectional Wan
-- (Self-Forcing's BidirectionalInferencePipeline; also the 14B T2V/I2V path of Self-Forcing-Plus).
local sfwb = require "sfwb"
local U = require "sfwb.pipeline.util"

local M = {}
local Bidir = {}
Bidir.__index = Bidir

function M.new(o)
  o = o or {}
  if not o.generator then error("pipeline.bidirectional: generator= (a Wan model) is required", 2) end
  local self = setmetatable({}, Bidir)
  self.generator, self.text_encoder, self.vae = o.generator, o.text_encoder, o.vae
  self.timestep_shift = o.timestep_shift or 5.0
  self.warp_denoising_step = o.warp_denoising_step ~= false
  self.denoising_step_list = U.copy_list(o.denoising_step_list or {1000, 750, 500, 250})
  -- BidirectionalInferencePipeline evaluates steps[1..K-1] and returns the x0 of step K-1 (the last
  -- re-noised sample is discarded); all_steps=true runs all K steps as the training pipeline does
  self.all_steps = o.all_steps or false
  self.dtype = o.dtype or U.model_dtype(self.generator)
  self.device = o.device or U.model_device(self.generator)
  self.scheduler = U.scheduler(self.timestep_shift)
  self.denoising_steps = U.denoising_steps(self.scheduler, self.denoising_step_list, self.warp_denoising_step)
  self._steps = self.denoising_steps:totable()
  return self
end

-- r.latents [B, F, C, h, w]; r.video [B, F', 3, H, W] in [-1, 1] when a VAE is set and decode ~= false
function Bidir:generate(o)
  o = o or {}
  local t0 = sfwb.time()
  local dev, dt = self.device, o.dtype or (o.noise and o.noise:dtype()) or self.dtype
  local ctx = U.context(self.text_encoder, o.prompts, o.prompt_embeds, dev)
  local x
  if o.noise then
    x = o.noise:to(dev):to(dt)
  else
    local C = (self.generator.config and self.generator.config.out_dim) or 16
    local h, w
    if o.latent_size then h, w = o.latent_size[1], o.latent_size[2]
    else h, w = (o.height or 480) // 8, (o.width or 832) // 8 end
    U.check_noise_shape("pipeline.bidirectional", {ctx:size(1), o.num_frames or 21, C, h, w}, o)
    if o.seed then sfwb.manual_seed(o.seed) end
    x = sfwb.randn({ctx:size(1), o.num_frames or 21, C, h, w}, {dtype = dt, device = dev})
  end
  U.check_noise_shape("pipeline.bidirectional", x:shape(), o)
  local B, F = x:size(1), x:size(2)
  if ctx:size(1) ~= B and ctx:size(1) == 1 then ctx = ctx:expand({B, ctx:size(2), ctx:size(3)}):contiguous() end
  local fo = {}
  if o.clip_fea then fo.clip_fea = o.clip_fea:to(dev) end
  if o.y then fo.y = o.y:to(dev) end
  local steps = self._steps
  local last = self.all_steps and #steps or #steps - 1
  if last < 1 then last = 1 end
  local x0
  local timings = {steps = {}}
  for k = 1, last do
    local ts = sfwb.time()
    local tk = steps[k]
    fo.tag = {chunk = 1, step = k, pass = "denoise", timestep = tk}
    local flow = U.from_model(self.generator:forward(U.to_model(x), sfwb.full({B}, tk, {dtype = "f32", device = dev}), ctx, fo))
    if dt ~= "f32" then flow = flow:to(dt) end
    x0 = U.pred_x0(self.scheduler, flow, x, tk):to(dt)
    if k < #steps and (k < last or not self.all_steps) then
      local eps = U.draw(o.step_noise, x0:shape(), dt, dev)
      x = U.add_noise(self.scheduler, x0, eps, steps[k + 1])
    end
    sfwb.sync()
    timings.steps[k] = sfwb.time() - ts
    if o.on_step then o.on_step(k, x0) end
  end
  local r = {latents = x0, denoising_steps = self.denoising_steps, timings = timings}
  local decode = o.decode
  if decode == nil then decode = self.vae ~= nil end
  if decode then
    local td = sfwb.time()
    r.video = self.vae:decode(x0)
    timings.decode = sfwb.time() - td
  end
  timings.total = sfwb.time() - t0
  r.frames = F
  return r
end

function Bidir:__tostring()
  return string.format("BidirectionalPipeline(steps={%s}%s)", table.concat(self._steps, ", "),
                       self.all_steps and ", all_steps" or "")
end

M.Bidir = Bidir
return M
