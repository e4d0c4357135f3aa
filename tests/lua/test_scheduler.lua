-- test_scheduler.lua — sfwb.scheduler.flow_match against our PyTorch transcription (tests/ref/scheduler_ref.py):
-- grids for shift 5/8 and the class defaults, training weights, warping, add_noise and flow<->x0.
local sfwb = require "sfwb"
local T = require "sfwb.testing"

local dir = T.tmpdir("scheduler")
local fix = dir .. "/sched.lua"
assert(os.execute(string.format("cd tests/ref && %s scheduler_ref.py '%s'", T.python, fix)), "reference script failed")
local R = dofile(fix)

local function maxdiff(tensor, ref)
  local got = tensor:float():totable()
  T.eq(#got, #ref, "length")
  local m = 0
  for i = 1, #ref do m = math.max(m, math.abs(got[i] - ref[i])) end
  return m
end

local configs = {
  s5 = {shift = 5.0, sigma_min = 0.0, extra_one_step = true},
  s8 = {shift = 8.0, sigma_min = 0.0, extra_one_step = true},
  s3_default = {shift = 3.0},
}
for name, kw in pairs(configs) do
  T.case("grid " .. name, function()
    local s = sfwb.scheduler.flow_match(kw)
    T.eq(s.sigmas:dtype(), "f32")
    T.eq(s.timesteps:numel(), 1000)
    T.check(maxdiff(s.sigmas, R[name].sigmas) <= 1e-6, "sigmas differ")
    -- timesteps are ~1000: compare relative to 1000
    T.check(maxdiff(s.timesteps, R[name].timesteps) <= 1e-6 * 1000, "timesteps differ")
    T.check(maxdiff(s.training_weights, R[name].weights) <= 1e-6, "training weights differ")
  end)
end

T.case("warp {1000,750,500,250}", function()
  local w5 = sfwb.scheduler.flow_match(configs.s5):warp({1000, 750, 500, 250})
  T.eq(w5:dtype(), "f32")
  T.eq(maxdiff(w5, R.warp5), 0)
  local w = w5:totable()
  T.eq(w[1], 1000.0); T.eq(w[2], 937.5); T.eq(w[4], 625.0)
  T.eq(maxdiff(sfwb.scheduler.flow_match(configs.s8):warp({1000, 750, 500, 250}), R.warp8), 0)
  T.raises(function() sfwb.scheduler.flow_match(configs.s5):warp({1001}) end, "outside")
end)

T.case("add_noise, pred_x0, x0_to_flow, training_target, training_weight", function()
  local s = sfwb.scheduler.flow_match(configs.s5)
  local B = R.batch
  local function t(list) return sfwb.tensor(list, {dtype = "f32"}):view(B.shape) end
  local x0, eps, flow = t(B.x0), t(B.eps), t(B.flow)
  local ts = sfwb.tensor(B.t, {dtype = "f32"})
  local xt = s:add_noise(x0, eps, ts)
  T.eq(xt:dtype(), "f32")
  T.check(maxdiff(xt:reshape({xt:numel()}), B.xt) <= 1e-6, "add_noise differs")
  local xtr = t(B.xt)
  T.check(maxdiff(s:pred_x0(flow, xtr, ts):reshape({xt:numel()}), B.x0_pred) <= 1e-6, "pred_x0 differs")
  local fl = s:x0_to_flow(x0, xtr, ts):reshape({xt:numel()})
  local ref_scale = 0
  for _, v in ipairs(B.flow_from_x0) do ref_scale = math.max(ref_scale, math.abs(v)) end
  T.check(maxdiff(fl, B.flow_from_x0) <= 1e-6 * ref_scale, "x0_to_flow differs")
  T.check(maxdiff(s:training_target(x0, eps, ts):reshape({xt:numel()}), B.target) <= 1e-6, "target differs")
  T.check(maxdiff(s:training_weight(ts), B.tw) <= 1e-6, "training_weight differs")
  T.raises(function() s:add_noise(x0, eps, sfwb.tensor({1.0, 2.0}, {dtype = "f32"})) end, "timesteps")
end)

T.done()
