-- test_autograd_wan.lua — the Wan DiT is trainable: parameter gradients of sum(out * R) match torch
-- autograd on a tiny model (bidirectional and block-causal), and a tiny DiT overfits a fixed batch.
local sfwb = require "sfwb"
local T = require "sfwb.testing"

local function ref(case)
  local dir = T.tmpdir("wangrad-" .. case)
  local ok = os.execute(string.format("%s tests/ref/wan_grad_ref.py %s '%s'", T.python, case, dir))
  assert(ok, "reference script failed for " .. case)
  return dir, dofile(dir .. "/manifest.lua"), sfwb.load(dir .. "/data.safetensors")
end

local function grads_match(case)
  local dir, man, d = ref(case)
  local opts = {}
  if man.causal then
    opts.causal = true
    for k, v in pairs(man.causal) do opts[k] = v end
  end
  local m = sfwb.wan.load(dir, opts)
  m:requires_grad_(true)
  local out = m:forward(d.x, d.t, d.context)
  T.close(out, d.out, 1e-4, case .. " output")
  local loss = (out * d.R):sum()
  loss:backward()
  local n, worst, wname = 0, 0, ""
  for name, p in pairs(m:parameters()) do
    local g, r = p.grad, d["g." .. name]
    T.check(g ~= nil, "no gradient for " .. name)
    local e = (g:float() - r):abs():max():item() / math.max(r:abs():max():item(), 1e-30)
    if e > worst then worst, wname = e, name end
    n = n + 1
  end
  print(("  %s: %d parameter gradients, worst relative error %.2g (%s)"):format(case, n, worst, wname))
  T.check(worst < 1e-4, ("%s: gradient of %s differs by %.3g"):format(case, wname, worst))
  os.execute("rm -rf '" .. dir .. "'")
end

T.case("bidirectional DiT parameter gradients match torch", function() grads_match("bidir") end)
T.case("block-causal DiT parameter gradients match torch", function() grads_match("causal") end)

T.case("a tiny DiT overfits a fixed batch (loss falls >= 100x)", function()
  sfwb.manual_seed(3)
  local cfg = {dim = 32, ffn_dim = 64, num_heads = 2, num_layers = 2, in_dim = 4, out_dim = 4, text_dim = 16,
               text_len = 8, freq_dim = 32}
  local m = sfwb.wan.new(cfg)
  m:requires_grad_(true)
  local x, t, ctx = sfwb.randn({1, 4, 3, 4, 4}), sfwb.tensor({500.0}), sfwb.randn({1, 5, 16})
  local y = sfwb.randn({1, 4, 3, 4, 4})
  local opt = sfwb.optim.adamw(m:parameters(), {lr = 3e-3, weight_decay = 0})
  local first, last
  for it = 1, 60 do
    local loss = ((m:forward(x, t, ctx) - y) ^ 2):mean()
    opt:zero_grad()
    loss:backward()
    sfwb.clip_grad_norm(m, 10.0)
    opt:step()
    last = loss:item()
    first = first or last
  end
  print(("  loss %.4g -> %.4g (%.0fx) in 60 AdamW steps"):format(first, last, first / last))
  T.check(first / last >= 100, ("loss fell only %.1fx"):format(first / last))
end)

T.case("forward {checkpoint=true}: identical gradients, lower peak memory", function()
  sfwb.manual_seed(3)
  local cfg = {dim = 64, ffn_dim = 256, num_heads = 4, num_layers = 6, in_dim = 4, out_dim = 4, text_dim = 16,
               text_len = 8, freq_dim = 32}
  for _, causal in ipairs({false, true}) do
    local m = sfwb.wan.new(cfg, causal and {causal = true, num_frame_per_block = 1} or nil)
    m:requires_grad_(true)
    local x, ctx = sfwb.randn({1, 4, 4, 16, 16}), sfwb.randn({1, 5, 16})
    local t = causal and sfwb.tensor({{900.0, 600.0, 300.0, 100.0}}) or sfwb.tensor({500.0})
    local R = sfwb.randn({1, 4, 4, 16, 16})
    local peak, grads = {}, {}
    for _, ck in ipairs({false, true}) do
      for _, p in pairs(m:parameters()) do p.grad = nil end
      collectgarbage()
      collectgarbage()
      local base = sfwb.cpu_memory(true).allocated
      local out = m:forward(x, t, ctx, {checkpoint = ck})
      local loss = (out * R):sum()
      loss:backward()
      out, loss = nil, nil
      peak[ck] = sfwb.cpu_memory().peak - base
      grads[ck] = {}
      for name, p in pairs(m:parameters()) do grads[ck][name] = p.grad:clone() end
    end
    for name, g in pairs(grads[false]) do
      T.eq((grads[true][name] - g):abs():max():item(), 0.0, "checkpointed gradient of " .. name)
    end
    print(("  %s: peak %.2f MB without, %.2f MB with checkpointing (%.2fx)"):format(causal and "causal" or "bidir",
      peak[false] / 2^20, peak[true] / 2^20, peak[true] / peak[false]))
    T.check(peak[true] < 0.6 * peak[false], "checkpointing did not lower the peak enough")
  end
end)

T.case("bf16 DiT: f32 gradients within bf16 tolerance of the f32 model's, AdamW keeps f32 master weights", function()
  sfwb.manual_seed(3)
  local cfg = {dim = 32, ffn_dim = 64, num_heads = 2, num_layers = 2, in_dim = 4, out_dim = 4, text_dim = 16,
               text_len = 8, freq_dim = 32}
  local m = sfwb.wan.new(cfg)
  local mb = m:clone():to("bf16")
  m:requires_grad_(true)
  mb:requires_grad_(true)
  local x, t, ctx, R = sfwb.randn({1, 4, 3, 4, 4}), sfwb.tensor({500.0}), sfwb.randn({1, 5, 16}), sfwb.randn({1, 4, 3, 4, 4})
  for _, mm in ipairs({m, mb}) do (mm:forward(x, t, ctx) * R):sum():backward() end
  local worst = 0
  for name, p in pairs(m:parameters()) do
    local g = mb:parameters()[name].grad
    T.eq(g:dtype(), "f32", name)
    worst = math.max(worst, (g - p.grad):abs():max():item() / p.grad:abs():max():item())
  end
  print(("  bf16 vs f32 parameter gradients: worst relative difference %.3g"):format(worst))
  T.check(worst < 0.1, "bf16 gradients too far from f32")
  local opt = sfwb.optim.adamw(mb, {lr = 1e-3})
  opt:step()
  T.eq(mb:parameters()["head.head.weight"]:dtype(), "bf16")
  T.eq(opt.state[1].master:dtype(), "f32")
end)

T.case("KV-cache path: gradients reach the current chunk's keys and values (past detached)", function()
  sfwb.manual_seed(9)
  local cfg = {dim = 32, ffn_dim = 64, num_heads = 2, num_layers = 2, in_dim = 4, out_dim = 4, text_dim = 16,
               text_len = 8, freq_dim = 32}
  local m = sfwb.wan.new(cfg, {causal = true, num_frame_per_block = 1})
  local x1, x2, ctx = sfwb.randn({1, 4, 1, 4, 4}), sfwb.randn({1, 4, 1, 4, 4}), sfwb.randn({1, 5, 16})
  local R = sfwb.randn({1, 4, 1, 4, 4})
  -- KV path: chunk 1 fills the cache without grad, chunk 2 runs with grad
  local kv = m:kv_cache{batch = 1, frames = 2}
  sfwb.no_grad(function() m:forward(x1, sfwb.tensor({{800.0}}), ctx, {kv_cache = kv, current_start_frame = 0}) end)
  local a = x2:clone():requires_grad_()
  local out = m:forward(a, sfwb.tensor({{400.0}}), ctx, {kv_cache = kv, current_start_frame = 1})
  ;(out * R):sum():backward()
  -- the block-causal training path over both frames: frame 2 sees frame 1's keys, which do not depend on x2
  local b = x2:clone():requires_grad_()
  local full = m:forward(sfwb.cat({x1, b}, 3), sfwb.tensor({{800.0, 400.0}}), ctx)
  T.close(out, full:narrow(3, 2, 1), 1e-5, "chunk 2 output")
  ;(full:narrow(3, 2, 1) * R):sum():backward()
  T.close(a.grad, b.grad, 1e-5, "gradient w.r.t. the chunk's input")
end)

T.done()
