-- test_vae.lua — the Wan VAE at its real channel sizes (dim 96, z 16, random weights) against our
-- PyTorch transcription (tests/ref/vae_ref.py): encode of 5 frames 32x32, decode of 3 latent frames
-- (first-chunk and "Rep" rules), streaming decode_chunk, i2v_condition, config inference, errors.
local sfwb = require "sfwb"
local T = require "sfwb.testing"

-- the 508 MB state dict goes to RAM when /dev/shm exists
local base = os.execute("test -d /dev/shm -a -w /dev/shm") and "/dev/shm/sfwb-vae-" .. tostring(os.time()) .. "-" .. math.random(1e9) or T.tmpdir("vae")
os.execute("mkdir -p '" .. base .. "'")
local ok = os.execute(string.format("cd tests/ref && %s vae_ref.py '%s'", T.python, base))
if not ok then os.execute("rm -rf '" .. base .. "'") error("reference script failed") end
local F = sfwb.load(base .. "/fixture.pt")
local vae = sfwb.vae.load(base .. "/vae.pth")
os.execute("rm -rf '" .. base .. "'")

local function report(name, err) print(string.format("  %s: worst relative error %.3g", name, err)) end

T.case("config inferred from the weights", function()
  local c = vae.config
  T.eq(c.z_dim, 16); T.eq(c.dim, 96); T.eq(c.spatial_stride, 8)
  T.eq(c.temperal_downsample[1], false); T.eq(c.temperal_downsample[2], true); T.eq(c.temperal_downsample[3], true)
  T.near(c.mean[1], -0.7571, 1e-6); T.near(c.std[16], 1.9160, 1e-6)
end)

T.case("encode 5 frames 32x32 -> [1, 2, 16, 4, 4]", function()
  local lat = vae:encode(F.video)
  T.eq(table.concat(lat:shape(), ","), "1,2,16,4,4")
  report("encode", T.close(lat, F.latents, 1e-4))
end)

T.case("decode 3 latent frames -> [1, 9, 3, 32, 32], clamped", function()
  local v = vae:decode(F.z)
  T.eq(table.concat(v:shape(), ","), "1,9,3,32,32")
  report("decode", T.close(v, F.decoded, 1e-4))
  T.check(v:max():item() <= 1 and v:min():item() >= -1, "not clamped")
end)

T.case("decode_chunk keeps its caches: [0,1] then [2] equals one-shot", function()
  vae:reset()
  local a = vae:decode_chunk(F.z:narrow(2, 1, 2))
  local b = vae:decode_chunk(F.z:narrow(2, 3, 1))
  T.eq(a:size(2), 5); T.eq(b:size(2), 4)
  report("stream", T.close(sfwb.cat({a, b}, 2), F.stream, 1e-4))
  vae:reset()
  local again = vae:decode_chunk(F.z:narrow(2, 1, 2))
  T.close(again, a, 1e-6)
  vae:reset()
end)

T.case("i2v_condition(img, 9) -> y [1, 20, 3, 4, 4]", function()
  local y = vae:i2v_condition(F.img, 9)
  T.eq(table.concat(y:shape(), ","), "1,20,3,4,4")
  report("i2v y", T.close(y, F.y, 1e-4))
  T.raises(function() vae:i2v_condition(F.img, 8) end, "1 + 4k")
end)

T.case("bf16 compute (Self-Forcing's bf16 VAE) against the bf16 transcription", function()
  T.eq(vae.dtype, "f32")
  local lat32, dec32 = vae:encode(F.video), vae:decode(F.z)
  vae:set_dtype("bf16")
  T.eq(vae.dtype, "bf16")
  local lat, dec = vae:encode(F.video), vae:decode(F.z)
  vae:set_dtype("f32")
  local function rel(a, b) return (a - b):abs():max():item() / b:abs():max():item() end
  -- the random-weight VAE amplifies single bf16 rounding flips (see vae_ref.py): the bound is the gap
  -- between two valid bf16 references (f32 vs f64 sums), not a fixed tolerance
  local el, ed = rel(lat, F.bf16_latents), rel(dec, F.bf16_decoded)
  local fl, fd = rel(F.bf16_latents_f64, F.bf16_latents), rel(F.bf16_decoded_f64, F.bf16_decoded)
  local gl, gd = rel(lat32, F.bf16_latents), rel(dec32, F.bf16_decoded)
  print(string.format("  bf16: encode %.3g, decode %.3g; two bf16 references differ by %.3g, %.3g; f32 compute vs bf16: %.3g, %.3g",
    el, ed, fl, fd, gl, gd))
  -- values are bf16 numbers
  T.close(lat:bf16():float(), lat, 0)
  T.close(dec:bf16():float(), dec, 0)
  T.check(el <= 2 * fl + 1e-3 and ed <= 2 * fd + 1e-3, "bf16 mode further from the bf16 reference than the noise floor")
  T.raises(function() vae:set_dtype("f16") end, "not supported")
  T.eq(vae.dtype, "f32")
end)

-- a tiny VAE (dim 8, z 4: the spec's config E) for the device path, which is slow on the emulated GPU
local tiny = T.tmpdir("vae-tiny")
assert(os.execute(string.format("cd tests/ref && %s vae_ref.py '%s' 8 4", T.python, tiny)), "tiny reference failed")
local FT = sfwb.load(tiny .. "/fixture.pt")

T.case("tiny VAE (dim 8, z 4) on cpu", function()
  local v = sfwb.vae.load(tiny .. "/vae.pth")
  T.eq(v.config.z_dim, 4); T.eq(v.config.dim, 8)
  T.close(v:encode(FT.video), FT.latents, 1e-4)
  T.close(v:decode(FT.z), FT.decoded, 1e-4)
end)

T.case("emu: the same C forward on the device (composed ops, implicit-GEMM conv kernel; tiny config)", function()
  local dev = T.test_device() -- emu:0, or $SFWB_TEST_DEVICE
  if not dev then print("  skipped: no emu device in this build") return end
  local v = sfwb.vae.load(tiny .. "/vae.pth", {device = dev})
  local lat = v:encode(FT.video)
  T.eq(lat:device(), dev)
  local e1 = T.close(lat, FT.latents, 1e-4)
  -- streaming [0, 1] then [2]; the reference's one-shot decode equals it, so this covers decode too
  v:reset()
  local a = v:decode_chunk(FT.z:narrow(2, 1, 2))
  local b = v:decode_chunk(FT.z:narrow(2, 3, 1))
  T.eq(a:device(), dev)
  local e3 = T.close(sfwb.cat({a, b}, 2), FT.decoded, 1e-4)
  print(string.format("  emu: worst relative errors encode %.3g, streamed decode %.3g", e1, e3))
end)

T.case("bf16 on every device: the same C forward (fused ops on the cpu, composed ops on emu), tiny config", function()
  local function rel(a, b) return (a:cpu() - b):abs():max():item() / b:abs():max():item() end
  local fl, fd = rel(FT.bf16_latents_f64, FT.bf16_latents), rel(FT.bf16_decoded_f64, FT.bf16_decoded)
  local devs = {"cpu", T.test_device()}
  for _, dev in ipairs(devs) do
    local v = sfwb.vae.load(tiny .. "/vae.pth", {device = dev, dtype = "bf16"})
    T.eq(v.dtype, "bf16")
    local lat, dec = v:encode(FT.video), v:decode(FT.z)
    T.eq(lat:device(), dev)
    -- values are bf16 numbers
    T.close(lat:cpu():bf16():float(), lat:cpu(), 0)
    T.close(dec:cpu():bf16():float(), dec:cpu(), 0)
    -- within the noise floor of two valid bf16 references (see the real-width bf16 case)
    local el, ed = rel(lat, FT.bf16_latents), rel(dec, FT.bf16_decoded)
    print(string.format("  %s bf16: encode %.3g, decode %.3g; two bf16 references differ by %.3g, %.3g; bf16 vs f32 %.3g, %.3g",
      dev, el, ed, fl, fd, rel(FT.latents, FT.bf16_latents), rel(FT.decoded, FT.bf16_decoded)))
    T.check(el <= 2 * fl + 1e-3 and ed <= 2 * fd + 1e-3, dev .. ": bf16 mode further from the bf16 reference than the noise floor")
    -- and back to f32 (the f32 weights are kept on every device)
    v:set_dtype("f32")
    T.close(v:encode(FT.video), FT.latents, 1e-4)
  end
end)

T.case("errors name the problem", function()
  T.raises(function() vae:encode(sfwb.zeros({1, 3, 5, 30, 32})) end, "multiples of 8")
  T.raises(function() vae:decode(sfwb.zeros({1, 2, 4, 4, 4})) end, "[B, F, 16, h, w]")
  T.raises(function() sfwb.vae.load({["conv1.weight"] = sfwb.zeros({32, 32, 1, 1, 1})}) end, "conv1.bias")
end)

T.done()
