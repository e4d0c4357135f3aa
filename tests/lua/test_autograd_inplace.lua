-- test_autograd_inplace.lua — in-place writes and autograd, row by row against PyTorch
-- (tests/ref/inplace_ref.py): every in-place write PyTorch records (copy_, fill_, add_/sub_/mul_/div_,
-- t[i] = v, into views, chains of views, buffers outside the graph, non-leaves; read back through other views)
-- is recorded with PyTorch's loss and gradients; the writes PyTorch refuses (a leaf that requires grad, a view
-- of one) are refused with a clear error; a tensor saved for
-- backward and then written in place (directly, through a detached alias or through another view of the
-- same storage) fails the backward as PyTorch's version counter does, naming the ops; writes PyTorch
-- accepts stay accepted; in-place ops on views give PyTorch's values; and a Wan forward's text context
-- (padded to text_len) gets PyTorch's gradient.
local T = require "sfwb.testing"

if not T.have_torch then
  print("skip: python3-torch not importable")
  T.done()
  return
end

local dir = T.tmpdir("inplace-ref")
assert(sfwb.fs.run({T.python, "tests/ref/inplace_ref.py", dir}) == 0, "tests/ref/inplace_ref.py failed")
local man = dofile(dir .. "/manifest.lua")
local d = sfwb.load(dir .. "/data.safetensors")

local dev = "cpu" -- the device the rows run on (cpu, then emu:0 below)
local D = setmetatable({}, {__index = function(_, k) return d[k]:to(dev) end})
local function Z(shape) return sfwb.zeros(shape, {device = dev}) end
local function leaf(x) return (x or D.A):clone():requires_grad_(true) end

-- every row: (loss, {leaves}) built as its twin in tests/ref/inplace_ref.py
local rows = {
  view_copy = function()
    local a = leaf()
    local pad = Z({2, 5})
    pad:narrow(2, 2, 3):copy_(a)
    return (pad * D.W5):sum(), {a}
  end,
  view_add = function()
    local a = leaf()
    local buf = Z({2, 3})
    buf:select(1, 1):add_(a:select(1, 1))
    return (buf * D.W):sum(), {a}
  end,
  fill_view_nonleaf = function()
    local a = leaf()
    local y = a * 2
    y:narrow(2, 2, 2):fill_(0)
    return (y * D.W):sum(), {a}
  end,
  mul_scalar_view_nonleaf = function()
    local a = leaf()
    local y = a * 2
    y:select(1, 1):mul_(3)
    return (y * D.W):sum(), {a}
  end,
  mul_tensor_view_nonleaf = function()
    local a, b = leaf(), leaf(D.B)
    local y = a * 1.5
    y:select(2, 2):mul_(b:select(2, 2))
    return (y * y * D.W):sum(), {a, b}
  end,
  div_view_nonleaf = function()
    local a, b = leaf(), leaf(D.B)
    local y = a:exp()
    local z = y + 1
    z:select(1, 2):div_(b:select(1, 2):exp())
    return (z * D.W):sum(), {a, b}
  end,
  ops_nonleaf = function()
    local a, b = leaf(), leaf(D.B)
    local y = a * 2
    y:add_(b)
    y:mul_(3)
    y:sub_(a)
    y:div_(4)
    return (y * y * D.W):sum(), {a, b}
  end,
  add_alpha_broadcast = function()
    local a, c = leaf(), leaf(D.C)
    local y = a * 1
    y:narrow(2, 2, 2):add_(c:narrow(1, 1, 2), 2)
    return (y * D.W):sum(), {a, c}
  end,
  chain_of_views = function()
    local a = leaf()
    local buf = Z({5, 4})
    local w = buf:t():narrow(1, 2, 2):narrow(2, 3, 3)
    w:copy_(a)
    return (buf * D.W45:t()):sum(), {a}
  end,
  write_read_other_view = function()
    local a = leaf()
    local buf = Z({2, 5})
    local v1, v2 = buf:narrow(2, 2, 3), buf:narrow(2, 3, 3)
    v1:copy_(a)
    return (v2 * D.W):sum(), {a}
  end,
  base_written_view_read = function()
    local a = leaf()
    local y = a * 2
    local v = y:select(1, 1)
    y:mul_(3)
    return (v * D.W3):sum(), {a}
  end,
  index_assign = function()
    local a, b = leaf(), leaf(D.B)
    local buf = Z({2, 3})
    buf[2] = a:select(1, 1)
    buf[{1, {2, 3}}] = b[{2, {1, 2}}]
    local y = b * 2
    y[2] = 5
    return (buf * D.W):sum() + (y * D.W):sum(), {a, b}
  end,
  overwrite_twice = function()
    local a, b = leaf(), leaf(D.B)
    local buf = Z({2, 3})
    buf:copy_(a * 2)
    buf:select(1, 1):copy_(b:select(1, 1))
    return (buf * buf * D.W):sum(), {a, b}
  end,
  fill_nonleaf_whole = function()
    local a = leaf()
    local y = a * 2
    y:fill_(1)
    return (y * D.W + a * a):sum(), {a}
  end,
  self_alias = function()
    local a = leaf()
    local y = a * 1
    y:narrow(2, 1, 2):add_(y:narrow(2, 2, 2))
    return (y * D.W):sum(), {a}
  end,
  saved_other = function()
    local a, w = leaf(), D.W:clone()
    local c = a * w
    w:mul_(2)
    return c:sum(), {a}
  end,
  saved_output = function()
    local a = leaf()
    local b = a:exp()
    b:detach():select(1, 1):fill_(0)
    return b:sum(), {a}
  end,
  saved_output_recorded = function()
    local a = leaf()
    local b = a:exp()
    b:select(1, 1):mul_(2)
    return b:sum(), {a}
  end,
  saved_view_sibling = function()
    local a, buf = leaf(), D.BUF:clone()
    local c = a * buf:narrow(1, 2, 2)
    buf:select(1, 1):fill_(5)
    return c:sum(), {a}
  end,
  unsaved_ok = function()
    local a, w = leaf(), D.W:clone()
    local c = a + w
    w:mul_(2)
    return (c * c):sum(), {a}
  end,
  leaf_inplace = function()
    local a = leaf()
    a:add_(1)
    return a:sum(), {a}
  end,
  leaf_view_inplace = function()
    local a = leaf()
    a:select(1, 1):fill_(0)
    return a:sum(), {a}
  end,
}

local function run(name)
  local loss, leaves = rows[name]()
  loss:backward()
  local grads = {}
  for i, x in ipairs(leaves) do grads[i] = x.grad and x.grad:to("cpu") or sfwb.zeros(x:size()) end
  return loss, grads
end

-- what each torch outcome must look like in sfwb
local expect_err = {
  version = "modified by an inplace operation",
  leaf = "in-place add on a leaf tensor that requires grad",
  leaf_view = "on a view of a leaf tensor that requires grad",
}

for _, name in ipairs(man.order) do
  T.case("in-place row " .. name .. " (torch: " .. man.rows[name] .. ")", function()
    T.check(rows[name], "row " .. name .. " has a Lua twin")
    local ok, loss, grads = pcall(run, name)
    if man.rows[name] == "ok" then
      T.check(ok, "torch records it; sfwb must too: " .. tostring(loss))
      T.close(loss:to("cpu"):reshape({1}), d["loss_" .. name], 1e-5, "loss as torch")
      for i, g in ipairs(grads) do T.close(g, d["grad_" .. name .. "_" .. i], 1e-5, "gradient " .. i .. " as torch") end
    else
      local want = expect_err[man.rows[name]]
      T.check(want, "torch outcome " .. man.rows[name])
      T.check(not ok, "torch raises; sfwb must too")
      T.check(tostring(loss):find(want, 1, true), "error names it: " .. tostring(loss))
    end
  end)
end

-- the same recorded rows on the emulated CUDA device (copy_slices' backward runs there too)
local has_emu = false
for _, x in ipairs(sfwb.devices()) do has_emu = has_emu or x == "emu:0" end
if has_emu then
  dev = "emu:0"
  for _, name in ipairs(man.order) do
    if man.rows[name] == "ok" then
      T.case("in-place row " .. name .. " on emu:0", function()
        local loss, grads = run(name)
        T.close(loss:to("cpu"):reshape({1}), d["loss_" .. name], 1e-5, "loss as torch")
        for i, g in ipairs(grads) do T.close(g, d["grad_" .. name .. "_" .. i], 1e-5, "gradient " .. i .. " as torch") end
      end)
    end
  end
  dev = "cpu"
end

T.case("every Lua row has a torch twin", function()
  for name in pairs(rows) do T.check(man.rows[name], "row " .. name .. " is in tests/ref/inplace_ref.py") end
end)

T.case("a write through a view gives the base and the view the recorded history", function()
  local a = leaf()
  local pad = sfwb.zeros({2, 5})
  local other = pad:narrow(2, 4, 2) -- made before the write
  T.eq(pad.requires_grad, false)
  pad:narrow(2, 2, 3):copy_(a)
  T.eq(pad.requires_grad, true)
  T.eq(pad.grad_fn, "copy_slices")
  T.eq(other.requires_grad, true, "an earlier view sees its base's new history")
  T.eq(other.grad_fn, "view")
  T.eq(pad.is_leaf, false)
end)

T.case("no_grad writes are not recorded", function()
  local a = leaf()
  local buf = sfwb.zeros({2, 3})
  sfwb.no_grad(function() buf:narrow(2, 1, 2):copy_(a:narrow(2, 1, 2)) end)
  T.eq(buf.requires_grad, false)
  local y = a * 2
  sfwb.no_grad(function() y:select(1, 1):fill_(0) end) -- torch: allowed, values only (no version error: nothing saved)
  T.eq(y.grad_fn, "mul_scalar")
end)

T.case("a recorded write into an expanded tensor is refused", function()
  local a = leaf(d.C)
  local e = (a * 1):view({1, 3}):expand({2, 3})
  T.raises(function() e:copy_(d.W) end, "expanded tensor")
end)

T.case("the version error names the saving op and the in-place op", function()
  local _, err = pcall(run, "saved_other")
  T.check(tostring(err):find("'mul'", 1, true), tostring(err))
  _, err = pcall(run, "saved_output")
  T.check(tostring(err):find("'exp'", 1, true) and tostring(err):find("fill_", 1, true), tostring(err))
end)

T.case("no_grad writes into a buffer, then a grad read: allowed (values only)", function()
  local a = leaf()
  local buf = sfwb.zeros({2, 3})
  sfwb.no_grad(function() buf:copy_(a) end) -- torch: fine, no graph
  local y = (buf * a):sum()
  y:backward()
  T.close(a.grad, d.A, 1e-6, "d/da (buf * a) with buf constant")
end)

T.case("in-place ops on views: PyTorch's values", function()
  local v = sfwb.arange(0, 12):float():view({3, 4})
  v:select(1, 2):mul_(3)
  v:select(2, 3):add_(1)
  v:select(1, 1):narrow(1, 2, 2):fill_(-1)
  v:select(1, 3):copy_(d.W5:select(1, 1):narrow(1, 1, 4))
  v:select(2, 1):sub_(v:select(2, 4))
  T.close(v, d.views_result, 1e-6)
end)

T.case("a Wan forward's context gradient equals PyTorch's (context padded to text_len)", function()
  local m = sfwb.wan.load(dir .. "/wan")
  local ctx = d.wan_ctx:clone():requires_grad_(true)
  local o = m:forward(d.wan_x, d.wan_t, ctx);
  ((o * o):mean()):backward()
  T.check(ctx.grad ~= nil, "ctx.grad is set")
  T.close(ctx.grad, d.wan_ctx_grad, 1e-4, "ctx.grad")
end)

T.done()
