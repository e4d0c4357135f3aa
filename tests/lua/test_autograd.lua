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

T.done()
