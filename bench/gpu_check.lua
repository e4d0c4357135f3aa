-- gpu_check.lua — the measuring half of `make gpu-check` (scripts/gpu_check.sh runs the device tests first
-- and hands their counts in). On cuda: real sizes (Wan2.1-1.3B, 21 frames of 832x480, bf16, random
-- weights in the real layouts built in memory: nothing is downloaded); on emu: the same code at tiny sizes.
--   sfwb bench/gpu_check.lua --device cuda:0 [--tests tests.json] [--out build/gpu_check.json]
--                            [--budget 420] [--tiny|--real] [--only attention,gemm,...]
--   sfwb bench/gpu_check.lua --probe DEV     -- says whether DEV is usable (exit 0) or why not (exit 2)
-- Stages run in order, each under pcall (a failure is recorded, the others still run), each skipped when
-- the wall-clock budget would not cover it; the JSON is rewritten after every stage, so a run cut short
-- still leaves what it measured.
GPU_CHECK_DIR = arg[0]:gsub("[^/]*$", "") .. "gpu_check/"
local json = require "sfwb.json"
local sizes = dofile(GPU_CHECK_DIR .. "sizes.lua")
local F = dofile(GPU_CHECK_DIR .. "flops.lua")
local timing = dofile(GPU_CHECK_DIR .. "timing.lua")
local report = dofile(GPU_CHECK_DIR .. "report.lua")

local opt = {budget = 420}
local i = 1
while i <= #arg do
  local a = arg[i]
  local function val() i = i + 1; if not arg[i] then error("gpu_check: " .. a .. " needs a value", 0) end return arg[i] end
  if a == "--device" then opt.device = val()
  elseif a == "--probe" then opt.probe = val()
  elseif a == "--tests" then opt.tests = val()
  elseif a == "--out" then opt.out = val()
  elseif a == "--budget" then opt.budget = tonumber(val()) or error("gpu_check: --budget takes seconds", 0)
  elseif a == "--only" then opt.only = {}; for w in val():gmatch("[^,]+") do opt.only[w] = true end
  elseif a == "--tiny" then opt.tiny = true
  elseif a == "--real" then opt.tiny = false
  else error("gpu_check: unknown argument '" .. a .. "'", 0) end
  i = i + 1
end

-- a clear word on a wrong or absent device, before anything is allocated
local function check_device(dev)
  local have = sfwb.devices()
  for _, d in ipairs(have) do if d == dev then return true end end
  local why
  if not dev:match("^cuda:%d+$") and not dev:match("^emu:%d+$") then
    why = "DEVICE must be cuda:N (a GPU) or emu:N (the emulated GPU)"
  elseif dev:match("^cuda") and sfwb.cuda.device_count("cuda") == 0 then
    why = "no CUDA GPU is visible to this program (either this build has no CUDA backend, as when nvcc was missing at "
          .. "configure time, or the driver sees no GPU: check nvidia-smi)"
  else
    why = "no such device index"
  end
  io.stderr:write(string.format("gpu_check: FAILED: device %s is not available: %s (devices here: %s)\n", dev, why,
                                table.concat(have, ", ")))
  return false
end

if opt.probe then
  if not check_device(opt.probe) then os.exit(2) end
  local p = sfwb.cuda.properties(opt.probe)
  print(string.format("gpu_check: device %s: %s, %.1f GB (%.1f GB free), %d multiprocessors, compute capability %s",
                      opt.probe, p.name, p.total_memory / 2 ^ 30, p.free_memory / 2 ^ 30, p.multiprocessors,
                      p.compute_capability))
  os.exit(0)
end

local dev = opt.device or "cuda:0"
if not check_device(dev) then os.exit(2) end
if opt.tiny == nil then opt.tiny = dev:match("^emu") ~= nil end
local s = opt.tiny and sizes.tiny or sizes.real
local out_path = opt.out or "build/gpu_check.json"
local props = sfwb.cuda.properties(dev)
local budget = timing.budget(opt.budget)

local R = {
  device = dev, name = props.name, tiny = opt.tiny, compute_capability = props.compute_capability,
  multiprocessors = props.multiprocessors, total_memory_gb = props.total_memory / 2 ^ 30,
  shared_memory_per_block = props.shared_memory_per_block,
  shared_memory_per_block_optin = props.shared_memory_per_block_optin,
  sizes = {dim = s.dim, heads = s.num_heads, head_dim = s.head_dim, layers = s.num_layers, frames = s.frames,
           frame_tokens = s.frame_tokens, latent = {s.lat_h, s.lat_w}, block = s.block, steps = #s.steps},
  tests = opt.tests and json.read(opt.tests) or {run = false, passed = 0, failed = 0},
  stages = {}, skipped = {}, errors = {},
  reference = F.reference, h100 = F.h100, assumed = F.assumed, budget_s = opt.budget,
  started = os.date("!%Y-%m-%dT%H:%M:%SZ"),
}
if props.shared_memory_per_block ~= 49152 then
  R.errors[#R.errors + 1] = string.format("static shared memory per block is %d bytes, the kernels assume 48 KB",
                                          props.shared_memory_per_block)
end

local function save()
  local peak = 0
  for _, st in pairs(R.stages) do peak = math.max(peak, st.peak_memory_gb or 0) end
  R.peak_memory_gb = peak
  R.total_s = budget.used()
  json.write(out_path, R)
end

-- stage(name, estimated seconds, fn): runs fn under pcall with the allocator's peak, merges its top-level
-- figures into R; skipped (and said so) when the budget left does not cover the estimate
local function stage(name, est, fn)
  if opt.only and not opt.only[name] then return end
  if budget.left() < est then
    R.skipped[#R.skipped + 1] = string.format("%s (needs ~%.0f s, %.0f s of the budget left)", name, est, budget.left())
    io.stderr:write("gpu_check: skipping " .. R.skipped[#R.skipped] .. "\n")
    save()
    return
  end
  io.stderr:write(string.format("gpu_check: %s ...\n", name))
  local t0 = sfwb.time()
  local ok, res, peak = pcall(timing.with_peak, dev, fn)
  local st = {seconds = sfwb.time() - t0, peak_memory_gb = peak}
  if ok then
    for k, v in pairs(res) do
      if type(v) == "number" then R[k] = v end
      st[k] = v
    end
  else
    st.error = tostring(res)
    R.errors[#R.errors + 1] = name .. ": " .. st.error
    io.stderr:write("gpu_check: " .. name .. " failed: " .. st.error .. "\n")
  end
  R.stages[name] = st
  collectgarbage()
  collectgarbage()
  pcall(sfwb.cuda.empty_cache, dev)
  save()
end

local dit = dofile(GPU_CHECK_DIR .. "dit.lua")
local gen = dofile(GPU_CHECK_DIR .. "generate.lua")
local models = {}

stage("attention", opt.tiny and 0 or 20, function() return dofile(GPU_CHECK_DIR .. "attention.lua")(s, dev) end)
stage("gemm", opt.tiny and 0 or 10, function() return dofile(GPU_CHECK_DIR .. "gemm.lua")(s, dev) end)
stage("streams", opt.tiny and 0 or 10, function() return dofile(GPU_CHECK_DIR .. "streams.lua")(s, dev) end)
stage("dit_forward", opt.tiny and 0 or 20, function()
  models.causal = dit.model(s, dev, true)
  return dit.forward(s, dev, models.causal)
end)
-- estimates from the measured forward: ~35 calls + the VAE per generation run (two runs), ~150 calls per DMD step
local call_s = (R.dit_forward_ms or 1000) / 1e3
stage("generation", opt.tiny and 0 or 2 * 35 * call_s + 60, function()
  models.causal = models.causal or dit.model(s, dev, true)
  return gen.run(s, dev, models.causal, gen.vae(s, dev), dit.context(s, dev))
end)
models.causal = nil
stage("dmd_step", opt.tiny and 0 or s.dmd_steps * 150 * call_s + 30, function()
  return dofile(GPU_CHECK_DIR .. "train.lua")(s, dev)
end)

save()
report.print(R)
io.stderr:write(string.format("gpu_check: wrote %s (%.0f s)\n", out_path, R.total_s))
print(string.format("gpu_check: wrote %s", out_path))
if #R.errors > 0 or (R.tests.failed or 0) > 0 then
  print(string.format("gpu_check: FAILED: %d stage error(s), %d failed device test(s)", #R.errors, R.tests.failed or 0))
  os.exit(1)
end
