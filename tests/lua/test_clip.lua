-- test_clip.lua — the CLIP image tower against our PyTorch transcription (tests/ref/clip_ref.py) on a tiny
-- random ViT (28 px, patch 14, 3 blocks, 2 run): bicubic resize of non-square images, the full path,
-- config inference, errors.
local sfwb = require "sfwb"
local T = require "sfwb.testing"

local dir = T.tmpdir("clip")
assert(os.execute(string.format("cd tests/ref && %s clip_ref.py '%s'", T.python, dir)), "reference script failed")
local F = sfwb.load(dir .. "/fixture.pt")
local clip = sfwb.clip.load(dir .. "/clip.pth", {num_heads = 4})

T.case("config inferred from the weights", function()
  local c = clip.config
  T.eq(c.dim, 32); T.eq(c.patch, 14); T.eq(c.image_size, 28); T.eq(c.grid, 2)
  T.eq(c.num_layers, 3); T.eq(c.run_layers, 2); T.eq(c.mlp_dim, 128); T.eq(c.pre_norm, true)
end)

T.case("bicubic resize as torch (down and up, non-square)", function()
  local r = sfwb.clip.resize_bicubic(F.img:select(1, 2), 28, 28)
  print(string.format("  resize: worst relative error %.3g", T.close(r, F.resized:select(1, 2), 1e-5)))
  T.close(sfwb.clip.resize_bicubic(F.img:select(1, 1), 61, 83), F.up:select(1, 1), 1e-5)
end)

T.case("encode_image [2, 3, 40, 56] -> [2, 5, 32]", function()
  local out = clip:encode_image(F.img)
  T.eq(table.concat(out:shape(), ","), "2,5,32")
  print(string.format("  encode_image: worst relative error %.3g", T.close(out, F.out, 1e-4)))
  T.close(clip:encode_image(F.img:select(1, 2)):select(1, 1), F.out:select(1, 2), 1e-4)
end)

T.case("compute dtype f16 (Wan's clip_dtype) and bf16 against the rounded transcription", function()
  local c = sfwb.clip.load(dir .. "/clip.pth", {num_heads = 4, dtype = "f16"})
  T.eq(c.dtype, "f16")
  local out32 = clip:encode_image(F.img28)
  T.close(out32, F.out28, 1e-4)
  for _, dt in ipairs({"f16", "bf16"}) do
    c:set_dtype(dt)
    local out, ref = c:encode_image(F.img28), F["out28_" .. dt]
    T.close(out:to(dt):float(), out, 0) -- dtype values
    local function mae(a) return (a - ref):abs():mean():item() end
    local e, gap, frac = mae(out), mae(out32), (out - ref):abs():gt(0):float():mean():item()
    print(string.format("  %s: mean abs error %.3g (f32 compute: %.3g), %.3g of the values differ, worst %.3g", dt, e,
      gap, frac, (out - ref):abs():max():item()))
    -- equal but for rounding flips where our f32 sums fall on the other side of a tie
    T.check(e < gap / 4 and frac < 0.1, dt .. " compute is not close to the rounded reference")
  end
  T.raises(function() c:set_dtype("f64") end, "not supported")
end)

T.case("emu: tensor-op forward on the CUDA backend's emulated device", function()
  local dev = T.test_device() -- emu:0, or $SFWB_TEST_DEVICE
  if not dev then print("  skipped: no emu device in this build") return end
  local c = sfwb.clip.load(dir .. "/clip.pth", {num_heads = 4, device = dev})
  local out = c:encode_image(F.img)
  T.eq(out:device(), dev)
  print(string.format("  emu: worst relative error %.3g", T.close(out, F.out, 1e-4)))
  -- bf16 on the device (--device cuda:0 --dtype bf16): against the bf16-rounded torch transcription, as the CPU
  -- path above (equal but for rounding flips), and far closer to it than the f32 result is
  -- every dtype on every device (one forward): f16 (Wan's clip_dtype) too
  for _, dt in ipairs({"bf16", "f16"}) do
    local b = sfwb.clip.load(dir .. "/clip.pth", {num_heads = 4, device = dev, dtype = dt})
    local ob, ref = b:encode_image(F.img28):cpu(), F["out28_" .. dt]
    local e, gap = (ob - ref):abs():mean():item(), (clip:encode_image(F.img28) - ref):abs():mean():item()
    print(string.format("  emu %s: mean abs error %.3g (f32 compute: %.3g)", dt, e, gap))
    T.check(e < gap / 4, dt .. " on emu:0 is close to the rounded reference")
    T.close(ob:to(dt):float(), ob, 0) -- dtype values
  end
end)

T.case("errors", function()
  T.raises(function() clip:encode_image(sfwb.zeros({1, 4, 28, 28})) end, "[B, 3, H, W]")
  T.raises(function() sfwb.clip.load(dir .. "/clip.pth", {num_heads = 5}) end, "heads")
  local sd = sfwb.load(dir .. "/clip.pth")
  sd["visual.transformer.1.mlp.2.bias"] = nil
  T.raises(function() sfwb.clip.load(sd, {num_heads = 4}) end, "visual.transformer.1.mlp.2.bias")
end)

T.done()
