-- test_tensor_misuse.lua — randomized misuse of every Tensor method and sfwb tensor function: each call
-- either works or raises a Lua error with a message; nothing may crash (run under `make test-asan` too).
-- (Sizes stay where a failure is an overflow check, not a multi-TB allocation ASan would abort on.)
local T = require "sfwb.testing"
local S = sfwb

local function values()
  local freed = S.ones(2); freed:free()
  local v = {
    0, 1, 2, 3, -1, -2, -4, 0.5, 2 ^ 60, -2 ^ 60, 1e300, 0 / 0, math.huge, math.mininteger,
    "f32", "bf16", "i64", "bool", "cpu", "emu:0", "cuda:0", "bogus", "", true, false,
    {}, {2, 3}, {3, 2}, {-1}, {-1, -1}, {0}, {2 ^ 31, 2 ^ 31, 2 ^ 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9}, {dtype = "i64"},
    {device = "emu:0"}, {dtype = "nope"}, {"x"}, {{1, 2}, {3}}, {1.5, true}, {rtol = -1, atol = "x"},
    S.zeros(2, 3), S.ones(3), S.tensor(1.5), S.zeros(0), S.arange(6):view(2, 3), S.ones(2, 3):bf16(),
    S.tensor {true, false}, S.zeros(1, 3, 1), S.randn(2, 3):t(), freed, S.zeros(2, 1, 1, 1, 1, 1, 1, 1),
    S.ones(3):expand(2, 3), S.ones(2):half(), S.tensor {1, 2}:int(), S.zeros(3, 0), S.arange(4):byte(),
    function() end, io.stdout,
    -- zero sizes in every position (a zero extent must never reach an integer division: SIGFPE)
    S.zeros(2, 0, 3), S.zeros(0, 4), S.zeros(4, 0), S.zeros(1, 16, 3, 0, 12), S.zeros(1, 16, 0, 4, 4),
    S.zeros(0, 2, 2), S.zeros(2, 3, 0):bf16(), {0, 3}, {2, 0}, {1, 16, 3, 0, 12}, {0, 0},
  }
  local ok, emu = pcall(S.ones, {2, 3}, {device = "emu:0"})
  if ok then v[#v + 1] = emu end
  return v
end

local skip = {sleep = true, free = true}

T.case("random arguments to every method and function never crash", function()
  math.randomseed(20261123)
  local pool = values()
  local methods, funcs = {}, {}
  for k, f in pairs(S.Tensor) do if type(f) == "function" and not skip[k] then methods[#methods + 1] = k end end
  local F = {}
  for k, f in pairs(S) do
    if type(f) == "function" and not skip[k] and k ~= "load" and k ~= "save" then funcs[#funcs + 1] = k; F[k] = f end
  end
  for k, f in pairs(S.nn) do -- the fused layers too (attention, norms, RoPE)
    if type(f) == "function" then funcs[#funcs + 1] = "nn." .. k; F["nn." .. k] = f end
  end
  table.sort(methods); table.sort(funcs)
  local calls, errors = 0, 0
  local function pick() local i = math.random(#pool + 3); return pool[i] end -- beyond #pool: nil
  for round = 1, 16000 do
    local args, n = {}, math.random(0, 4)
    for i = 1, n do args[i] = pick() end
    local ok, err
    if round % 3 == 0 then
      local name = funcs[math.random(#funcs)]
      ok, err = pcall(F[name], table.unpack(args, 1, n))
    else
      local self = pool[math.random(#pool)]
      local name = methods[math.random(#methods)]
      ok, err = pcall(S.Tensor[name], self, table.unpack(args, 1, n))
    end
    calls = calls + 1
    if not ok then
      errors = errors + 1
      T.check(type(err) == "string" and #err > 0, "errors are messages")
    end
  end
  -- metamethods with mixed operands
  for _ = 1, 3000 do
    local a, b = pick(), pick()
    for _, f in ipairs {function() return a + b end, function() return a - b end, function() return a * b end,
                        function() return a / b end, function() return a ^ b end, function() return -a end,
                        function() return #a end, function() return a[b] end, function() a[b] = 1 end,
                        function() return tostring(a) end} do
      pcall(f)
    end
  end
  collectgarbage()
  print(string.format("  %d calls, %d raised an error", calls, errors))
end)

T.done()
