-- test_io.lua — sfwb.load / sfwb.save against python3-torch files (made at test time), safetensors
-- round trips, lazy loading and clear errors on bad input.
local sfwb = require "sfwb"
local T = require "sfwb.testing"

local dir = T.tmpdir("io")
local have_torch = os.execute(T.python .. " tests/ref/io_make_pt.py " .. dir) == true

-- expected.txt: "T name dtype [shape] v1 v2 ..." written by the torch script
local function expected()
  local out = {}
  for line in io.lines(dir .. "/expected.txt") do
    local name, dt, shape, vals = line:match("^T (%S+) (%S+) %[([^%]]*)%] ?(.*)$")
    local e = {dtype = dt, shape = {}, values = {}}
    for s in shape:gmatch("%-?%d+") do e.shape[#e.shape + 1] = tonumber(s) end
    for v in vals:gmatch("%S+") do e.values[#e.values + 1] = tonumber(v) end
    out[name] = e
  end
  return out
end

local dtype_names = {float32 = "f32", bfloat16 = "bf16", float16 = "f16", float64 = "f64", int64 = "i64",
  int32 = "i32", uint8 = "u8", bool = "bool"}

local function flat_values(t)
  local n = t:numel()
  local vals = {}
  if n == 0 then return vals end
  local f = t:to("f32"):contiguous():view({n}):totable()
  return f
end

local function check_file(file)
  local exp = expected()
  local sd = sfwb.load(dir .. "/" .. file .. ".pt")
  local count = 0
  for name, e in pairs(exp) do
    if name:sub(1, #file + 1) == file .. "." then
      local key = name:sub(#file + 2)
      local t = sd[key]
      T.check(t ~= nil, "missing " .. key)
      if dtype_names[e.dtype] ~= "f64" then T.eq(t:dtype(), dtype_names[e.dtype], key .. " dtype") end
      local shape = t:shape()
      T.eq(#shape, #e.shape, key .. " rank")
      for i = 1, #shape do T.eq(shape[i], e.shape[i], key .. " shape") end
      local got = flat_values(t)
      T.eq(#got, #e.values, key .. " numel")
      for i = 1, #got do
        local g = got[i]
        if type(g) == "boolean" then g = g and 1 or 0 end
        T.near(g, e.values[i], 1e-6, key .. "[" .. i .. "]")
      end
      count = count + 1
    end
  end
  T.check(count > 0, "no expectations for " .. file)
  return sd
end

if have_torch then
  T.case("torch.save flat dict: every dtype", function() check_file("flat") end)
  T.case("torch.save views, strides, offsets", function() check_file("views") end)
  T.case("Self-Forcing-like nested checkpoint flattens to dotted names", function()
    local sd = check_file("selfforcing")
    T.check(sfwb.Tensor and true)
    T.eq(sd["step"], 600)
    T.eq(sd["name"], "dmd")
    T.eq(sd["flag"], true)
    T.eq(sd["nothing"], nil)
    T.near(sd["lr"], 2e-6, 1e-12)
    T.near(sd["betas.1"], 0.999, 1e-12)
    T.eq(sd["param_groups.0.params.1"], 1)
    T.eq(sd["generator.model.head.head.weight"]:dtype(), "bf16")
    T.check(sd["generator_ema.model._fsdp_wrapped_module.blocks.0.self_attn.q.weight"] ~= nil)
  end)
  T.case("lazy load gives shapes and dtypes only", function()
    local sd = sfwb.load(dir .. "/selfforcing.pt", {lazy = true})
    local e = sd["generator.model.head.head.weight"]
    T.eq(type(e), "table")
    T.eq(e.dtype, "bf16")
    T.eq(e.shape[1], 2)
    T.eq(e.shape[2], 4)
    T.eq(sd.step, 600)
  end)
  T.case("sfwb.save .pt that torch.load reads back (nested dicts, bf16, shared views)", function()
    local sf = sfwb.load(dir .. "/selfforcing.pt")
    local views = sfwb.load(dir .. "/views.pt")
    local flat = sfwb.load(dir .. "/flat.pt")
    local gen = {}
    for k, v in pairs(sf) do
      local sub = k:match("^generator%.(.*)$")
      if sub then gen[sub] = v end
    end
    local out = {generator = gen, views = views, flat = flat, step = 600, name = "dmd", flag = true, lr = 2e-6,
      list = {1, 2, 3}, nested = {a = {b = {c = "deep"}}}}
    local path = dir .. "/roundtrip.pt"
    sfwb.save(path, out)
    T.eq(os.execute(T.python .. " tests/ref/io_check_roundtrip.py " .. dir .. " " .. path), true)
    -- and sfwb reads its own file
    local back = sfwb.load(path)
    T.eq(back["nested.a.b.c"], "deep")
    T.eq(back["list.0"], 1)
    T.eq(back["generator.model.head.head.weight"]:dtype(), "bf16")
  end)
  T.case("unsupported pickle globals are refused by name", function()
    T.raises(function() sfwb.load(dir .. "/module.pt") end, "torch.nn.modules.linear.Linear")
  end)
end

T.case("safetensors round trip: dtypes, nesting, metadata, zero-copy", function()
  local a = sfwb.arange(0, 12, 1, {dtype = "f32"}):view({3, 4})
  local t = {model = {w = a, b = sfwb.ones({5}):bf16(), h = sfwb.full({2, 2}, 1.5):half()},
    idx = sfwb.arange(0, 6, 1, {dtype = "i64"}), u = sfwb.zeros({3}, {dtype = "u8"}), tr = a:transpose(1, 2)}
  local path = dir .. "/x.safetensors"
  sfwb.save(path, t, {metadata = {format = "pt", note = "hi"}})
  local back, meta = sfwb.load(path)
  T.eq(meta.format, "pt")
  T.eq(meta.note, "hi")
  T.eq(back["model.b"]:dtype(), "bf16")
  T.eq(back["model.h"]:dtype(), "f16")
  T.eq(back["idx"]:dtype(), "i64")
  T.eq(back["u"]:dtype(), "u8")
  T.close(back["model.w"], a, 0)
  T.close(back["tr"], a:transpose(1, 2), 0)
  T.close(back["model.h"], sfwb.full({2, 2}, 1.5), 0)
  local lazy = sfwb.load(path, {lazy = true})
  T.eq(lazy["model.w"].shape[2], 4)
  T.eq(lazy["model.w"].dtype, "f32")
  -- loaded tensors are writable (copy-on-write), the file is unchanged
  back["model.w"]:fill_(7)
  T.close(sfwb.load(path)["model.w"], a, 0)
  if have_torch then T.eq(os.execute(T.python .. " tests/ref/io_check_safetensors.py " .. path), true) end
end)

T.case("sharded safetensors index loads as one table", function()
  sfwb.save(dir .. "/m-00001-of-00002.safetensors", {a = sfwb.ones({2})})
  sfwb.save(dir .. "/m-00002-of-00002.safetensors", {b = sfwb.zeros({3})})
  local f = io.open(dir .. "/m.safetensors.index.json", "w")
  f:write('{"metadata": {"total_size": 20}, "weight_map": {"a": "m-00001-of-00002.safetensors", "b": "m-00002-of-00002.safetensors"}}')
  f:close()
  local sd, meta = sfwb.load(dir .. "/m.safetensors.index.json")
  T.eq(sd.a:numel(), 2)
  T.eq(sd.b:numel(), 3)
  T.eq(meta.total_size, "20")
  -- a model folder: its index (or its only .safetensors file)
  os.execute("mkdir -p '" .. dir .. "/model' '" .. dir .. "/single'")
  os.execute("cp '" .. dir .. "'/m* '" .. dir .. "/model/'")
  T.eq(sfwb.load(dir .. "/model").b:numel(), 3)
  sfwb.save(dir .. "/single/diffusion_pytorch_model.safetensors", {w = sfwb.ones({4})})
  T.eq(sfwb.load(dir .. "/single").w:numel(), 4)
  f = io.open(dir .. "/bad.safetensors.index.json", "w")
  f:write('{"weight_map": {"a": "m-00001-of-00002.safetensors", "zz": "m-00001-of-00002.safetensors"}}')
  f:close()
  T.raises(function() sfwb.load(dir .. "/bad.safetensors.index.json") end, "'zz'")
end)

T.case("errors name the file and the problem", function()
  T.raises(function() sfwb.load(dir .. "/does-not-exist.pt") end, "does-not-exist.pt")
  local f = io.open(dir .. "/junk.safetensors", "wb")
  f:write("\255\255\0\0\0\0\0\0{}")
  f:close()
  T.raises(function() sfwb.load(dir .. "/junk.safetensors") end, "junk.safetensors")
  T.raises(function() sfwb.save(dir .. "/y.safetensors", {a = 1}) end, "'a' is a number")
  T.raises(function() sfwb.save(dir .. "/y.pt", {a = print}) end, "function")
end)

T.case("tensors on other devices are saved through a CPU copy", function()
  local emu
  for _, d in ipairs(sfwb.devices()) do if d:match("^emu") then emu = d end end
  if not emu then print("     (no emu device: skipped)") return end
  local a = sfwb.arange(0, 6, 1, {dtype = "f32"}):view({2, 3})
  local t = a:to(emu)
  sfwb.save(dir .. "/emu.safetensors", {a = t:bf16()})
  sfwb.save(dir .. "/emu.pt", {a = t, b = t:transpose(1, 2)})
  T.close(sfwb.load(dir .. "/emu.safetensors").a, a, 0)
  local back = sfwb.load(dir .. "/emu.pt")
  T.close(back.b, a:transpose(1, 2), 0)
  T.eq(back.a:device(), "cpu")
end)

os.execute("rm -rf '" .. dir .. "'")
T.done()
