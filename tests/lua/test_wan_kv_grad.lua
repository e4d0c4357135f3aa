-- test_wan_kv_grad.lua — the KV cache's gradient path against PyTorch's in-place semantics
-- (tests/ref/kv_grad_ref.py): a local window with a sink frame, writes and evictions under grad mode and
-- under no_grad in one sequence of KV forwards; every parameter gradient, cpu and emu:0. detach=true
-- must differ (the clean variant).
local T = require "sfwb.testing"

if not T.have_torch then
  print("skip: python3-torch not importable")
  T.done()
  return
end

local dir = T.tmpdir("kv-grad-ref")
assert(os.execute(string.format("%s tests/ref/kv_grad_ref.py '%s'", T.python, dir)), "tests/ref/kv_grad_ref.py failed")
local man = dofile(dir .. "/manifest.lua")
local d = sfwb.load(dir .. "/data.safetensors")

local function run(dev, detach)
  local m = sfwb.wan.load(dir .. "/wan", {causal = true, num_frame_per_block = 1, local_attn_size = man.local_attn_size,
                                          sink_size = man.sink_size, device = dev})
  m:requires_grad_(true)
  local kv = m:kv_cache{batch = 1, frames = 6, detach = detach}
  local ctx = d.ctx:to(dev)
  local loss
  for j, c in ipairs(man.calls) do
    local f0, grad = c[1], c[2]
    local function fwd()
      return m:forward(d["x_" .. j]:to(dev), d["t_" .. j]:to(dev), ctx, {kv_cache = kv, current_start_frame = f0})
    end
    if grad then
      local o = fwd()
      local l = (o * o):mean() * j
      loss = loss and loss + l or l
    else
      sfwb.no_grad(fwd)
    end
  end
  loss:backward()
  return m, loss:item()
end

for _, dev in ipairs({"cpu", "emu:0"}) do
  T.case("window + sink, evictions with and without grad: PyTorch's gradients (" .. dev .. ")", function()
    local m, loss = run(dev, false)
    T.near(loss, man.loss, 1e-5, "loss")
    for k, p in pairs(m:parameters()) do
      T.close(p.grad or sfwb.zeros(p:shape()), d["grad." .. k], 1e-4, k)
    end
  end)
end

T.case("detach=true: the same values, not the same gradient", function()
  local m, loss = run("cpu", true)
  T.near(loss, man.loss, 1e-5, "loss")
  local g = m:parameters()["blocks.0.self_attn.k.weight"].grad
  local ok = pcall(T.close, g, d["grad.blocks.0.self_attn.k.weight"], 1e-4)
  T.check(not ok, "the detached cache must lose the gradient through earlier writes")
end)

T.done()
