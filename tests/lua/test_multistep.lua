-- test_multistep.lua — sfwb.scheduler.unipc / dpmpp and sfwb.pipeline.causal_diffusion /
-- bidirectional_diffusion against our transcription (tests/ref/multistep_ref.py): int64 timesteps exactly,
-- float32 sigmas, every step of a fixed-flow sequence, and a tiny DiT's guided latents and trajectory
-- (<= 1e-5) on cpu and emu:0.
local sfwb = require "sfwb"
local T = require "sfwb.testing"

if not T.have_torch then print("SKIP: needs python3-torch"); T.done() end

local root = T.tmpdir("multistep")
assert(os.execute(string.format("%s tests/ref/multistep_ref.py '%s'", T.python, root)), "reference failed")
local META = dofile(root .. "/sched.lua")
local ST = sfwb.load(root .. "/sched.safetensors")

local function mk(kind, shift)
  if kind == "unipc" then return sfwb.scheduler.unipc{shift = shift} end
  return sfwb.scheduler.dpmpp{shift = shift}
end

local keys = {}
for k in pairs(META) do keys[#keys + 1] = k end
table.sort(keys)
for _, key in ipairs(keys) do
  local m = META[key]
  T.case("scheduler " .. key .. ": timesteps, sigmas, steps", function()
    local s = mk(m.kind, m.shift)
    s:set_timesteps(m.n)
    T.eq(s.timesteps:dtype(), "i64")
    local ts = s.timesteps:totable()
    T.eq(#ts, #m.timesteps, "number of timesteps")
    for i, v in ipairs(m.timesteps) do T.eq(ts[i], v, "timestep " .. i) end
    T.close(s.sigmas, ST[key .. ".sigmas"], 1e-7, "sigmas")
    local x = ST[key .. ".x"]
    local flows, outs = ST[key .. ".flows"], ST[key .. ".outs"]
    for i, t in ipairs(ts) do
      x = s:step(flows[i], t, x)
      T.close(x, outs[i], 1e-5, "step " .. i)
    end
    T.raises(function() s:step(flows[1], ts[1], x) end, "all")
  end)
end

T.case("scheduler: shift applied once, bad input named", function()
  local a = sfwb.scheduler.unipc{shift = 5.0}; a:set_timesteps(50)
  local b = sfwb.scheduler.unipc{shift = 1.0}; b:set_timesteps(50, 5.0)
  T.eq(a.timesteps:totable()[2], b.timesteps:totable()[2])
  T.raises(function() a:set_timesteps(0) end, "positive integer")
  local c = sfwb.scheduler.dpmpp{shift = 5.0}
  T.raises(function() c:step(sfwb.zeros({1}), 999, sfwb.zeros({1})) end, "set_timesteps")
  c:set_timesteps(10)
  T.raises(function() c:step(sfwb.zeros({1}), 998, sfwb.zeros({1})) end, "not one of")
end)

local function run_case(name, device)
  local dir = root .. "/" .. name
  local man = dofile(dir .. "/manifest.lua")
  local D = sfwb.load(dir .. "/data.safetensors")
  local m = sfwb.wan.load(dir, {causal = man.causal, num_frame_per_block = man.nfpb or 1,
                                independent_first_frame = man.indep or false})
  if device ~= "cpu" then m:to(device) end
  local ctor = man.causal and sfwb.pipeline.causal_diffusion or sfwb.pipeline.bidirectional_diffusion
  local p = ctor{generator = m, num_inference_steps = man.n, guidance_scale = man.g, timestep_shift = man.shift,
                 solver = man.kind, num_frame_per_block = man.nfpb, independent_first_frame = man.indep}
  local r = p:generate{noise = D.noise:to(device), prompt_embeds = D.context, negative_embeds = D.negative,
                       trajectory_steps = man.traj}
  local e = T.close(r.latents:cpu(), D.latents, 1e-5, name .. " latents")
  T.close(r.trajectory:cpu(), D.trajectory, 1e-5, name .. " trajectory")
  T.eq(#r.trajectory:shape(), 6)
  print(string.format("  %s on %s: max relative error %.3g", name, device, e))
end

for _, name in ipairs({"causal_unipc", "causal_dpm", "bidir_unipc", "bidir_dpm", "bidir_euler", "causal_euler"}) do
  T.case("pipeline " .. name .. " (cpu)", function() run_case(name, "cpu") end)
end
local dev = T.test_device() -- emu:0, or $SFWB_TEST_DEVICE
if dev then
  T.case("pipeline causal_unipc (" .. dev .. ")", function() run_case("causal_unipc", dev) end)
  T.case("pipeline bidir_dpm (" .. dev .. ")", function() run_case("bidir_dpm", dev) end)
end

T.case("pipeline options are checked", function()
  local m = sfwb.wan.new({model_type = "t2v", dim = 64, ffn_dim = 128, num_heads = 2, num_layers = 1, in_dim = 16,
                          out_dim = 16, text_dim = 32, text_len = 16, freq_dim = 256, eps = 1e-6})
  T.raises(function() sfwb.pipeline.bidirectional_diffusion{generator = m, solver = "heun"} end, "solver")
  local p = sfwb.pipeline.bidirectional_diffusion{generator = m, num_inference_steps = 2}
  T.eq(p.timestep_shift, 8.0)
  T.raises(function() p:generate{prompt_embeds = sfwb.zeros({1, 4, 32}), latent_size = {2, 2}, num_frames = 1} end,
           "negative")
  T.raises(function()
    p:generate{prompt_embeds = sfwb.zeros({1, 4, 32}), negative_embeds = sfwb.zeros({1, 4, 32}),
               latent_size = {2, 2}, num_frames = 1, trajectory_steps = {5}}
  end, "trajectory_steps")
end)

T.done()
