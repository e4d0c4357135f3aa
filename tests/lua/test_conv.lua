-- test_conv.lua — the conv op table (src/backend/conv_ops.h; CPU im2col + SGEMM, temporal-tap reuse)
-- against torch.nn.functional.conv3d/conv2d: strides, padding, 1x1, stride-2 temporal, patch embedding;
-- the same cases on emu through the CUDA backend's implicit-GEMM kernel (kernels/conv.cu).
local sfwb = require "sfwb"
local T = require "sfwb.testing"

local dir = T.tmpdir("conv")
assert(os.execute(string.format("cd tests/ref && %s conv_ref.py '%s'", T.python, dir)), "reference script failed")
local F = sfwb.load(dir .. "/conv.pt")
local conv3d, conv2d = sfwb._vae.conv3d, sfwb._vae.conv2d

local c3 = {{{1, 1, 1}, {1, 1, 1}}, {{2, 1, 1}, {0, 0, 0}}, {{1, 2, 3}, {2, 0, 1}}, {{1, 1, 1}, {0, 0, 0}}}
for i, sp in ipairs(c3) do
  T.case("conv3d case " .. i, function()
    local k = "c3_" .. (i - 1) .. "_"
    local y = conv3d(F[k .. "x"], F[k .. "w"], F[k .. "b"], sp[1], sp[2])
    T.eq(table.concat(y:shape(), ","), table.concat(F[k .. "y"]:shape(), ","))
    T.close(y, F[k .. "y"], 1e-5)
  end)
end
local c2 = {{{14, 14}, {0, 0}}, {{2, 2}, {1, 1}}}
for i, sp in ipairs(c2) do
  T.case("conv2d case " .. i, function()
    local k = "c2_" .. (i - 1) .. "_"
    T.close(conv2d(F[k .. "x"], F[k .. "w"], F[k .. "b"], sp[1], sp[2]), F[k .. "y"], 1e-5)
  end)
end
T.case("backward (input, weight, bias gradients) equals torch autograd on every case", function()
  local function check(k, fn)
    local x, w = F[k .. "x"]:clone():requires_grad_(true), F[k .. "w"]:clone():requires_grad_(true)
    local b = F[k .. "b"] and F[k .. "b"]:clone():requires_grad_(true)
    local y = fn(x, w, b)
    y:backward(F[k .. "gy"])
    T.close(x.grad, F[k .. "gx"], 1e-5, k .. " grad x")
    T.close(w.grad, F[k .. "gw"], 1e-5, k .. " grad w")
    if b then T.close(b.grad, F[k .. "gb"], 1e-5, k .. " grad b") end
  end
  for i, sp in ipairs(c3) do
    check("c3_" .. (i - 1) .. "_", function(x, w, b) return conv3d(x, w, b, sp[1], sp[2]) end)
  end
  for i, sp in ipairs(c2) do
    check("c2_" .. (i - 1) .. "_", function(x, w, b) return conv2d(x, w, b, sp[1], sp[2]) end)
  end
  -- f64 inputs run the f64 forward: the same values
  local k = "c3_0_"
  T.close(conv3d(F[k .. "x"]:double(), F[k .. "w"]:double(), F[k .. "b"]:double(), 1, 1), F[k .. "y"], 1e-6)
end)
T.case("bf16 compute (the VAE's bf16 mode) on every case", function()
  -- our f32 sums vs exact sums: the outputs may differ by one bf16 step where the exact value is near a
  -- rounding tie; count those
  local flips, total = 0, 0
  local function check(y, ref)
    T.close(y:bf16():float(), y, 0) -- bf16 values
    local d = (y - ref):abs()
    -- one bf16 ulp is <= |v| * 2^-7; near-cancelling sums (tiny |v|) get the f32 summation error too
    local step = ref:abs():mul(2 ^ -7):add(ref:abs():max():item() * 1e-5)
    local worst = (d - step):max():item()
    T.check(worst <= 0, string.format("more than one bf16 step off (by %.3g, max |y| %.3g)", worst, ref:abs():max():item()))
    flips = flips + d:gt(0):float():sum():item()
    total = total + ref:numel()
  end
  for i, sp in ipairs(c3) do
    local k = "c3_" .. (i - 1) .. "_"
    check(conv3d(F[k .. "x"], F[k .. "w"], F[k .. "b"], sp[1], sp[2], "bf16"), F[k .. "ybf"])
  end
  for i, sp in ipairs(c2) do
    local k = "c2_" .. (i - 1) .. "_"
    check(conv2d(F[k .. "x"], F[k .. "w"], F[k .. "b"], sp[1], sp[2], "bf16"), F[k .. "ybf"])
  end
  print(string.format("  bf16 conv: %d of %d outputs one bf16 step off the exactly summed reference", flips, total))
  T.check(flips <= total * 0.01, "too many rounding flips")
  T.raises(function() conv3d(F.c3_0_x, F.c3_0_w, nil, 1, 1, "f16") end, "f32 or bf16")
end)
local dev = T.test_device() -- emu:0, or $SFWB_TEST_DEVICE
local has_emu = dev ~= nil
T.case("emu: implicit-GEMM kernel (kernels/conv.cu) on every case", function()
  if not has_emu then print("  skipped: no emu device in this build") return end
  local function e(t) return t and t:to(dev) end
  local worst = 0
  for i, sp in ipairs(c3) do
    local k = "c3_" .. (i - 1) .. "_"
    local y = conv3d(e(F[k .. "x"]), e(F[k .. "w"]), e(F[k .. "b"]), sp[1], sp[2])
    T.eq(y:device(), dev)
    worst = math.max(worst, T.close(y, F[k .. "y"], 1e-5))
  end
  for i, sp in ipairs(c2) do
    local k = "c2_" .. (i - 1) .. "_"
    worst = math.max(worst, T.close(conv2d(e(F[k .. "x"]), e(F[k .. "w"]), e(F[k .. "b"]), sp[1], sp[2]), F[k .. "y"], 1e-5))
  end
  print(string.format("  emu conv: worst relative error %.3g", worst))
  T.raises(function() conv3d(e(F.c3_0_x), F.c3_0_w) end, "one device")
end)

T.case("errors", function()
  T.raises(function() conv3d(sfwb.zeros({1, 3, 2, 4, 4}), sfwb.zeros({2, 4, 1, 1, 1})) end, "do not match")
  T.raises(function() conv2d(sfwb.zeros({1, 3, 2, 2}), sfwb.zeros({2, 3, 3, 3})) end, "smaller than the kernel")
end)
T.done()
