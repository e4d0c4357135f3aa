-- test_autograd.lua — the Lua autograd surface: requires_grad_, backward (with a gradient, retain_graph),
-- t.grad, detach, no_grad / enable_grad, checkpoint, and the errors a user meets.
local sfwb = require "sfwb"
local T = require "sfwb.testing"

T.case("backward fills .grad of leaves and accumulates", function()
  local x = sfwb.tensor({1.0, 2.0, 3.0}):requires_grad_()
  T.eq(x.requires_grad, true)
  T.eq(x.is_leaf, true)
  local y = (x * x):sum()
  T.eq(y.requires_grad, true)
  T.eq(y.is_leaf, false)
  T.eq(y.grad_fn, "sum")
  y:backward({retain_graph = true})
  T.eq(x.grad[3], 6.0)
  y:backward()
  T.eq(x.grad[3], 12.0)
  T.raises(function() y:backward() end, "second time")
  x.grad = nil
  T.eq(x.grad, nil)
end)

T.case("backward with an upstream gradient", function()
  local x = sfwb.tensor({{1.0, 2.0}, {3.0, 4.0}}):requires_grad_()
  local y = x:exp()
  y:backward(sfwb.tensor({{1.0, 0.0}, {0.0, 2.0}}))
  T.near(x.grad[1][1], math.exp(1), 1e-6)
  T.eq(x.grad[1][2], 0.0)
  T.near(x.grad[2][2], 2 * math.exp(4), 1e-5)
end)

T.case("no_grad, enable_grad, detach", function()
  local x = sfwb.randn({3}):requires_grad_()
  local y = sfwb.no_grad(function() return x * 2 end)
  T.eq(y.requires_grad, false)
  T.eq(sfwb.is_grad_enabled(), true)
  local z = sfwb.no_grad(function() return sfwb.enable_grad(function() return x * 2 end) end)
  T.eq(z.requires_grad, true)
  T.raises(function() sfwb.no_grad(function() error("boom") end) end, "boom")
  T.eq(sfwb.is_grad_enabled(), true) -- restored after an error
  local d = x:detach()
  T.eq(d.requires_grad, false)
  T.raises(function() d:sum():backward() end, "does not require grad")
end)

T.case("errors: integer leaves, in-place on leaves, non-scalar backward", function()
  T.raises(function() sfwb.zeros({2}, {dtype = "i64"}):requires_grad_() end, "floating-point")
  local x = sfwb.randn({2}):requires_grad_()
  T.raises(function() x:fill_(1) end, "leaf")
  sfwb.no_grad(function() x:fill_(1) end)
  T.raises(function() (x * 2):backward() end, "one-element")
end)

T.case("checkpoint recomputes in backward and gives the same gradients", function()
  sfwb.manual_seed(1)
  local w1, w2 = sfwb.randn({8, 8}):requires_grad_(), sfwb.randn({8, 8}):requires_grad_()
  local x = sfwb.randn({4, 8})
  local calls = 0
  local function block(h, w)
    calls = calls + 1
    return (h:matmul(w)):tanh() * h
  end
  local function loss(ck)
    local h = x
    for _, w in ipairs({w1, w2}) do
      if ck then h = sfwb.checkpoint(block, h, w) else h = block(h, w) end
    end
    return (h * h):mean()
  end
  loss(false):backward()
  local g1, g2 = w1.grad:clone(), w2.grad:clone()
  w1.grad, w2.grad = nil, nil
  calls = 0
  local l = loss(true)
  T.eq(calls, 2)
  l:backward()
  T.eq(calls, 4) -- each block ran again in backward
  T.close(w1.grad, g1, 1e-6)
  T.close(w2.grad, g2, 1e-6)
end)

T.case("a composite loss over many ops matches torch autograd", function()
  if os.execute(T.python .. " -c 'import torch' 2>/dev/null") ~= true then print("  (skipped: no python3-torch)") return end
  local dir = T.tmpdir("autograd")
  sfwb.manual_seed(21)
  local A, B = sfwb.randn({4, 6}), sfwb.randn({6, 5})
  local C = sfwb.rand({5}) + 0.5
  sfwb.save(dir .. "/in.pt", {A = A, B = B, C = C})
  T.eq(os.execute(T.python .. " tests/ref/autograd_ref.py " .. dir .. "/in.pt " .. dir .. "/out.pt"), true)
  local ref = sfwb.load(dir .. "/out.pt")
  A:requires_grad_(); B:requires_grad_(); C:requires_grad_()
  local h = A:matmul(B) + C
  local l1 = (h:softmax(2) * h:tanh()):sum()
  local l2 = h:log_softmax(1):mean()
  local l3 = (C:sqrt() * C:log()):sum() + C:pow(3):mean()
  local l4 = A:narrow(2, 2, 3):t():abs():max() + A:gelu():exp():mean()
  local l5 = sfwb.cat({A, A:sigmoid()}, 1):std()
  local l6 = (A:silu() + A:clamp(-0.5, 0.5) * 2 + A:relu()):sum()
  local l7 = sfwb.nn.layer_norm(h, nil, nil, 1e-5):pow(2):mean() + (h / (C + 1)):square():mean()
  local loss = l1 + l2 + l3 + l4 + l5 + l6 + l7
  T.near(loss:item(), ref.loss:item(), 1e-5, "loss")
  loss:backward()
  T.close(A.grad, ref.gA, 1e-5, "grad A")
  T.close(B.grad, ref.gB, 1e-5, "grad B")
  T.close(C.grad, ref.gC, 1e-5, "grad C")
  os.execute("rm -rf '" .. dir .. "'")
end)

T.done()
