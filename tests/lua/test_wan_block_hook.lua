-- test_wan_block_hook.lua — m:_set_block_hook (the per-block hooks FSDP gathers and frees parameters with,
-- sfwb/dist/fsdp.lua): the order of the phases in a forward, in a backward with and without gradient
-- checkpointing, unchanged outputs and gradients, and a failing hook as a Lua error.
local T = require "sfwb.testing"

local CFG = {dim = 32, ffn_dim = 48, num_heads = 2, num_layers = 2, in_dim = 4, out_dim = 4, text_dim = 8,
             text_len = 4, freq_dim = 16}

local function setup()
  sfwb.manual_seed(11)
  local m = sfwb.wan.new(CFG)
  m:requires_grad_(true)
  local x, t, ctx = sfwb.randn({1, 4, 2, 4, 4}), sfwb.tensor({500.0}), sfwb.randn({1, 4, 8})
  return m, x, t, ctx
end

local function run(m, x, t, ctx, ck)
  for _, p in pairs(m:parameters()) do p.grad = nil end
  local out = m:forward(x, t, ctx, {checkpoint = ck})
  local R = sfwb.arange(0, out:numel(), 1):view(out:shape()) * 1e-3
  local loss = (out * R):sum()
  loss:backward()
  local g = {}
  for k, p in pairs(m:parameters()) do g[k] = p.grad:clone() end
  return out, g
end

local function events_of(m)
  local ev = {}
  m:_set_block_hook(function(i, phase, recompute)
    ev[#ev + 1] = ("%d %s%s"):format(i, phase, recompute and " R" or "")
  end)
  return ev
end

for _, ck in ipairs({false, true}) do
  T.case(("the phases in order, outputs and gradients unchanged (checkpoint %s)"):format(ck), function()
    local m, x, t, ctx = setup()
    local want_out, want_g = run(m, x, t, ctx, ck)
    local ev = events_of(m)
    local out, g = run(m, x, t, ctx, ck)
    -- backward: a checkpointed block's phases say so (R), and its forward runs again in between
    local R = ck and " R" or ""
    local expect = {"-1 pre_forward", "0 pre_forward", "0 post_forward", "1 pre_forward", "1 post_forward", "-1 post_forward",
                    "1 pre_backward" .. R}
    if ck then table.insert(expect, "1 pre_forward R"); table.insert(expect, "1 post_forward R") end
    table.insert(expect, "1 post_backward" .. R)
    table.insert(expect, "0 pre_backward" .. R)
    if ck then table.insert(expect, "0 pre_forward R"); table.insert(expect, "0 post_forward R") end
    table.insert(expect, "0 post_backward" .. R)
    T.eq(table.concat(ev, ", "), table.concat(expect, ", "))
    T.eq((out - want_out):abs():max():item(), 0, "output")
    for k, v in pairs(want_g) do T.eq((g[k] - v):abs():max():item(), 0, "gradient of " .. k) end
    -- no graph, no backward hooks
    for k in pairs(ev) do ev[k] = nil end
    sfwb.no_grad(function() m:forward(x, t, ctx) end)
    T.eq(#ev, 6, "forward phases only under no_grad")
    -- removed: nothing is called
    m:_set_block_hook(nil)
    for k in pairs(ev) do ev[k] = nil end
    run(m, x, t, ctx, ck)
    T.eq(#ev, 0)
  end)
end

T.case("a failing hook is a Lua error naming its cause", function()
  local m, x, t, ctx = setup()
  m:_set_block_hook(function(i, phase) if i == 1 and phase == "pre_forward" then error("gather of block 1 failed") end end)
  T.raises(function() m:forward(x, t, ctx) end, "gather of block 1 failed")
  m:_set_block_hook(function(i, phase) if phase == "post_backward" then error("reduce-scatter failed") end end)
  local out = m:forward(x, t, ctx)
  T.raises(function() out:sum():backward() end, "reduce-scatter failed")
  m:_set_block_hook(nil)
  T.raises(function() m:_set_block_hook(42) end, "function")
end)

T.done()
