-- test_longlive.lua — LongLive v1.0 against our PyTorch transcription (tests/ref/longlive_ref.py): the
-- interactive pipeline with prompt switches and KV recache (global_sink false/true, windowed and global
-- attention, protected sink slots, a switch before the window fills, one-frame blocks), and PEFT LoRA
-- (merged and unmerged forward, adapter gradients, LongLive's checkpoint layout), on cpu and emu.
local sfwb = require "sfwb"
local T = require "sfwb.testing"

local TOL = 1e-5
local root = T.tmpdir("longlive")
local cmd = string.format("%s tests/ref/longlive_ref.py all '%s'", T.python, root)
assert(os.execute(cmd), "reference failed: " .. cmd)

local function case(name)
  local dir = root .. "/" .. name
  return dir, dofile(dir .. "/manifest.lua"), sfwb.load(dir .. "/data.safetensors")
end

local function emu_device()
  for _, d in ipairs(sfwb.devices()) do if d:match("^emu") then return d end end
end

local function drawer(D)
  local i = 0
  return function()
    i = i + 1
    return assert(D["step_noise_" .. i], "more step-noise draws than the reference")
  end, function() return i end
end

local function interactive(name, device, extra)
  local dir, man, D = case(name)
  local m = sfwb.wan.load(dir, {causal = true, num_frame_per_block = man.nfpb})
  if device ~= "cpu" then m:to(device) end
  local p = sfwb.pipeline.interactive{generator = m, denoising_step_list = man.step_list, warp_denoising_step = true,
                                      num_frame_per_block = man.nfpb, context_noise = man.context_noise,
                                      local_attn_size = man["local"], sink_size = man.sink, global_sink = man.gs}
  local embeds = {}
  for i = 1, #man.switches + 1 do embeds[i] = D["context_" .. i] end
  local draw, count = drawer(D)
  local o = {noise = D.noise:to(device), prompt_embeds_list = embeds, switch_frame_indices = man.switches, step_noise = draw}
  for k, v in pairs(extra or {}) do o[k] = v end
  local r = p:generate(o)
  T.eq(count(), man.draws, "step-noise draws")
  T.eq(#r.recaches, #man.switches, "switches")
  for i, rc in ipairs(man.recaches) do
    T.eq(r.recaches[i].frame, rc[1], "switch frame")
    T.eq(r.recaches[i].start, rc[2], "recache start")
    T.eq(r.recaches[i].frames, rc[3], "recache frames")
  end
  local err = T.close(r.latents:cpu(), D.latents, TOL, name .. " latents")
  print(string.format("  %s on %s: max relative error %.3g", name, device, err))
  return r
end

for _, name in ipairs({"window_gs0", "window_gs1", "global_gs0", "global_gs1", "global_nosink", "sink6", "nfpb1"}) do
  T.case("interactive " .. name .. " matches LongLive (cpu)", function() interactive("ll_" .. name, "cpu") end)
end

T.case("interactive matches LongLive (emu)", function()
  local emu = emu_device()
  if not emu then print("  (no emu device in this build: skipped)") return end
  interactive("ll_window_gs0", emu)
  interactive("ll_global_gs1", emu)
end)

T.case("interactive: progress per segment, misuse errors", function()
  local lines = {}
  interactive("ll_window_gs1", "cpu", {progress = function(line) lines[#lines + 1] = line end})
  local seg = 0
  for _, l in ipairs(lines) do if l:find("^segment") then seg = seg + 1 end end
  T.eq(seg, 2, "segment lines")
  local dir, man, D = case("ll_window_gs1")
  local m = sfwb.wan.load(dir, {causal = true, num_frame_per_block = 3})
  local p = sfwb.pipeline.interactive{generator = m, local_attn_size = 6, sink_size = 3}
  T.raises(function() p:generate{noise = D.noise, prompt_embeds_list = {D.context_1, D.context_2}} end,
           "switch_frame_indices")
  T.raises(function() p:generate{noise = D.noise} end, "prompts_list")
end)

T.case("a long video: 240 latent frames with switches, no NaN, memory flat after the window fills", function()
  local dir, man, D = case("ll_window_gs0")
  local m = sfwb.wan.load(dir, {causal = true, num_frame_per_block = 3})
  local p = sfwb.pipeline.interactive{generator = m, denoising_step_list = {1000, 500}, num_frame_per_block = 3,
                                      local_attn_size = 6, sink_size = 3, global_sink = true}
  local procmem = require "sfwb.procmem"
  local rss = {}
  local ctx = {D.context_1:narrow(1, 1, 1), D.context_2:narrow(1, 1, 1), D.context_3:narrow(1, 1, 1)}
  sfwb.manual_seed(3)
  local r = p:generate{prompt_embeds_list = {ctx[1], ctx[2], ctx[3], ctx[1]}, switch_frame_indices = {40, 120, 200},
                       num_frames = 240, latent_size = {4, 6},
                       on_block = function(i) collectgarbage(); rss[i] = procmem.status("VmRSS") end}
  T.eq(r.latents:size(2), 240)
  T.eq(#r.recaches, 3)
  local bad = (r.latents - r.latents):abs():sum():item()
  T.check(bad == 0, "NaN or Inf in the latents")
  local kvc = p.generator:kv_cache{batch = 1, frames = 6, local_attn_size = 6, sink_size = 3, policy = "longlive"}
  T.eq(kvc.frames, 6)
  if rss[10] and rss[80] then
    local grow = rss[80] - rss[10]
    print(string.format("  RSS block 10 %.1f MiB, block 80 %.1f MiB", rss[10] / 2 ^ 20, rss[80] / 2 ^ 20))
    T.check(grow < 8 * 2 ^ 20, string.format("memory grew %.1f MiB after the window filled", grow / 2 ^ 20))
  end
end)

---------------------------------------------------------------------------------------------------
-- LoRA
local function lora_inputs(D, device)
  return D.x:to(device), D.t:to(device), D.context:to(device)
end

local function lora_cases(device)
  local dir, man, D = case("lora")
  local x, t, ctx = lora_inputs(D, device)
  -- merged (the default)
  local m = sfwb.wan.load(dir)
  if device ~= "cpu" then m:to(device) end
  local _, info = m:load_lora(dir .. "/lora.pt", {rank = man.rank, alpha = man.alpha})
  T.eq(info.layers, 2 * #man.linears)
  T.eq(info.scale, man.alpha / man.rank)
  local err = T.close(m:forward(x, t, ctx):cpu(), D.out_merged, TOL, "merged")
  print(string.format("  LoRA merged on %s: max relative error %.3g", device, err))
  -- kept separate, from the raw PEFT dict
  local u = sfwb.wan.load(dir)
  if device ~= "cpu" then u:to(device) end
  u:load_lora(dir .. "/lora_raw.pt", {alpha = man.alpha, merge = false})
  T.check(u:parameters()["blocks.0.self_attn.q.lora_A.weight"] ~= nil, "adapters kept")
  err = T.close(u:forward(x, t, ctx):cpu(), D.out_unmerged, TOL, "unmerged")
  print(string.format("  LoRA unmerged on %s: max relative error %.3g", device, err))
  -- gradients reach the adapters only
  u:requires_grad_(false)
  for _, a in pairs(u:lora_parameters()) do a:requires_grad_(true) end
  local out = u:forward(x, t, ctx)
  local loss = (out * D.G:to(device)):sum()
  loss:backward()
  local worst = 0
  for k, a in pairs(u:lora_parameters()) do
    worst = math.max(worst, T.close(a.grad:cpu(), D["grad." .. k], 1e-4, "grad " .. k))
  end
  print(string.format("  LoRA adapter gradients on %s: max relative error %.3g", device, worst))
  T.eq(u:parameters()["blocks.0.ffn.0.weight"].grad, nil, "a frozen base weight has no gradient")
  -- merge_lora equals the merged load
  u:merge_lora()
  T.eq(u:parameters()["blocks.0.self_attn.q.lora_A.weight"], nil, "adapters dropped")
  T.close(u:forward(x, t, ctx):cpu(), D.out_merged, TOL, "merge_lora")
end

T.case("LoRA merged/unmerged and adapter gradients match PEFT (cpu)", function() lora_cases("cpu") end)
T.case("LoRA merged/unmerged and adapter gradients match PEFT (emu)", function()
  local emu = emu_device()
  if not emu then print("  (no emu device in this build: skipped)") return end
  lora_cases(emu)
end)

T.case("m:lora{} trains adapters only, saves LongLive's layout, reloads", function()
  local dir, man, D = case("lora")
  local x, t, ctx = lora_inputs(D, "cpu")
  local m = sfwb.wan.load(dir)
  local base = m:forward(x, t, ctx)
  T.close(base, D.out_base, TOL, "base")
  sfwb.manual_seed(1)
  m:lora{rank = 2, alpha = 4, targets = {"self_attn%.[qv]$", "ffn%.0$"}}
  local lp = m:lora_parameters()
  local n = 0
  for _ in pairs(lp) do n = n + 1 end
  T.eq(n, 2 * 3 * 2, "adapters on q, v, ffn.0 of 2 blocks")
  T.eq(m:parameters()["blocks.0.self_attn.q.weight"].requires_grad, false)
  T.eq(lp["blocks.0.self_attn.q.lora_A.weight"].requires_grad, true)
  local A = lp["blocks.1.ffn.0.lora_A.weight"]
  T.eq(table.concat(A:shape(), "x"), "2x64")
  T.check(A:abs():max():item() <= 1 / math.sqrt(64) + 1e-7, "kaiming-uniform bound")
  -- B = 0: the adapted model equals the base until trained
  T.eq((m:forward(x, t, ctx) - base):abs():max():item(), 0)
  local opt = sfwb.optim.adamw(lp, {lr = 1e-2})
  local loss = (m:forward(x, t, ctx) * D.G):sum()
  loss:backward()
  opt:step()
  local trained = m:forward(x, t, ctx)
  T.check((trained - base):abs():max():item() > 0, "a step changed the output")
  local path = root .. "/trained_lora.pt"
  m:save_lora(path, {extra = {step = 1}})
  local sd = sfwb.load(path)
  T.check(sd["generator_lora.base_model.model.blocks.0.self_attn.q.lora_A.weight"] ~= nil, "PEFT key names")
  local m2 = sfwb.wan.load(dir)
  m2:load_lora(path, {alpha = 4, merge = false})
  T.close(m2:forward(x, t, ctx), trained, 1e-6, "reloaded adapters")
  local m3 = m:clone()
  T.close(m3:forward(x, t, ctx), trained, 1e-6, "clone keeps adapters")
  T.raises(function() m:lora{rank = 2} end, "merge_lora")
  T.raises(function() sfwb.wan.load(dir):lora{rank = 2, dropout = 0.1} end, "dropout")
  T.raises(function() sfwb.wan.load(dir):load_lora(path, {rank = 8}) end, "rank")
  T.raises(function() sfwb.wan.load(dir):load_lora({foo = D.x}) end, "no LoRA")
end)

T.done()
