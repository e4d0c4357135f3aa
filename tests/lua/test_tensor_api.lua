-- test_tensor_api.lua — every Tensor call of API.md from Lua: creation, queries, views, conversions,
-- indexing, metamethods, reductions, math, joins, printing, lifetime, and the error messages of misuse.
-- Values come from small exact cases here and from PyTorch (tests/ref/tensor_api_ref.py) at test time.
local T = require "sfwb.testing"
local S = sfwb

-- deep comparison of a tensor's values with a nested Lua table
local function same(t, want, tol, path)
  tol = tol or 0
  path = path or ""
  local got = type(t) == "table" and t or (S.is_tensor(t) and t:totable() or t)
  if type(want) == "table" then
    T.check(type(got) == "table", path .. ": expected a table, got " .. tostring(got), 2)
    T.check(#got == #want, string.format("%s: length %d, expected %d", path, #got, #want), 2)
    for i = 1, #want do same(got[i], want[i], tol, path .. "[" .. i .. "]") end
  elseif type(want) == "number" and type(got) == "number" then
    local ok = (got == want) or math.abs(got - want) <= tol * math.max(1, math.abs(want))
    T.check(ok, string.format("%s: got %.9g, expected %.9g (tol %g)", path, got, want, tol), 2)
  else
    T.check(got == want, string.format("%s: got %s, expected %s", path, tostring(got), tostring(want)), 2)
  end
end

local function shape(t) return table.concat(t:shape(), ",") end

T.case("module functions exist", function()
  for _, name in ipairs {"tensor", "zeros", "ones", "empty", "full", "randn", "rand", "arange", "manual_seed", "time",
                         "sync", "devices", "matmul", "cat", "stack", "allclose", "where", "is_tensor", "sleep"} do
    T.eq(type(S[name]), "function", name)
  end
  T.eq(type(S.version), "string")
  local d = S.devices()
  T.eq(d[1], "cpu")
end)

T.case("sfwb.tensor from nested tables infers dtype as torch", function()
  local t = S.tensor {{1, 2, 3}, {4, 5, 6}}
  T.eq(shape(t), "2,3"); T.eq(t:dtype(), "i64"); same(t, {{1, 2, 3}, {4, 5, 6}})
  T.eq(S.tensor {1, 2.5}:dtype(), "f32")
  T.eq(S.tensor {true, false}:dtype(), "bool")
  same(S.tensor {true, false}, {true, false})
  T.eq(S.tensor(3.5):dim(), 0); T.eq(S.tensor(3.5):item(), 3.5)
  T.eq(S.tensor(7):item(), 7); T.eq(math.type(S.tensor(7):item()), "integer")
  T.eq(shape(S.tensor {}), "0"); T.eq(S.tensor {}:dtype(), "f32")
  local b = S.tensor({{1, 2}, {3, 4}}, {dtype = "bf16"})
  T.eq(b:dtype(), "bf16"); same(b, {{1, 2}, {3, 4}})
  same(S.tensor({1.7, -1.7}, {dtype = "i32"}), {1, -1}) -- truncation, as torch
  T.eq(S.tensor({1, 2}, "f16"):dtype(), "f16")
  local c = S.tensor(b, {dtype = "f32"}); T.eq(c:dtype(), "f32"); same(c, {{1, 2}, {3, 4}})
  T.eq(S.tensor {{{1}, {2}}, {{3}, {4}}}:dim(), 3)
  -- 2^53 + 1 survives as an i64
  T.eq(S.tensor {9007199254740993}:totable()[1], 9007199254740993)
end)

T.case("creation: zeros ones empty full randn rand arange", function()
  same(S.zeros(2, 3), {{0, 0, 0}, {0, 0, 0}}); same(S.zeros({2, 3}), {{0, 0, 0}, {0, 0, 0}})
  same(S.ones({2}, {dtype = "i32"}), {1, 1}); T.eq(S.ones({2}, {dtype = "i32"}):dtype(), "i32")
  T.eq(shape(S.empty(4, 5)), "4,5"); T.eq(S.empty({1}, {dtype = "u8"}):dtype(), "u8")
  same(S.full({2}, 7), {7, 7}); T.eq(S.full({2}, 7):dtype(), "i64"); T.eq(S.full({2}, 0.5):dtype(), "f32")
  same(S.full({2, 1}, 1.5, {dtype = "f16"}), {{1.5}, {1.5}})
  T.eq(S.full({1}, true):dtype(), "bool")
  T.eq(S.zeros({}):dim(), 0)
  local r = S.rand(1000)
  T.check(r:min():item() >= 0 and r:max():item() < 1, "rand in [0,1)")
  local n = S.randn(20000)
  T.near(n:mean():item(), 0, 0.05); T.near(n:std():item(), 1, 0.05)
  T.eq(S.randn({2}, {dtype = "bf16"}):dtype(), "bf16")
  same(S.arange(5), {0, 1, 2, 3, 4}); T.eq(S.arange(5):dtype(), "i64")
  same(S.arange(2, 5), {2, 3, 4}); same(S.arange(0, 1, 0.25), {0, 0.25, 0.5, 0.75})
  T.eq(S.arange(0, 1, 0.25):dtype(), "f32"); same(S.arange(5, 0, -2), {5, 3, 1})
  T.eq(S.arange(3, {dtype = "f32"}):dtype(), "f32")
  same(S.zeros_like(S.ones(2, 2)), {{0, 0}, {0, 0}}); same(S.ones_like(S.zeros(2)), {1, 1})
  same(S.full_like(S.zeros(2), 3), {3, 3}); T.eq(shape(S.randn_like(S.zeros(3, 1))), "3,1")
end)

T.case("manual_seed makes draws reproducible", function()
  S.manual_seed(123); local a = S.randn(50)
  S.manual_seed(123); local b = S.randn(50)
  T.check(S.allclose(a, b, {rtol = 0, atol = 0}), "same seed, same numbers")
  local c = S.randn(50)
  T.check(not S.allclose(a, c), "the generator advances")
  local seed, off = S.rng_state()
  local d = S.rand(10); S.set_rng_state(seed, off); local e = S.rand(10)
  T.check(S.allclose(d, e, {rtol = 0, atol = 0}), "rng_state round trip")
end)

T.case("time and sync", function()
  local t0 = S.time(); local t1 = S.time()
  T.check(type(t0) == "number" and t1 >= t0, "monotonic")
  S.sync(); S.sync("cpu")
end)

T.case("queries: shape size dim numel dtype device stride", function()
  local t = S.zeros(2, 3, 4)
  same(t:shape(), {2, 3, 4}); T.eq(t:size(2), 3); T.eq(t:size(-1), 4); same(t:size(), {2, 3, 4})
  T.eq(t:dim(), 3); T.eq(t:numel(), 24); T.eq(t:dtype(), "f32"); T.eq(t:device(), "cpu")
  same(t:stride(), {12, 4, 1}); T.eq(t:is_contiguous(), true); T.eq(#t, 2)
  T.eq(t:transpose(1, 3):is_contiguous(), false)
end)

T.case("conversions: to float bf16 half cpu clone contiguous", function()
  local t = S.tensor {{1.5, -2.25}, {3, 4}}
  T.eq(t:bf16():dtype(), "bf16"); T.eq(t:half():dtype(), "f16"); T.eq(t:bf16():float():dtype(), "f32")
  same(t:half():float(), {{1.5, -2.25}, {3, 4}})
  T.eq(t:to("bf16"):dtype(), "bf16"); T.eq(t:to("cpu"):device(), "cpu")
  T.eq(t:to {dtype = "f16", device = "cpu"}:dtype(), "f16"); T.eq(t:to("float16"):dtype(), "f16")
  T.eq(t:to(S.zeros({1}, {dtype = "i64"})):dtype(), "i64")
  same(t:long(), {{1, -2}, {3, 4}}); T.eq(t:cpu():device(), "cpu")
  local c = t:clone(); c[1][1] = 100; T.eq(t[1][1], 1.5, "clone is a copy")
  local tt = t:t(); T.eq(tt:is_contiguous(), false)
  local cc = tt:contiguous(); T.eq(cc:is_contiguous(), true); same(cc, {{1.5, 3}, {-2.25, 4}})
  T.eq(S.tensor {0.1}:bf16():item(), 0.10009765625) -- round to nearest even
end)

T.case("views share storage: view reshape permute transpose narrow select unsqueeze squeeze expand", function()
  local t = S.arange(12):float()
  local v = t:view(3, 4); v[1][1] = 99; T.eq(t[1], 99, "view shares storage"); t[1] = 0
  same(t:view({2, -1}):shape(), {2, 6}); same(t:reshape(2, 2, 3):shape(), {2, 2, 3})
  same(v:transpose(1, 2):reshape(12):totable(), {0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11})
  same(v:permute(2, 1):shape(), {4, 3}); same(v:permute {2, 1}:shape(), {4, 3})
  same(v:narrow(2, 2, 2), {{1, 2}, {5, 6}, {9, 10}}); same(v:narrow(1, -1, 1), {{8, 9, 10, 11}})
  same(v:select(1, 2), {4, 5, 6, 7}); same(v:select(2, -1), {3, 7, 11})
  same(v:unsqueeze(1):shape(), {1, 3, 4}); same(v:unsqueeze(-1):shape(), {3, 4, 1}); same(v:unsqueeze(2):shape(), {3, 1, 4})
  same(S.zeros(1, 3, 1):squeeze():shape(), {3}); same(S.zeros(1, 3, 1):squeeze(1):shape(), {3, 1})
  same(S.zeros(1, 3, 1):squeeze(-1):shape(), {1, 3})
  local e = S.tensor {{1}, {2}}:expand(2, 3); same(e, {{1, 1, 1}, {2, 2, 2}}); same(e:stride(), {1, 0})
  same(S.tensor {1, 2}:expand({3, -1}), {{1, 2}, {1, 2}, {1, 2}})
  same(v:flatten():shape(), {12})
  local n = v:narrow(2, 2, 2); n:fill_(-1); T.eq(v[2][2], -1, "narrow shares storage")
end)

T.case("indexing: t[i], #t, t[i] = v, item, totable", function()
  local t = S.tensor {{1, 2}, {3, 4}, {5, 6}}
  T.eq(#t, 3); same(t[2], {3, 4}); T.eq(t[2][1], 3); T.eq(t[-1][-1], 6)
  T.eq(type(S.tensor {7, 8}[2]), "number")
  t[1] = 0; same(t[1], {0, 0})
  t[2] = S.tensor {9, 10}; same(t, {{0, 0}, {9, 10}, {5, 6}})
  t[3][2] = 42; T.eq(t[3][2], 42)
  t[-1] = S.tensor {7}; same(t[3], {7, 7}) -- broadcast source
  T.eq(S.tensor {{2.5}}:item(), 2.5); T.eq(S.tensor {true}:item(), true)
  same(S.tensor(1.25):totable(), 1.25)
  same(S.tensor {{1, 2}}:totable(), {{1, 2}})
end)

T.case("table indexing t[{i, {a, b}, {}}] as Torch7", function()
  local t = S.arange(24):view(2, 3, 4)
  T.eq(t[{2, 3, 4}], 23); T.eq(t[{-1, -1, -1}], 23)
  same(t[{1, 2}], {4, 5, 6, 7}); same(t[{{}, 2, {2, 3}}], {{5, 6}, {17, 18}})
  same(t[{2, {2}, {-2, -1}}], {{18, 19}}); same(t[{}]:shape(), {2, 3, 4})
  t[{1, {}, 1}] = -1; same(t[1]:select(2, 1), {-1, -1, -1})
  t[{2, {1, 2}, {1, 2}}] = S.tensor {100, 200}; same(t[{2, {1, 2}, {1, 2}}], {{100, 200}, {100, 200}})
  T.raises(function() return t[{1, 2, 3, 4}] end, "4 entries")
  T.raises(function() return t[{1, {3, 2}}] end, "empty")
  T.raises(function() return t[{1, 4}] end, "dim 2 of size 3")
  T.raises(function() return t[{1, "x"}] end, "entry 2")
  T.raises(function() return t[{{1, 2, 3}}] end, "{first, last}")
end)

T.case("arithmetic metamethods broadcast and accept numbers on either side", function()
  local a = S.tensor {{1, 2}, {3, 4}}:float()
  local r = S.tensor {10, 20}:float()
  same(a + r, {{11, 22}, {13, 24}}); same(a - r, {{-9, -18}, {-7, -16}})
  same(a * 2, {{2, 4}, {6, 8}}); same(2 * a, {{2, 4}, {6, 8}}); same(1 + a, {{2, 3}, {4, 5}})
  same(a - 1, {{0, 1}, {2, 3}}); same(10 - a, {{9, 8}, {7, 6}}); same(a / 2, {{0.5, 1}, {1.5, 2}})
  same(4 / a, {{4, 2}, {4 / 3, 1}}, 1e-6); same(-a, {{-1, -2}, {-3, -4}}); same(a ^ 2, {{1, 4}, {9, 16}})
  same(2 ^ a, {{2, 4}, {8, 16}}); same(a ^ a, {{1, 4}, {27, 256}})
  same(S.tensor {1, 2} * S.tensor {{1}, {2}}, {{1, 2}, {2, 4}})
  T.eq((S.tensor {1, 2} + 1):dtype(), "i64"); T.eq((S.tensor {1, 2} + 0.5):dtype(), "f32")
  T.eq((S.tensor {1, 2} + S.tensor {1.5}):dtype(), "f32")
  same(S.tensor {1, 2} / 2, {0.5, 1}) -- true division, as torch
  same(a:add(1), {{2, 3}, {4, 5}}); same(a:mul(a), {{1, 4}, {9, 16}}); same(a:div(a), {{1, 1}, {1, 1}})
  same(a:sub(a), {{0, 0}, {0, 0}})
  -- < and <= give Lua booleans: single-element tensors compare by value, others point at t:lt()
  T.eq(a:max() < 5, true); T.eq(a:max() <= 4, true); T.eq(5 < a:max(), false); T.eq(a:sum() > a:max(), true)
  T.eq(S.tensor {3} >= 3, true)
  T.raises(function() return a < 2 end, "t:lt(x)")
end)

T.case("in-place: add_ mul_ sub_ div_ copy_ fill_ zero_", function()
  local a = S.ones(2, 2)
  T.check(rawequal(a:add_(1), a), "add_ returns self")
  same(a, {{2, 2}, {2, 2}}); a:mul_(S.tensor {1, 2}:float()); same(a, {{2, 4}, {2, 4}})
  a:add_(S.ones(2, 2), 0.5); same(a, {{2.5, 4.5}, {2.5, 4.5}}); a:sub_(0.5); a:div_(2); same(a, {{1, 2}, {1, 2}})
  a:copy_(S.tensor {{7, 8}, {9, 10}}); same(a, {{7, 8}, {9, 10}}); T.eq(a:dtype(), "f32")
  a:copy_(S.tensor {5, 6}); same(a, {{5, 6}, {5, 6}})
  a:fill_(3); same(a, {{3, 3}, {3, 3}}); a:zero_(); same(a, {{0, 0}, {0, 0}})
  local v = S.zeros(3, 3); v:select(2, 2):fill_(1); same(v, {{0, 1, 0}, {0, 1, 0}, {0, 1, 0}})
end)

T.case("reductions over a dim or all", function()
  local a = S.tensor {{1, 5, 3}, {4, 2, 6}}:float()
  T.eq(a:sum():item(), 21); T.eq(a:sum():dim(), 0); same(a:sum(1), {5, 7, 9}); same(a:sum(2, true), {{9}, {12}})
  same(a:sum(-1), {9, 12}); T.eq(a:mean():item(), 3.5); same(a:mean(2), {3, 4})
  T.eq(a:max():item(), 6); T.eq(a:min():item(), 1)
  local v, i = a:max(2); same(v, {5, 6}); same(i, {2, 3}); T.eq(i:dtype(), "i64")
  local v2, i2 = a:min(1, true); same(v2, {{1, 2, 3}}); same(i2, {{1, 2, 1}})
  T.near(a:std():item(), 1.8708287, 1e-6); same(a:std(2), {2, 2}, 1e-6)
  T.near(a:norm():item(), math.sqrt(91), 1e-6); same(a:norm(1), {math.sqrt(17), math.sqrt(29), math.sqrt(45)}, 1e-6)
  T.eq(a:argmax():item(), 6); same(a:argmax(2), {2, 3}); same(a:argmin(1), {1, 2, 1})
  same(S.tensor {1, 2, 3}:sum(), 6); T.eq(S.tensor {1, 2, 3}:sum():dtype(), "i64")
  same(a:prod(2), {15, 48})
  same(S.maximum(a, 3), {{3, 5, 3}, {4, 3, 6}}); same(a:max(S.full({3}, 4.0)), {{4, 5, 4}, {4, 4, 6}})
end)

T.case("unary math and softmax", function()
  local a = S.tensor {-1, 0, 4}:float()
  same(a:abs(), {1, 0, 4}); same(S.tensor {0, 1}:float():exp(), {1, math.exp(1)}, 1e-6)
  same(S.tensor {1, 4}:float():log(), {0, math.log(4)}, 1e-6); same(S.tensor {4, 9}:float():sqrt(), {2, 3})
  same(a:pow(2), {1, 0, 16}); same(a:clamp(0, 2), {0, 0, 2}); same(a:clamp(nil, 0), {-1, 0, 0})
  same(a:relu(), {0, 0, 4}); same(a:sigmoid(), {1 / (1 + math.exp(1)), 0.5, 1 / (1 + math.exp(-4))}, 1e-6)
  same(a:tanh(), {math.tanh and math.tanh(-1) or -0.7615941559557649, 0, 0.999329299739067}, 1e-6)
  local s = S.tensor {{1, 2, 3}, {1, 1, 1}}:float():softmax(2)
  same(s:sum(2), {1, 1}, 1e-6); same(s[2], {1 / 3, 1 / 3, 1 / 3}, 1e-6)
  same(S.tensor {{0, 0}}:float():softmax(), {{0.5, 0.5}}) -- default: last dim
  same(a:sin(), {math.sin(-1), 0, math.sin(4)}, 1e-6); same(a:cos(), {math.cos(-1), 1, math.cos(4)}, 1e-6)
  T.eq(a:exp():dtype(), "f32"); T.eq(S.tensor {1, 2}:exp():dtype(), "f32", "int exp promotes")
end)

T.case("comparisons, logical ops and where", function()
  local a = S.tensor {1, 2, 3}
  same(a:eq(2), {false, true, false}); same(a:ne(2), {true, false, true}); same(a:lt(2), {true, false, false})
  same(a:le(2), {true, true, false}); same(a:gt(S.tensor {0, 2, 4}), {true, false, false}); same(a:ge(3), {false, false, true})
  T.eq(a:eq(2):dtype(), "bool")
  same(a:gt(1):logical_and(a:lt(3)), {false, true, false}); same(a:gt(2):logical_or(a:lt(2)), {true, false, true})
  same(a:gt(1):logical_not(), {true, false, false})
  same(S.where(a:gt(1), a, 0), {0, 2, 3}); same(S.where(a:gt(1), -1, a), {1, -1, -1})
  same(S.where(a:gt(1), S.tensor {10, 20, 30}, a), {1, 20, 30})
end)

T.case("matmul, cat, stack, allclose", function()
  local a = S.tensor {{1, 2}, {3, 4}}:float()
  same(S.matmul(a, a), {{7, 10}, {15, 22}}); same(a:matmul(S.tensor {1, 1}:float()), {3, 7})
  same(S.matmul(S.stack {a, a}, a):shape(), {2, 2, 2})
  same(S.matmul(a:bf16(), a:bf16()), {{7, 10}, {15, 22}}); T.eq(S.matmul(a:bf16(), a:bf16()):dtype(), "bf16")
  same(S.cat({a, a}), {{1, 2}, {3, 4}, {1, 2}, {3, 4}}); same(S.cat({a, a * 0}, 2), {{1, 2, 0, 0}, {3, 4, 0, 0}})
  same(S.cat({a, a}, -1):shape(), {2, 4})
  same(S.stack({a, a}):shape(), {2, 2, 2}); same(S.stack({a, a}, 3):shape(), {2, 2, 2})
  same(S.stack({S.tensor {1, 2}, S.tensor {3, 4}}, 2), {{1, 3}, {2, 4}})
  T.eq(S.allclose(a, a + 1e-7), true); T.eq(S.allclose(a, a + 1e-3), false)
  T.eq(S.allclose(a, a + 1e-3, {atol = 1e-2}), true); T.eq(S.allclose(a, a * 1.001, {rtol = 1e-2}), true)
end)

T.case("tostring: shape, dtype, device and a readable excerpt", function()
  local s = tostring(S.tensor {{1.5, -2}, {3, 4}})
  T.check(s:find("[[ 1.5000, -2.0000],", 1, true), s)
  T.check(s:find("[sfwb.Tensor f32 [2, 2] cpu]", 1, true), s)
  T.check(tostring(S.arange(3)):find("[0, 1, 2]", 1, true))
  T.check(tostring(S.ones(2)):find("[1., 1.]", 1, true))
  T.check(tostring(S.tensor {true}):find("true", 1, true))
  T.check(tostring(S.tensor {1e-6, 1e6}):find("1.0000e-06", 1, true))
  local big = tostring(S.arange(100000):view(100, 1000))
  T.check(big:find("...", 1, true) and #big < 3000, "big tensors are summarized: " .. #big)
  T.check(big:find("99999", 1, true), "the last element is shown")
  T.check(tostring(S.zeros(0, 2)):find("[]", 1, true))
  T.check(tostring(S.tensor(2.5)):find("2.5000", 1, true))
  T.check(tostring(S.ones(2):bf16()):find("bf16", 1, true))
  local nan = tostring(S.tensor {0, 1}:float():log())
  T.check(nan:find("-inf", 1, true), nan)
  T.check(tostring(S.arange(12):view(3, 4):t()):find("[ 0,  4,  8],", 1, true), "strided views print in order")
end)

T.case("lifetime: free, __close, __gc", function()
  local t = S.ones(4)
  t:free()
  T.raises(function() return t + 1 end, "released")
  T.raises(function() return t:sum() end, "released")
  T.check(tostring(t):find("freed", 1, true))
  t:free() -- twice is harmless
  do
    local c <close> = S.zeros(8)
    c:fill_(1)
  end
  -- the GC cannot see tensor memory; the binding charges it, so garbage tensors go at the pace they are made
  local function hwm_mb()
    local b = require("sfwb.procmem").status("VmHWM")
    return b and b / 2 ^ 20
  end
  local before = hwm_mb()
  for _ = 1, 300 do local _ = S.zeros(1024, 1024) end -- 1.2 GB of garbage, 4 MB at a time
  for _ = 1, 2000 do local _ = S.zeros(64, 64) * 2 end -- many small ones
  local after = hwm_mb()
  if before and after then
    T.check(after - before < 500, string.format("peak memory grew by %.0f MB for 4 MB live", after - before))
  end
  collectgarbage()
end)

T.case("Tensor methods are extensible from Lua (sfwb.Tensor)", function()
  function S.Tensor:double_it() return self * 2 end
  same(S.tensor {1, 2}:double_it(), {2, 4})
  S.Tensor.double_it = nil
  T.check(S.is_tensor(S.ones(1)) and not S.is_tensor({}), "is_tensor")
end)

T.case("errors: shape mismatch shows both shapes", function()
  local e = T.raises(function() return S.zeros(2, 3) + S.zeros(4) end, "[2, 3]")
  T.check(e:find("[4]", 1, true) and e:find("broadcast", 1, true), e)
  T.check(e:find("test_tensor_api.lua", 1, true), "the error points at the caller: " .. e)
  e = T.raises(function() return S.matmul(S.zeros(2, 3), S.zeros(4, 5)) end, "[2, 3]"); T.check(e:find("[4, 5]", 1, true), e)
  e = T.raises(function() return S.cat({S.zeros(2, 3), S.zeros(2, 4)}) end, "[2, 4]"); T.check(e:find("[2, 3]", 1, true), e)
  T.raises(function() return S.stack({S.zeros(2), S.zeros(3)}) end, "[3]")
  T.raises(function() return S.zeros(12):view(5, 3) end, "[5, 3]")
  T.raises(function() return S.zeros(2, 3):expand(4, 4) end, "[2, 3]")
  T.raises(function() return S.zeros(2, 3):copy_(S.zeros(4)) end, "[4]")
  T.raises(function() S.zeros(2, 2):add_(S.zeros(3, 2, 2)) end, "[2, 2]")
  T.raises(function() S.zeros(3)[1] = S.zeros(2) end, "[2]")
  T.raises(function() return S.allclose(S.zeros(2), S.zeros(3)) end, "[3]")
end)

T.case("errors: bad dtype or device lists the accepted ones", function()
  local e = T.raises(function() return S.zeros({2}, {dtype = "float33"}) end, "float33")
  T.check(e:find("f32, bf16, f16, i64, i32, u8, bool", 1, true), e)
  T.raises(function() return S.ones(2):to("f8") end, "bf16")
  T.raises(function() return S.ones(2):to(42) end, "dtype")
  T.raises(function() return S.zeros({2}, {device = "tpu"}) end, "cpu")
  T.raises(function() return S.zeros({2}, {dtyp = "f32"}) end, "dtyp")
  T.raises(function() return S.randn({2}, {dtype = "i64"}) end, "floating")
end)

T.case("errors: out-of-range index names the dim and size", function()
  local t = S.zeros(3, 4)
  T.raises(function() return t[4] end, "dim 1 of size 3")
  T.raises(function() return t[0] end, "1-based")
  T.raises(function() return t:select(2, 5) end, "dim 2 of size 4")
  T.raises(function() return t:narrow(2, 3, 3) end, "dim 2 of size 4")
  T.raises(function() return t:sum(3) end, "dim 3 is out of range for a 2-dim")
  T.raises(function() return t:transpose(1, 0) end, "1-based")
  T.raises(function() return t:permute(1, 1) end, "twice")
  T.raises(function() return t:permute(1) end, "needs 2 dims")
  T.raises(function() t[5] = 1 end, "dim 1 of size 3")
  T.raises(function() return S.tensor(1)[1] end, "0-dim")
  T.raises(function() return #S.tensor(1) end, "0-dim")
end)

T.case("errors: misuse of arguments never crashes", function()
  T.raises(function() return S.zeros() end, "shape")
  T.raises(function() return S.zeros(-2) end, "negative")
  T.raises(function() return S.zeros(1, 2, 3, 4, 5, 6, 7, 8, 9) end, "8")
  T.raises(function() return S.tensor {{1, 2}, {3}} end, "ragged")
  T.raises(function() return S.tensor {1, "x"} end, "[2] is a string")
  T.raises(function() return S.tensor {{1}, 2} end, "expected a table")
  T.raises(function() return S.tensor("abc") end, "expected")
  T.raises(function() return S.ones(2) + "x" end, "expected a Tensor or a number")
  T.raises(function() return S.ones(2) + {} end, "expected a Tensor or a number")
  T.raises(function() return S.ones(2):item() end, "2 elements")
  T.raises(function() return S.ones(2).shape() end, "t:f()")
  T.raises(function() return S.ones(2)["x"]() end)
  T.raises(function() S.ones(2).foo = 1 end, "cannot set field 'foo'")
  T.raises(function() return S.ones(2)[1.5] end, "integer")
  T.raises(function() return S.cat({}) end, "non-empty")
  T.raises(function() return S.cat({S.ones(1), 3}) end, "element 2")
  T.raises(function() return S.arange(0, 1, 0) end, "step")
  T.raises(function() return S.ones(2):clamp(2, 1) end, "greater")
  T.raises(function() return S.ones(2):gelu("fast") end, "tanh")
  T.raises(function() return S.ones(2):view(-1, -1) end, "-1")
  T.raises(function() return S.zeros(0):max() end, "empty")
  T.raises(function() return S.zeros(2 ^ 40, 2 ^ 40) end)
  T.raises(function() return S.zeros(1, 1, 1, 1, 1, 1, 1, 1):unsqueeze(1) end)
  T.raises(function() return S.matmul(S.tensor(1.0), S.ones(2)) end, "at least 1 dim")
end)

T.case("emu device (or $SFWB_TEST_DEVICE): the same calls and values as cpu", function()
  local dev = T.test_device()
  if not dev then print("  (skipped: no emu device in this build)") return end
  local c = S.tensor {{1, -2, 3}, {4, 5, -6}}:float()
  local e = c:to(dev)
  T.eq(e:device(), dev); T.eq(S.zeros({2}, {device = dev}):device(), dev)
  T.eq(S.tensor({1, 2}, {device = dev}):device(), dev)
  same(e, c:totable()); T.eq(e[2][3], -6); T.eq(e:sum():item(), 5)
  T.check(tostring(e):find(dev, 1, true), tostring(e))
  same((e * 2 + 1):cpu(), (c * 2 + 1):totable())
  same(S.matmul(e, e:t()):cpu(), S.matmul(c, c:t()):totable(), 1e-6)
  same(e:softmax(2):cpu(), c:softmax(2):totable(), 1e-6)
  T.raises(function() return e + c end, "different devices")
  e[1] = 0; T.eq(e[1][2], 0)
end)

-- PyTorch cross-check of the numerics reachable from Lua (1-based dims here, 0-based there)
T.case("values match PyTorch", function()
  S.manual_seed(7)
  local a, b, v = S.randn(3, 4), S.randn(4, 5), S.randn(4)
  local function ser(t)
    local vals = {}
    for _, x in ipairs(t:reshape(t:numel()):totable()) do vals[#vals + 1] = string.format("%.9g", x) end
    return table.concat(vals, ",") .. "|" .. table.concat(t:shape(), ",")
  end
  local dir = T.tmpdir("tensor_api")
  local inp = dir .. "/in.txt"
  local f = assert(io.open(inp, "w")); f:write(ser(a), "\n", ser(b), "\n", ser(v), "\n"); f:close()
  local p = assert(io.popen(T.python .. " tests/ref/tensor_api_ref.py < " .. inp))
  local out = p:read("a"); p:close()
  local ref = assert(load("return " .. out))()
  local got = {
    add_bcast = a + v, sub_scalar = 2.5 - a, mul = a * a, div_bcast = a / (v:abs() + 1), neg = -a, pow2 = a ^ 2,
    pow_rev = 2 ^ a, matmul = S.matmul(a, b), matvec = S.matmul(a, v), dot = S.matmul(v, v),
    bmm = S.matmul(S.stack {a, a * 2}, b), sum_all = a:sum(), sum1 = a:sum(1), sum2k = a:sum(2, true),
    mean2 = a:mean(2), max_all = a:max(), max2_v = select(1, a:max(2)), max2_i = select(2, a:max(2)),
    min1_v = select(1, a:min(1)), min1_i = select(2, a:min(1)), std_all = a:std(), std2 = a:std(2),
    norm_all = a:norm(), norm1 = a:norm(1), argmax_all = a:argmax(), argmax2 = a:argmax(2), argmin1 = a:argmin(1),
    prod2 = a:prod(2), softmax2 = a:softmax(2), softmax1 = a:softmax(1), log_softmax = a:log_softmax(2),
    abs = a:abs(), exp = a:exp(), log = (a:abs() + 0.5):log(), sqrt = a:abs():sqrt(), tanh = a:tanh(),
    sigmoid = a:sigmoid(), silu = a:silu(), gelu = a:gelu(), gelu_tanh = a:gelu("tanh"), sin = a:sin(), cos = a:cos(),
    relu = a:relu(), clamp = a:clamp(-0.5, 0.5), clamp_lo = a:clamp(0), rsqrt = (a:abs() + 1):rsqrt(),
    floor = a:floor(), ceil = a:ceil(), permute = a:view(3, 2, 2):permute(3, 1, 2):contiguous(),
    transpose = a:t():contiguous(), narrow = a:narrow(2, 2, 2), select = a:select(2, 3),
    cat2 = S.cat({a, a * 2}, 2), stack2 = S.stack({v, v + 1}, 2), where = S.where(a:gt(0), a, 0),
    expand = v:expand(2, 4), bf16 = a:bf16():float(), f16 = a:half():float(), lt = a:lt(v):float(),
    maximum = S.maximum(a, v),
  }
  local n = 0
  for k, want in pairs(ref) do
    local t = got[k]
    T.check(t ~= nil, "no Lua value for " .. k)
    local tol = (k == "bf16" or k == "f16") and 0 or 2e-6
    local ok, err = pcall(same, t, want, tol, k)
    if not ok then error(err, 0) end
    n = n + 1
  end
  T.eq(n, 60, "compared values")
end)

T.done()
