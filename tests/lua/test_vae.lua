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

T.case("emu: tensor-op VAE with the implicit-GEMM conv kernel (tiny config)", function()
  local has_emu = false
  for _, d in ipairs(sfwb.devices()) do if d == "emu:0" then has_emu = true end end
  if not has_emu then print("  skipped: no emu device in this build") return end
  local v = sfwb.vae.load(tiny .. "/vae.pth", {device = "emu:0"})
  local lat = v:encode(FT.video)
  T.eq(lat:device(), "emu:0")
  local e1 = T.close(lat, FT.latents, 1e-4)
  -- streaming [0, 1] then [2]; the reference's one-shot decode equals it, so this covers decode too
  v:reset()
  local a = v:decode_chunk(FT.z:narrow(2, 1, 2))
  local b = v:decode_chunk(FT.z:narrow(2, 3, 1))
  T.eq(a:device(), "emu:0")
  local e3 = T.close(sfwb.cat({a, b}, 2), FT.decoded, 1e-4)
  print(string.format("  emu: worst relative errors encode %.3g, streamed decode %.3g", e1, e3))
end)

T.case("errors name the problem", function()
  T.raises(function() vae:encode(sfwb.zeros({1, 3, 5, 30, 32})) end, "multiples of 8")
  T.raises(function() vae:decode(sfwb.zeros({1, 2, 4, 4, 4})) end, "[B, F, 16, h, w]")
  T.raises(function() sfwb.vae.load({["conv1.weight"] = sfwb.zeros({32, 32, 1, 1, 1})}) end, "conv1.bias")
end)

T.done()
