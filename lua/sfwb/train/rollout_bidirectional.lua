-- sfwb/train/rollout_bidirectional.lua — Self-Forcing-Plus's BidirectionalTrainingPipeline
-- (pipeline/bidirectional_training.py): the training rollout of a bidirectional generator for DMD. The whole
-- clip is denoised jointly: one exit step drawn as randint(0, K, {1}) (rank 0, broadcast), the steps before it
-- without gradient (x0, then re-noised to the next step with randn{B*F, C, h, w}), the exit step's forward
-- with gradient; the exit interval in unwarped units for ts_schedule, as the causal rollout.
-- Plugs into the DMD trainer as rollout_opts.trajectory (sfwb.train.rollout.run_generator draws the length
-- and the noise first, as model/base.py's _run_generator does for both generator types).
local sfwb = require "sfwb"
local Rollout = require "sfwb.train.rollout"

local M = {}

-- o: the DMD trainer's rollout options (generator = bidirectional Wrapper, steps = warped list, rng, dist)
-- noise [B, F, C, h, w]; cond {ctx=, clip_fea=, y=}; returns x0 [B, F, C, h, w] with the exit step's graph,
-- t_from, t_to
function M.inference_with_trajectory(o, noise, cond)
  local G, steps, rng = o.generator, o.steps, o.rng or Rollout.default_rng
  local K = #steps
  local exit = 0
  if not o.dist or o.dist.rank() == 0 then exit = Rollout.ints(rng, 0, K, {1})[1] end
  if o.dist then
    local e = sfwb.tensor({exit}, {dtype = "i64"})
    o.dist.broadcast(e, 0)
    exit = e:totable()[1]
  end
  local B, F = noise:size(1), noise:size(2)
  local s = noise:shape()
  local extra = {clip_fea = cond.clip_fea, y = cond.y}
  local x, x0 = noise, nil
  for k = 0, exit do
    local t = sfwb.full({B, F}, steps[k + 1], {dtype = "f32", device = noise:device()})
    if k < exit then
      sfwb.no_grad(function()
        local _, d = G:forward(x, t, cond.ctx, extra)
        local flat = {B * F, s[3], s[4], s[5]}
        local n = Rollout.normal(rng, flat, {dtype = d:dtype(), device = d:device()})
        local tn = sfwb.full({B * F}, steps[k + 2], {dtype = "f32", device = d:device()})
        x = G.scheduler:add_noise(d:reshape(flat), n, tn):view(s)
      end)
    else
      local _
      _, x0 = G:forward(x, t, cond.ctx, extra)
    end
  end
  -- 1000 - argmin |grid - step| of the exit step and the next (0 after the last step), as the causal rollout
  local t_from, t_to = Rollout.exit_interval(G, steps, exit)
  return x0, t_from, t_to
end

return M
