-- test_wan_autocast.lua — upstream Wan's precision regime (spec 1.10: amp.autocast(bf16) over f32 weights,
-- with fp32 islands) against tests/ref/wan_ref.py's WanAutocast transcription, on bidirectional T2V/I2V
-- and the causal KV path, cpu and emu. A single bf16 rounding that flips (f32 sums in another order) moves
-- a few outputs by ~1 bf16 ulp, so the check is on the mean error, and it must beat the gap between the
-- two regimes by far: matching the f32 reference "within bf16 tolerance" would not prove the islands.
local T = require "sfwb.testing"

local BASE = T.tmpdir("wan_autocast")
assert(os.execute(string.format("%s tests/ref/wan_ref.py t2v_bidir,t2v_bidir_autocast,i2v_bidir,i2v_bidir_autocast,kv_b2,kv_b2_autocast '%s'",
  T.python, BASE)), "reference script failed")
local function ref(case)
  local dir = BASE .. "/" .. case
  return dir, dofile(dir .. "/manifest.lua"), sfwb.load(dir .. "/data.safetensors")
end

local function emu_device()
  for _, dv in ipairs(sfwb.devices()) do if dv:match("^emu") then return dv end end
end

-- mean |a - b| / mean |b|
local function mean_rel(a, b)
  a, b = a:float():cpu(), b:float():cpu()
  return (a - b):abs():mean():item() / b:abs():mean():item()
end

-- out matches the autocast reference ref_ac, and far better than the f32 reference ref32 (same inputs) does
local function check_regime(out, ref_ac, ref32, what)
  local gap = ref32 and mean_rel(ref_ac, ref32) or math.huge
  local err = mean_rel(out, ref_ac)
  T.eq(out:dtype(), "f32", what .. " output dtype")
  assert(gap > 1e-3, what .. ": the two references should differ (gap " .. gap .. ")")
  if not (err < 5e-4 and err < 0.2 * gap) then
    error(string.format("%s: mean relative error %.3g vs the autocast reference (regime gap %.3g)", what, err, gap), 2)
  end
  T.close(out, ref_ac, 5e-3, what .. " (max)")
end

local function opts_of(d, extra)
  local o = {clip_fea = d.clip_fea, y = d.y}
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

for _, case in ipairs({"t2v_bidir", "i2v_bidir"}) do
  T.case(case .. ": autocast bf16 follows upstream's fp32 islands; per call and per model; cpu and emu", function()
    local dir, man, d = ref(case)
    local _, _, da = ref(case .. "_autocast")
    local c = man.calls[1]
    local m = sfwb.wan.load(dir)
    T.eq(m.config.autocast, false)
    local out = m:forward(d[c.x], d[c.t], d.context, opts_of(d, {autocast = "bf16"}))
    check_regime(out, da[c.out], d[c.out], case .. " cpu")
    -- set at load: the same computation; autocast=false per call is the plain f32 model again
    local ma = sfwb.wan.load(dir, {autocast = "bf16"})
    T.eq(ma.config.autocast, "bf16")
    T.close(ma:forward(d[c.x], d[c.t], d.context, opts_of(d)), out, 0, "model-level autocast")
    T.close(ma:forward(d[c.x], d[c.t], d.context, opts_of(d, {autocast = false})), d[c.out], 1e-4, "autocast off")
    T.eq(ma:clone().config.autocast, "bf16")
    -- bf16 weights under autocast: the islands run in f32 from the bf16 weights, still close to the regime
    local mb = ma:clone():to("bf16")
    T.close(mb:forward(d[c.x], d[c.t], d.context, opts_of(d)), da[c.out], 3e-2, "bf16 weights under autocast")
    local emu = emu_device()
    if emu then
      local me = m:clone():to(emu)
      local o = {autocast = "bf16", clip_fea = d.clip_fea and d.clip_fea:to(emu), y = d.y and d.y:to(emu)}
      local oe = me:forward(d[c.x]:to(emu), d[c.t]:to(emu), d.context:to(emu), o)
      check_regime(oe:cpu(), da[c.out], d[c.out], case .. " emu")
    end
  end)
end

T.case("causal KV path under autocast (windowed cache with a sink): every call, cpu and emu", function()
  local dir, man, d = ref("kv_b2")
  local _, _, da = ref("kv_b2_autocast")
  local o = {causal = true, autocast = "bf16"}
  for k, v in pairs(man.causal) do o[k] = v end
  local m = sfwb.wan.load(dir, o)
  local emu = emu_device()
  local me = emu and m:clone():to(emu)
  local kc, ke = m:kv_cache{frames = man.kv_frames}, me and me:kv_cache{frames = man.kv_frames}
  -- each call's input derives from the previous output, so the two references see the same input only at
  -- the first call: the regime gap is measured there
  for i, c in ipairs(man.calls) do
    local r32 = i == 1 and d[c.out] or nil
    local a = m:forward(da[c.x], da[c.t], da.context, {kv_cache = kc, current_start_frame = c.start})
    check_regime(a, da[c.out], r32, "kv call " .. i)
    if me then
      local b = me:forward(da[c.x]:to(emu), da[c.t]:to(emu), da.context:to(emu), {kv_cache = ke, current_start_frame = c.start})
      check_regime(b:cpu(), da[c.out], r32, "emu kv call " .. i)
    end
  end
end)

T.case("bad autocast values are errors naming the option", function()
  local dir = ref("t2v_bidir")
  T.raises(function() sfwb.wan.load(dir, {autocast = "int8"}) end, "autocast")
  T.raises(function() sfwb.wan.load(dir, {autocast = 3}) end, "autocast")
  local m = sfwb.wan.load(dir)
  local _, man, d = ref("t2v_bidir")
  local c = man.calls[1]
  T.raises(function() m:forward(d[c.x], d[c.t], d.context, {autocast = "fp8"}) end, "autocast")
end)

T.done()
