-- test_autograd_emu_wan.lua — training through the whole Wan DiT on the emulated CUDA device: parameter and
-- input gradients of sum(out * R) on emu:0 against cpu, bidirectional, block-causal (the flash-attention
-- backward with per-frame key ranges, head dim 64) and bf16 parameters; then one AdamW step on both devices;
-- the KV-cache chunk; block checkpointing lowers the device allocator's peak.
local sfwb = require "sfwb"
local T = require "sfwb.testing"

local emu = T.test_device() -- emu:0, or $SFWB_TEST_DEVICE (cuda:0 under make gpu-check)

local cfg = {dim = 128, ffn_dim = 128, num_heads = 2, num_layers = 2, in_dim = 4, out_dim = 4, text_dim = 16,
             text_len = 8, freq_dim = 32}

local function rel(a, b)
  a, b = a:cpu():double(), b:cpu():double()
  return (a - b):abs():max():item() / math.max(b:abs():max():item(), 1e-30)
end

local function compare(what, causal, dtype, tol)
  sfwb.manual_seed(4)
  local m = sfwb.wan.new(cfg, causal and {causal = true, num_frame_per_block = 1} or nil)
  if dtype then m = m:to(dtype) end
  local me = m:clone():to(emu)
  local x, ctx, R = sfwb.randn({1, 4, 3, 4, 4}), sfwb.randn({1, 5, 16}), sfwb.randn({1, 4, 3, 4, 4})
  local t = causal and sfwb.tensor({{900.0, 500.0, 100.0}}) or sfwb.tensor({500.0})
  local res = {}
  for i, mm in ipairs({m, me}) do
    local dev = i == 1 and "cpu" or emu
    mm:requires_grad_(true)
    local xi = x:to(dev):clone():requires_grad_()
    local out = mm:forward(xi, t:to(dev), ctx:to(dev))
    ;(out:float() * R:to(dev)):sum():backward()
    res[i] = {out = out, x = xi.grad, params = mm:parameters(), model = mm}
  end
  local worst, wname = rel(res[2].out, res[1].out), "output"
  local e = rel(res[2].x, res[1].x)
  if e > worst then worst, wname = e, "input" end
  local n = 0
  for name, p in pairs(res[1].params) do
    local g, ge = p.grad, res[2].params[name].grad
    T.check(g ~= nil and ge ~= nil, "no gradient for " .. name)
    T.eq(ge:dtype(), g:dtype(), name)
    e = rel(ge, g)
    if e > worst then worst, wname = e, name end
    n = n + 1
  end
  print(("  %s: output, input and %d parameter gradients, worst relative difference %.2g (%s)"):format(what, n, worst, wname))
  T.check(worst < tol, ("%s: %s differs by %.3g"):format(what, wname, worst))
  -- one optimizer step on each device from these gradients: the same moments (the parameters themselves move
  -- by about lr * sign(g) on a first step, so a gradient at round-off level may flip them: not compared)
  local o1, o2 = sfwb.optim.adamw(res[1].model, {lr = 1e-2}), sfwb.optim.adamw(res[2].model, {lr = 1e-2})
  o1:step()
  o2:step()
  local mw = 0
  for i, st in pairs(o1.state) do
    mw = math.max(mw, rel(o2.state[i].exp_avg, st.exp_avg), rel(o2.state[i].exp_avg_sq, st.exp_avg_sq))
  end
  T.check(mw < 3 * tol, ("%s: AdamW moments differ by %.3g"):format(what, mw))
end

T.case("bidirectional DiT: emu gradients = cpu gradients", function()
  if not emu then print("  (skipped: no emu device)") return end
  compare("bidir f32", false, nil, 1e-4)
end)

T.case("block-causal DiT: emu gradients = cpu gradients", function()
  if not emu then print("  (skipped: no emu device)") return end
  compare("causal f32", true, nil, 1e-4)
end)

T.case("bf16 block-causal DiT: emu gradients within bf16 tolerance of cpu's", function()
  if not emu then print("  (skipped: no emu device)") return end
  compare("causal bf16", true, "bf16", 5e-2)
end)

T.case("KV-cache path on emu: the chunk's input gradient = cpu's (keys from a detached cache)", function()
  if not emu then print("  (skipped: no emu device)") return end
  sfwb.manual_seed(9)
  local m = sfwb.wan.new(cfg, {causal = true, num_frame_per_block = 1})
  local me = m:clone():to(emu)
  local x1, x2, ctx, R = sfwb.randn({1, 4, 1, 4, 4}), sfwb.randn({1, 4, 1, 4, 4}), sfwb.randn({1, 5, 16}), sfwb.randn({1, 4, 1, 4, 4})
  local g = {}
  for i, mm in ipairs({m, me}) do
    local dev = i == 1 and "cpu" or emu
    local kv = mm:kv_cache{batch = 1, frames = 2}
    sfwb.no_grad(function() mm:forward(x1:to(dev), sfwb.tensor({{800.0}}):to(dev), ctx:to(dev), {kv_cache = kv, current_start_frame = 0}) end)
    local a = x2:to(dev):clone():requires_grad_()
    local out = mm:forward(a, sfwb.tensor({{400.0}}):to(dev), ctx:to(dev), {kv_cache = kv, current_start_frame = 1})
    ;(out * R:to(dev)):sum():backward()
    g[i] = a.grad
  end
  local e = rel(g[2], g[1])
  print(("  KV chunk input gradient: emu vs cpu %.2g"):format(e))
  T.check(e < 1e-4, "KV path gradient differs by " .. e)
end)

T.case("checkpointing on emu: identical gradients, lower peak of the device allocator", function()
  if not emu then print("  (skipped: no emu device)") return end
  sfwb.manual_seed(3)
  local c = {dim = 64, ffn_dim = 256, num_heads = 4, num_layers = 4, in_dim = 4, out_dim = 4, text_dim = 16,
             text_len = 8, freq_dim = 32}
  local m = sfwb.wan.new(c):to(emu)
  m:requires_grad_(true)
  local x, ctx, R = sfwb.randn({1, 4, 4, 12, 12}):to(emu), sfwb.randn({1, 5, 16}):to(emu), sfwb.randn({1, 4, 4, 12, 12}):to(emu)
  local t = sfwb.tensor({500.0}):to(emu)
  local peak, grads = {}, {}
  for _, ck in ipairs({false, true}) do
    for _, p in pairs(m:parameters()) do p.grad = nil end
    collectgarbage()
    collectgarbage()
    sfwb.cuda.synchronize(emu)
    sfwb.cuda.reset_peak_memory_stats(emu)
    local base = sfwb.cuda.memory(emu).allocated
    local out = m:forward(x, t, ctx, {checkpoint = ck})
    ;(out * R):sum():backward()
    out = nil
    peak[ck] = sfwb.cuda.memory(emu).peak - base
    grads[ck] = {}
    for name, p in pairs(m:parameters()) do grads[ck][name] = p.grad end
  end
  for name, g in pairs(grads[false]) do
    T.eq((grads[true][name] - g):abs():max():item(), 0.0, "checkpointed gradient of " .. name)
  end
  print(("  emu: peak %.2f MB without, %.2f MB with checkpointing (%.2fx)"):format(peak[false] / 2^20, peak[true] / 2^20,
    peak[true] / peak[false]))
  T.check(peak[true] < 0.7 * peak[false], "checkpointing did not lower the device peak enough")
end)

T.done()
