-- sfwb/train/rollout.lua — Self-Forcing's training rollout (SelfForcingTrainingPipeline
-- .inference_with_trajectory + the outer _run_generator): the causal student unrolls block by block
-- over its own outputs with a KV cache; exactly one forward per block (the synchronised random "exit"
-- step) carries gradient, and only for blocks at or after grad_start; a clean context re-run per block
-- rewrites the block's cache entries.
--
-- Design decision (spec training_spec.md 3.2, property 4): the KV cache holds detached keys/values,
-- so gradient never flows from a later block into an earlier block's exit-step K/V. This is the
-- "gradient only at the exit step" reading; PyTorch's in-place cache writes would route some gradient
-- through the cache. Documented, deliberate.
local sfwb = require "sfwb"

local M = {}

local function randint(lo, hi) -- integer in [lo, hi), from sfwb's seeded generator
  local u = sfwb.rand({1}):item()
  local v = lo + math.floor(u * (hi - lo))
  if v >= hi then v = hi - 1 end
  return v
end
M.randint = randint

-- the frame blocks of one rollout
local function blocks_of(F, nfpb, independent_first_frame, n_in)
  local b = {}
  if independent_first_frame and n_in == 0 then
    b[1] = 1
    for _ = 1, (F - 1) // nfpb do b[#b + 1] = nfpb end
  else
    for _ = 1, F // nfpb do b[#b + 1] = nfpb end
  end
  return b
end
M.blocks_of = blocks_of

-- o: {generator = Wrapper (causal), steps = {t_1..t_K} warped, nfpb, independent_first_frame,
--     same_step_across_blocks, last_step_only, context_noise, grad_window (21), dist (optional sfwb.dist)}
-- noise [B, F, C, h, w]; cond {ctx=, clip_fea=, y=, initial_latent=}
-- returns out [B, F_out, C, h, w] (carrying gradient from the exit steps), t_from, t_to
function M.inference_with_trajectory(o, noise, cond)
  local G, steps = o.generator, o.steps
  local K = #steps
  local B, F = noise:size(1), noise:size(2)
  local n_in = cond.initial_latent and cond.initial_latent:size(2) or 0
  local F_out = F + n_in
  local kv = G.model:kv_cache{batch = B, frames = o.kv_frames or F_out}
  local ca = G.model:crossattn_cache{batch = B}
  local outs = {}
  local pos = 0

  local function call(x, tval, with_grad)
    local t = sfwb.full({B, x:size(2)}, tval, {dtype = "f32", device = x:device()})
    local extra = {kv_cache = kv, crossattn_cache = ca, current_start_frame = pos}
    if cond.clip_fea then extra.clip_fea = cond.clip_fea end
    if cond.y then extra.y = cond.y:narrow(3, pos + 1, x:size(2)):contiguous() end
    if with_grad then
      local _, x0 = G:forward(x, t, cond.ctx, extra)
      return x0
    end
    local x0
    sfwb.no_grad(function() local _; _, x0 = G:forward(x, t, cond.ctx, extra) end)
    return x0
  end

  if n_in > 0 then -- I2V context frame, timestep 0, no grad
    outs[#outs + 1] = cond.initial_latent
    call(cond.initial_latent, 0, false)
    pos = n_in
  end

  local blocks = blocks_of(F, o.nfpb, o.independent_first_frame, n_in)
  -- exit steps: drawn once (same_step_across_blocks) or per block, 0-based as the original
  local exits = {}
  for i = 1, #blocks do
    exits[i] = o.last_step_only and (K - 1) or randint(0, K)
  end
  if o.dist then
    local e = sfwb.tensor(exits, {dtype = "i64"})
    o.dist.broadcast(e, 0)
    exits = e:totable()
  end
  local grad_start = F_out - (o.grad_window or 21)

  for b, nf in ipairs(blocks) do
    local x = noise:narrow(2, pos - n_in + 1, nf)
    local stop_at = o.same_step_across_blocks == false and exits[b] or exits[1]
    local x0
    for k = 0, K - 1 do
      if k ~= stop_at then
        x0 = call(x, steps[k + 1], false)
        local nxt = steps[k + 2]
        local n = sfwb.randn(x0:shape(), {dtype = x0:dtype(), device = x0:device()})
        local T = sfwb.full({B * nf}, nxt, {dtype = "f32", device = x0:device()})
        x = G.scheduler:add_noise(x0:reshape({B * nf, x0:size(3), x0:size(4), x0:size(5)}), n:reshape({B * nf, n:size(3), n:size(4), n:size(5)}), T):view(x0:shape())
      else
        x0 = call(x, steps[k + 1], pos >= grad_start)
        break
      end
    end
    outs[#outs + 1] = x0
    -- context re-run at context_noise: overwrites this block's K/V with clean ones, never with grad
    sfwb.no_grad(function()
      local xd = x0:detach()
      local n = sfwb.randn(xd:shape(), {dtype = xd:dtype(), device = xd:device()})
      local T = sfwb.full({B * nf}, o.context_noise or 0, {dtype = "f32", device = xd:device()})
      local xc = G.scheduler:add_noise(xd:reshape({B * nf, xd:size(3), xd:size(4), xd:size(5)}),
                                       n:reshape({B * nf, n:size(3), n:size(4), n:size(5)}), T):view(xd:shape())
      call(xc, o.context_noise or 0, false)
    end)
    pos = pos + nf
  end
  local out = sfwb.cat(outs, 2)

  -- the timestep interval of the exit step, in unwarped units (used only with ts_schedule)
  local t_from, t_to
  if o.same_step_across_blocks ~= false then
    local grid = G.scheduler.timesteps:totable()
    local function unwarp(v)
      local best, bi = math.huge, 1
      for j = 1, #grid do
        local d = math.abs(grid[j] - v)
        if d < best then best, bi = d, j end
      end
      return 1000 - (bi - 1)
    end
    local ks = exits[1]
    t_from = unwarp(steps[ks + 1])
    t_to = ks + 1 < K and unwarp(steps[ks + 2]) or 0
  end
  return out, t_from, t_to
end

-- _run_generator: random rollout length (blocks), then the rollout; returns x [B, F, C, h, w], mask, t_from, t_to
function M.run_generator(o, shape, cond)
  local nfpb = o.nfpb
  local iff = o.independent_first_frame
  local max_F = o.num_training_frames
  local min_F = math.min(o.min_num_training_frames or 21, max_F)
  if iff then max_F, min_F = max_F - 1, min_F - 1 end
  if max_F % nfpb ~= 0 or min_F % nfpb ~= 0 then
    error(string.format("train.dmd: num_training_frames %d (min %d) must fit blocks of num_frame_per_block %d%s",
      o.num_training_frames, min_F, nfpb, iff and " after the independent first frame" or ""), 2)
  end
  local nb = randint(min_F // nfpb, max_F // nfpb + 1)
  if o.dist then
    local t = sfwb.tensor({nb}, {dtype = "i64"})
    o.dist.broadcast(t, 0)
    nb = t:totable()[1]
  end
  local F_gen = nb * nfpb
  if iff and not cond.initial_latent then F_gen = F_gen + 1; min_F = min_F + 1 end
  local noise = sfwb.randn({shape[1], F_gen, shape[3], shape[4], shape[5]}, {dtype = o.dtype or "f32", device = o.device})
  local out, t_from, t_to = M.inference_with_trajectory(o, noise, cond)
  if out:size(2) > (o.grad_window or 21) then
    error("train.dmd: rollouts longer than the teacher window need the VAE re-encode of the first frame, " ..
          "which this trainer does not implement yet; set num_training_frames <= 21", 2)
  end
  local mask = nil
  if F_gen ~= min_F then
    mask = iff and 1 or nfpb -- leading frames excluded from the loss
  end
  return out, mask, t_from, t_to
end

return M
