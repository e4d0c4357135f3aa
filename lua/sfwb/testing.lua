-- sfwb/testing.lua — a small test harness for tests/lua: named cases, assertions that say what
-- differed, and a closing "N passed, N failed" line; the process exits non-zero on any failure.
local M = {}
local passed, failed = 0, 0
local failures = {}

function M.case(name, fn)
  local ok, err = xpcall(fn, debug.traceback)
  if ok then
    passed = passed + 1
    print("ok   " .. name)
  else
    failed = failed + 1
    failures[#failures + 1] = name
    print("FAIL " .. name .. "\n" .. tostring(err))
  end
end

function M.check(cond, msg, level)
  if not cond then error(msg or "check failed", (level or 1) + 1) end
end

function M.eq(a, b, msg)
  if a ~= b then error(string.format("%sexpected %s, got %s", msg and (msg .. ": ") or "", tostring(b), tostring(a)), 2) end
end

function M.near(a, b, tol, msg)
  tol = tol or 1e-6
  if not (math.abs(a - b) <= tol * math.max(1, math.abs(b))) then
    error(string.format("%sexpected %.9g, got %.9g (tol %g)", msg and (msg .. ": ") or "", b, a, tol), 2)
  end
end

-- error must be raised and its message must contain `pattern` (plain text)
function M.raises(fn, pattern)
  local ok, err = pcall(fn)
  if ok then error("expected an error" .. (pattern and (" mentioning '" .. pattern .. "'") or ""), 2) end
  if pattern and not tostring(err):find(pattern, 1, true) then
    error(string.format("error '%s' does not mention '%s'", tostring(err), pattern), 2)
  end
  return err
end

-- max |a-b| / max(|b|) over two tensors must stay under tol
function M.close(a, b, tol, msg)
  local af, bf = a:cpu():double(), b:cpu():double() -- f64: exact for every float input
  local diff = (af - bf):abs():max():item()
  local scale = math.max(bf:abs():max():item(), 1e-30)
  if not (diff / scale <= tol) then
    error(string.format("%srelative error %.3g > %.3g (max abs diff %.3g, scale %.3g)",
      msg and (msg .. ": ") or "", diff / scale, tol, diff, scale), 2)
  end
  return diff / scale
end

-- The device of the device tests: $SFWB_TEST_DEVICE ("cuda:0" under `make gpu-check`), else emu:0.
-- M.test_device() returns it, or nil when the default emu:0 is not in this build (the caller skips);
-- a device named by SFWB_TEST_DEVICE that is not there is an error, so a retargeted run cannot pass
-- by skipping everything.
M.device = (os.getenv("SFWB_TEST_DEVICE") or "") ~= "" and os.getenv("SFWB_TEST_DEVICE") or "emu:0"
function M.test_device()
  local sfwb = require "sfwb"
  for _, d in ipairs(sfwb.devices()) do if d == M.device then return d end end
  if os.getenv("SFWB_TEST_DEVICE") and os.getenv("SFWB_TEST_DEVICE") ~= "" then
    error(string.format("SFWB_TEST_DEVICE=%s is not a device of this build/machine (devices: %s)", M.device,
                        table.concat(sfwb.devices(), ", ")), 2)
  end
  return nil
end

-- a scratch folder for this test run
function M.tmpdir(name)
  local base = os.getenv("SFWB_TEST_TMP") or "/tmp/sfwb-test"
  local dir = base .. "/" .. (name or "t") .. "-" .. tostring(os.time()) .. "-" .. tostring(math.random(1e9))
  sfwb.fs.mkdir(dir)
  return dir
end

-- the Python interpreter with Debian's torch/numpy (not a pyenv shim)
M.python = os.getenv("SFWB_PYTHON") or "/usr/bin/python3"
-- python3-torch importable (tests that need it skip with a message otherwise)
do -- no shell: the interpreter path may hold any character
  local ok, rc = pcall(require("sfwb").fs.run, {M.python, "-c", "import torch"}, {stdout = "/dev/null", stderr = "/dev/null"})
  M.have_torch = ok and rc == 0
end

-- a tr.rng that hands back a reference's recorded draws in order (a step replayed draw for draw):
-- draws[i] = {kind = "randn"|"randint", shape = {...}[, range = {lo, hi}]}, value(i) = draw i's tensor.
-- Each call must ask for the recorded kind and shape (and a randint its recorded range), or it raises,
-- naming the draw. randn values go to opts.device (else `device`, when given); randint values are i64.
-- Returns the rng (with count() = draws taken so far) and that count function.
function M.replay_rng(draws, value, device)
  local i = 0
  local function take(kind, shape, lo, hi)
    i = i + 1
    local r = draws[i]
    local got = table.concat(shape, ",")
    if not r then
      error(string.format("replay: sfwb asks %s {%s} as draw %d, more draws than the reference made", kind, got, i), 3)
    end
    local want = table.concat(r.shape, ",")
    if r.kind ~= kind or want ~= got then
      error(string.format("draw %d: sfwb asks %s {%s}, the reference drew %s {%s}", i, kind, got, r.kind, want), 3)
    end
    if kind == "randint" and r.range and (r.range[1] ~= lo or r.range[2] ~= hi) then
      error(string.format("draw %d: sfwb asks randint in [%s, %s), the reference drew in [%s, %s)", i, tostring(lo),
                          tostring(hi), tostring(r.range[1]), tostring(r.range[2])), 3)
    end
    return value(i)
  end
  local function count() return i end
  return {
    randn = function(shape, opts)
      local v = take("randn", shape)
      local dev = opts and opts.device or device
      return dev and v:to(dev) or v
    end,
    randint = function(lo, hi, shape) return take("randint", shape, lo, hi):to("i64") end,
    count = count,
  }, count
end

function M.done()
  print(string.format("%d passed, %d failed", passed, failed))
  if failed > 0 then
    print("failed: " .. table.concat(failures, ", "))
    os.exit(1)
  end
  os.exit(0)
end

return M
