-- test_autograd_inplace.lua — in-place writes and autograd, row by row against PyTorch
-- (tests/ref/inplace_ref.py): a write into a view of a tensor that requires grad is either recorded with
-- PyTorch's gradient or refused with a clear error, never a silently cut graph; a tensor saved for
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
assert(os.execute(string.format("%s tests/ref/inplace_ref.py '%s'", T.python, dir)), "tests/ref/inplace_ref.py failed")
local man = dofile(dir .. "/manifest.lua")
local d = sfwb.load(dir .. "/data.safetensors")

local function leaf() return d.A:clone():requires_grad_(true) end

local rows = {
  view_copy = function()
    local a = leaf()
    local pad = sfwb.zeros({2, 5})
    pad:narrow(2, 2, 3):copy_(a);
    ((pad * d.W5):sum()):backward()
    return a.grad
  end,
  view_add = function()
    local a = leaf()
    local buf = sfwb.zeros({2, 3})
    buf:select(1, 1):add_(a:select(1, 1));
    ((buf * d.W):sum()):backward()
    return a.grad
  end,
  saved_other = function()
    local a, w = leaf(), d.W:clone()
    local c = a * w
    w:mul_(2)
    c:sum():backward()
    return a.grad
  end,
  saved_output = function()
    local a = leaf()
    local b = a:exp()
    b:detach():select(1, 1):fill_(0)
    b:sum():backward()
    return a.grad
  end,
  saved_view_sibling = function()
    local a, buf = leaf(), d.BUF:clone()
    local c = a * buf:narrow(1, 2, 2)
    buf:select(1, 1):fill_(5)
    c:sum():backward()
    return a.grad
  end,
  unsaved_ok = function()
    local a, w = leaf(), d.W:clone()
    local c = a + w
    w:mul_(2);
    ((c * c):sum()):backward()
    return a.grad
  end,
}

for _, name in ipairs({"view_copy", "view_add", "saved_other", "saved_output", "saved_view_sibling", "unsaved_ok"}) do
  T.case("in-place row " .. name .. " (torch: " .. man.rows[name] .. ")", function()
    local ok, res = pcall(rows[name])
    if man.rows[name] == "ok" then
      if ok then
        T.close(res, d["grad_" .. name], 1e-6, "gradient as torch")
      else -- refused: allowed only as the clear "not recorded" error, never a silent cut
        T.check(tostring(res):find("not recorded", 1, true), "unexpected error: " .. tostring(res))
        print("  refused (torch records it): " .. tostring(res):sub(1, 90) .. "...")
      end
    else
      T.eq(man.rows[name], "version")
      T.check(not ok, "torch raises the version-counter error; sfwb must too")
      T.check(tostring(res):find("modified by an inplace operation", 1, true), "error names it: " .. tostring(res))
    end
  end)
end

T.case("the version error names the saving op and the in-place op", function()
  local _, err = pcall(rows.saved_other)
  T.check(tostring(err):find("'mul'", 1, true), tostring(err))
  _, err = pcall(rows.saved_output)
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
