-- test_pipeline.lua — sfwb.pipeline.causal/bidirectional against our PyTorch transcription
-- (tests/ref/pipeline_ref.py driving the tiny DiT of wan_ref.py): same noise, same step-noise draws,
-- identical latents to f32 round-off on cpu and emu; rollout stepping, early stop, captures.
local sfwb = require "sfwb"
local T = require "sfwb.testing"

local function have(f) local ok, v = pcall(function() return f() end) return ok and v end
if not (have(function() return sfwb.wan and sfwb.wan.load end) and sfwb.load and sfwb.scheduler) then
  print("SKIP: needs sfwb.wan, sfwb.load and sfwb.scheduler on this build")
  T.done()
end

local TOL = 2e-5
local root = T.tmpdir("pipeline")
local cache = {}
-- every reference case in one Python process (torch imports once)
local cmd = string.format("%s tests/ref/pipeline_ref.py all '%s'", T.python, root)
assert(os.execute(cmd), "reference failed: " .. cmd)
local function case(name)
  if cache[name] then return table.unpack(cache[name]) end
  local dir = root .. "/" .. name
  local man = dofile(dir .. "/manifest.lua")
  local D = sfwb.load(dir .. "/data.safetensors")
  cache[name] = {dir, man, D}
  return dir, man, D
end

local function drawer(D)
  local i = 0
  return function(shape)
    i = i + 1
    local t = D["step_noise_" .. i]
    assert(t, "the pipeline drew more step noise than the reference (" .. i .. ")")
    return t
  end, function() return i end
end

local function load_model(dir, man, device)
  local m = sfwb.wan.load(dir, {causal = not man.bidir, num_frame_per_block = man.nfpb or 1,
                                independent_first_frame = man.indep or false,
                                local_attn_size = man["local"] or -1, sink_size = man.sink or 0})
  if device and device ~= "cpu" then m:to(device) end
  return m
end

local function causal_pipe(m, man)
  return sfwb.pipeline.causal{generator = m, denoising_step_list = man.step_list, warp_denoising_step = man.warp,
                              num_frame_per_block = man.nfpb, independent_first_frame = man.indep,
                              context_noise = man.context_noise, timestep_shift = 5.0,
                              local_attn_size = man["local"], sink_size = man.sink}
end

local function run_causal(name, device)
  local dir, man, D = case(name)
  local m = load_model(dir, man, device)
  local p = causal_pipe(m, man)
  local draw, count = drawer(D)
  local r = p:generate{noise = D.noise:to(device or "cpu"), prompt_embeds = D.context, step_noise = draw,
                       initial_latent = D.initial_latent, y = D.y, clip_fea = D.clip_fea}
  T.eq(count(), man.draws, "step-noise draws")
  local err = T.close(r.latents:cpu(), D.latents, TOL, name .. " latents")
  print(string.format("  %s on %s: max relative error %.3g", name, device or "cpu", err))
  return p, r, man
end

for _, name in ipairs({"t2v", "indep", "window", "nowarp", "extend", "i2v"}) do
  T.case("causal " .. name .. " matches the reference (cpu)", function()
    local p, r, man = run_causal(name)
    local steps = p.denoising_steps:totable()
    for i, v in ipairs(man.steps) do T.near(steps[i], v, 1e-7, "step " .. i) end
    T.eq(r.latents:dtype(), "f32")
  end)
end

T.case("a long video: the pipeline windows the cache of a model loaded without a window", function()
  local dir, man, D = case("window")
  local m = sfwb.wan.load(dir, {causal = true, num_frame_per_block = 3})   -- global attention as loaded
  local p = causal_pipe(m, man)                                          -- local_attn_size 5, sink 1
  local r = p:generate{noise = D.noise, prompt_embeds = D.context, step_noise = drawer(D)}
  T.close(r.latents, D.latents, TOL, "windowed latents")
end)

T.case("causal t2v matches the reference (emu)", function()
  local emu = T.test_device() -- emu:0, or $SFWB_TEST_DEVICE
  if not emu then print("  (no emu device in this build: skipped)") return end
  local ok, err = pcall(run_causal, "t2v", emu)
  if not ok and tostring(err):find("emu backend has no", 1, true) then
    print("  (skipped: " .. tostring(err):match("[^\n]*has no[^\n]*") .. ")")
    return
  end
  if not ok then error(err, 0) end
end)

T.case("bf16 weights: the pipeline runs in bf16 and stays near the f32 reference", function()
  local dir, man, D = case("t2v")
  local m = sfwb.wan.load(dir, {causal = true, num_frame_per_block = 3, dtype = "bf16"})
  local p = causal_pipe(m, man)
  T.eq(p.dtype, "bf16")
  local r = p:generate{noise = D.noise:bf16(), prompt_embeds = D.context, step_noise = drawer(D)}
  T.eq(r.latents:dtype(), "bf16")
  local err = T.close(r.latents:float(), D.latents, 5e-2, "bf16 latents")
  print(string.format("  bf16 pipeline vs f32 reference: max relative error %.3g", err))
end)

T.case("warped steps and chunk layout", function()
  local dir, man = case("indep")
  local m = load_model(dir, man)
  local p = causal_pipe(m, man)
  local s = p.denoising_steps:totable()
  T.eq(s[1], 1000.0); T.eq(s[2], 937.5); T.eq(s[4], 625.0)
  T.eq(table.concat(p:chunk_sizes(7), ","), "1,3,3")
  T.eq(table.concat(p:chunk_sizes(3, 1), ","), "1,3")
  T.raises(function() p:blocks(6, 0) end, "multiple")
end)

T.case("rollout steps chunk by chunk, tags calls, stops early", function()
  local dir, man, D = case("t2v")
  local m = load_model(dir, man)
  local p = causal_pipe(m, man)
  local draw = drawer(D)
  local seen = {}
  for chunk in p:rollout{noise = D.noise, prompt_embeds = D.context, step_noise = draw} do
    seen[#seen + 1] = chunk
    T.close(chunk.latents, D["chunk_" .. chunk.index], TOL, "chunk " .. chunk.index)
    T.eq(chunk.start, (chunk.index - 1) * 3)
    T.eq(chunk.frames, 3)
  end
  T.eq(#seen, 2)
  -- early stop: break after the first chunk frees the caches, the partial latents stay
  local ro = p:rollout{noise = D.noise, prompt_embeds = D.context, step_noise = drawer(D)}
  for chunk in ro do
    if chunk.index == 1 then break end
  end
  ro:close()
  T.eq(ro.kv, nil, "cache freed")
  T.close(ro:latents(), D.chunk_1, TOL, "partial latents")
  T.eq(ro:next(), nil, "a closed rollout yields nothing")
end)

T.case("on_block callback and same latents with or without captures", function()
  local dir, man, D = case("t2v")
  local m = load_model(dir, man)
  local p = causal_pipe(m, man)
  local calls = {}
  local r1 = p:generate{noise = D.noise, prompt_embeds = D.context, step_noise = drawer(D),
                        on_block = function(i, lat) calls[#calls + 1] = {i, lat:size(2)} end}
  T.eq(#calls, 2); T.eq(calls[2][1], 2); T.eq(calls[2][2], 3)
  if m.capture_attention then
    local cap = m:capture_attention{layers = "all", attn = "self", what = "logits", reduce = "frame",
                                    where = {steps = {1}, passes = {"denoise"}, chunks = "all"}}
    local r2 = p:generate{noise = D.noise, prompt_embeds = D.context, step_noise = drawer(D)}
    T.eq((r2.latents - r1.latents):abs():max():item(), 0, "captures change nothing")
    local A = cap:result{layer = 0, step = 1, pass = "denoise"}
    T.eq(A:dim(), 3)
    cap:remove()
  end
end)

T.case("seeded runs repeat; step_noise shape is checked", function()
  local dir, man, D = case("t2v")
  local m = load_model(dir, man)
  local p = causal_pipe(m, man)
  local a = p:generate{prompt_embeds = D.context:narrow(1, 1, 1), num_frames = 3, latent_size = {4, 6}, seed = 7}
  local b = p:generate{prompt_embeds = D.context:narrow(1, 1, 1), num_frames = 3, latent_size = {4, 6}, seed = 7}
  T.eq((a.latents - b.latents):abs():max():item(), 0)
  T.raises(function()
    p:generate{noise = D.noise, prompt_embeds = D.context, step_noise = function() return sfwb.zeros({1}) end}
  end, "step_noise")
  -- draws shaped as the reference's randn_like(x0.flatten(0, 1)) are accepted
  local i = 0
  local r = p:generate{noise = D.noise, prompt_embeds = D.context, step_noise = function(shape)
    i = i + 1
    local t = D["step_noise_" .. i]
    return t:reshape({shape[1] * shape[2], shape[3], shape[4], shape[5]})
  end}
  T.close(r.latents, D.latents, TOL, "flattened draws")
  T.raises(function() p:generate{noise = D.noise} end, "prompt")
end)

T.case("bidirectional matches the reference (3 evaluations, and all_steps)", function()
  local dir, man, D = case("bidir")
  local m = load_model(dir, man)
  local p = sfwb.pipeline.bidirectional{generator = m, denoising_step_list = man.step_list, warp_denoising_step = true}
  local r = p:generate{noise = D.noise, prompt_embeds = D.context, step_noise = drawer(D)}
  T.close(r.latents, D.latents, TOL, "bidirectional latents")
  local i = man.draws_first
  local pa = sfwb.pipeline.bidirectional{generator = m, denoising_step_list = man.step_list, all_steps = true}
  local ra = pa:generate{noise = D.noise, prompt_embeds = D.context,
                         step_noise = function() i = i + 1 return D["step_noise_" .. i] end}
  T.close(ra.latents, D.latents_all, TOL, "all_steps latents")
end)

T.done()
