-- sfwb/train/rollout.lua — Self-Forcing's training rollout (SelfForcingTrainingPipeline
-- .inference_with_trajectory + the outer _run_generator): the causal student unrolls block by block
-- over its own outputs with a KV cache; exactly one forward per block (the synchronised random "exit"
-- step) carries gradient, and only for blocks at or after grad_start; a clean context re-run per block
-- rewrites the block's cache entries.
--
-- Every random draw goes through o.rng ({randn=, randint=}, the trainer's tr.rng) in the original's
-- order and shapes: block count {1}, rollout noise, exit steps {#blocks}, per block one {B*nf, C, h, w}
-- normal per scheduler step before the exit and one for the context pass.
local sfwb = require "sfwb"

local M = {}

-- the default draw source: sfwb's seeded generator. A trainer's `tr.rng` replaces it (replay, parity
-- with another implementation); every draw of the rollout goes through o.rng in the original's order.
local function default_randint(lo, hi, shape)
  if hi <= lo then error(string.format("randint: empty range [%s, %s)", tostring(lo), tostring(hi)), 2) end
  local n = 1
  for _, s in ipairs(shape) do n = n * s end
  local u = sfwb.rand({n}):totable()
  local vals = {}
  for i = 1, n do
    local v = lo + math.floor(u[i] * (hi - lo))
    if v >= hi then v = hi - 1 end
    vals[i] = v
  end
  return sfwb.tensor(vals, {dtype = "i64"}):view(shape)
end
M.default_rng = {randn = function(shape, opts) return sfwb.randn(shape, opts) end, randint = default_randint}

-- rng.randint(lo, hi, shape) as a flat Lua list of integers, checked (also the one-model trainers')
local function ints(rng, lo, hi, shape)
  local t = rng.randint(lo, hi, shape)
  local v = t:reshape({-1}):totable()
  for i, x in ipairs(v) do
    if x < lo or x >= hi then
      error(string.format("rng.randint(%d, %d) returned %s (outside the range)", lo, hi, tostring(x)), 2)
    end
    v[i] = math.tointeger(x) or math.floor(x)
  end
  return v
end
M.ints = ints

-- rng.randn(shape, opts) checked for its shape
local function normal(rng, shape, opts)
  local t = rng.randn(shape, opts)
  local s = t:shape()
  local ok = #s == #shape
  for i = 1, #shape do ok = ok and s[i] == shape[i] end
  if not ok then
    error(string.format("rng.randn returned shape {%s} for a draw of shape {%s}", table.concat(s, ", "),
      table.concat(shape, ", ")), 2)
  end
  if opts and opts.dtype and t:dtype() ~= opts.dtype then t = t:to(opts.dtype) end
  if opts and opts.device and t:device() ~= opts.device then t = t:to(opts.device) end
  return t
end
M.normal = normal

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

-- the denoising interval of a 0-based exit step ks, in unwarped timesteps (1000 - index of the nearest grid point):
-- denoised_timestep_from / _to of the training pipelines
function M.exit_interval(G, steps, ks)
  local grid = G.scheduler.timesteps:totable()
  local function unwarp(v)
    local best, bi = math.huge, 1
    for j = 1, #grid do
      local d = math.abs(grid[j] - v)
      if d < best then best, bi = d, j end
    end
    return 1000 - (bi - 1)
  end
  return unwarp(steps[ks + 1]), ks + 1 < #steps and unwarp(steps[ks + 2]) or 0
end

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
  -- detach_kv_cache: the clean variant (no gradient into earlier blocks' exit-step K/V through the cache)
  local kv = G.model:kv_cache{batch = B, frames = o.kv_frames or F_out, detach = o.detach_kv_cache or false}
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

  local rng = o.rng or M.default_rng
  local blocks = blocks_of(F, o.nfpb, o.independent_first_frame, n_in)
  -- exit steps (generate_and_sync_list): one draw of shape {#blocks} on rank 0, 0-based, replaced by K - 1
  -- with last_step_only (drawn all the same), broadcast
  local exits = {}
  if not o.dist or o.dist.rank() == 0 then
    exits = ints(rng, 0, K, {#blocks})
    if o.last_step_only then for i = 1, #blocks do exits[i] = K - 1 end end
  else
    for i = 1, #blocks do exits[i] = 0 end
  end
  if o.dist then
    local e = sfwb.tensor(exits, {dtype = "i64"})
    o.dist.broadcast(e, 0)
    exits = e:totable()
  end
  local grad_start = F_out - (o.grad_window or 21)

  -- noise of the scheduler steps: randn_like(x0.flatten(0, 1)), drawn also for the context pass at
  -- context_noise 0 (the original draws it and then adds it with weight 0)
  local function renoise(x0, tval)
    local s = x0:shape()
    local flat = {s[1] * s[2], s[3], s[4], s[5]}
    local n = normal(rng, flat, {dtype = x0:dtype(), device = x0:device()})
    local T = sfwb.full({s[1] * s[2]}, tval, {dtype = "f32", device = x0:device()})
    return G.scheduler:add_noise(x0:reshape(flat), n, T):view(s)
  end

  for b, nf in ipairs(blocks) do
    local x = noise:narrow(2, pos - n_in + 1, nf)
    local stop_at = o.same_step_across_blocks == false and exits[b] or exits[1]
    local x0
    for k = 0, K - 1 do
      if k ~= stop_at then
        sfwb.no_grad(function()
          x0 = call(x, steps[k + 1], false)
          x = renoise(x0, steps[k + 2])
        end)
      else
        x0 = call(x, steps[k + 1], pos >= grad_start)
        break
      end
    end
    outs[#outs + 1] = x0
    -- context re-run at context_noise: overwrites this block's cache values (not its gradient path)
    sfwb.no_grad(function() call(renoise(x0:detach(), o.context_noise or 0), o.context_noise or 0, false) end)
    pos = pos + nf
  end
  local out = sfwb.cat(outs, 2)

  -- the timestep interval of the exit step, in unwarped units (used only with ts_schedule)
  local t_from, t_to
  if o.same_step_across_blocks ~= false then t_from, t_to = M.exit_interval(G, steps, exits[1]) end
  return out, t_from, t_to
end

-- a rollout longer than slice_last_frames (grad_window; 21 in Self-Forcing, LongLive's slice_last_frames, -1 =
-- keep all): model/base.py _run_generator decodes every frame but the last slice - 1 to pixels (no grad), encodes
-- the last decoded pixel frame back into one latent frame and puts it before the last slice - 1 frames
function M.slice_last(o, out)
  local sl = o.grad_window or 21
  local F = out:size(2)
  if sl == -1 or F <= sl then return out end
  return M.reencode_first(o, out, sl)
end

-- the re-encode itself: the first F - (keep - 1) frames decoded (no grad), the last pixel frame encoded into one
-- latent frame, put before the last keep - 1 frames (also LongLive's _process_first_frame_encoding, keep = 21)
function M.reencode_first(o, out, sl)
  local F = out:size(2)
  local vae = o.vae
  if not vae then
    error(string.format("train: a %d-frame rollout is longer than slice_last_frames %d, and the original re-encodes its " ..
                        "first frame through the VAE: give the trainer a VAE (parts.vae)", F, sl), 3)
  end
  local image_latent
  sfwb.no_grad(function()
    local prefix = sl > 1 and out:narrow(2, 1, F - (sl - 1)) or out
    local pixels = vae:decode(prefix:detach():contiguous())                     -- [B, T, 3, H, W], clamped
    local frame = pixels:narrow(2, pixels:size(2), 1):to(out:dtype())          -- the last pixel frame
    image_latent = vae:encode(frame:permute({1, 3, 2, 4, 5}):contiguous()):to(out:dtype())  -- [B, 1, C, h, w]
  end)
  if sl == 1 then return image_latent end
  return sfwb.cat({image_latent, out:narrow(2, F - sl + 2, sl - 1)}, 2)
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
  local rng = o.rng or M.default_rng
  local nb = ints(rng, min_F // nfpb, max_F // nfpb + 1, {1})[1] -- every rank draws; rank 0's is broadcast
  if o.dist then
    local t = sfwb.tensor({nb}, {dtype = "i64"})
    o.dist.broadcast(t, 0)
    nb = t:totable()[1]
  end
  local F_gen = nb * nfpb
  if iff and not cond.initial_latent then F_gen = F_gen + 1; min_F = min_F + 1 end
  local noise = normal(rng, {shape[1], F_gen, shape[3], shape[4], shape[5]}, {dtype = o.dtype or "f32", device = o.device})
  -- a bidirectional generator plugs in its own trajectory (sfwb.train.rollout_bidirectional)
  local out, t_from, t_to = (o.trajectory or M.inference_with_trajectory)(o, noise, cond)
  out = M.slice_last(o, out)
  local mask = nil
  if F_gen ~= min_F then
    mask = iff and 1 or nfpb -- leading frames excluded from the loss
  end
  return out, mask, t_from, t_to
end

return M
