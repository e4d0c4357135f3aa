-- test_encoders_bf16_device.lua — `--device cuda:0 --dtype bf16` (Self-Forcing's usual setting) for the
-- text encoder (and its f16 mode) and the VAE: the bf16 device path (emu:0 here, the CUDA kernels on the CPU) against the
-- bf16 CPU path (tested against torch in test_t5 / test_vae): the same rounding points, so equal but for
-- rare rounding flips where the f32 sums differ in order — far closer to it than the f32 result is.
local T = require "sfwb.testing"
local P = require("sfwb.tiny").build(T.tmpdir("bf16dev") .. "/tiny")

-- mean |a - b| relative to mean |b|
local function rel(a, b)
  a, b = a:float():cpu(), b:float():cpu()
  return (a - b):abs():mean():item() / b:abs():mean():item()
end

T.case("T5 bf16 on emu:0 matches the bf16 CPU path", function()
  local path, tok = P.wan_dir .. "/models_t5_umt5-xxl-enc-bf16.pth", P.wan_dir .. "/google/umt5-xxl"
  local prompts = {"a red fox in the snow", "waves at night under a full moon, slow motion"}
  local cpu16 = sfwb.t5.load(path, {tokenizer = tok, dtype = "bf16"}):encode(prompts).prompt_embeds
  local cpu32 = sfwb.t5.load(path, {tokenizer = tok}):encode(prompts).prompt_embeds
  local dev16 = sfwb.t5.load(path, {tokenizer = tok, dtype = "bf16", device = "emu:0"}):encode(prompts).prompt_embeds
  T.eq(dev16:device(), "emu:0")
  local d16, d32 = rel(dev16, cpu16), rel(dev16, cpu32)
  print(string.format("  T5: emu bf16 vs cpu bf16 %.2e, vs cpu f32 %.2e", d16, d32))
  T.check(d16 < d32 / 10, "the CPU bf16 result, not the f32 one: " .. d16)
  T.close(dev16:float():bf16():float(), dev16:float(), 0, "bf16 values")
  -- one forward for every device: f16 (with T5's fp16_clamp) runs on the device too
  local cpuh = sfwb.t5.load(path, {tokenizer = tok, dtype = "f16"}):encode(prompts).prompt_embeds
  local devh = sfwb.t5.load(path, {tokenizer = tok, dtype = "f16", device = "emu:0"}):encode(prompts).prompt_embeds
  local h16, h32 = rel(devh, cpuh), rel(devh, cpu32)
  print(string.format("  T5: emu f16 vs cpu f16 %.2e, vs cpu f32 %.2e", h16, h32))
  T.check(h16 < h32 / 10, "f16: the CPU f16 result, not the f32 one: " .. h16)
  T.close(devh:float():half():float(), devh:float(), 0, "f16 values")
end)

T.case("VAE bf16 on emu:0 matches the bf16 CPU path (decode and encode)", function()
  local path = P.wan_dir .. "/Wan2.1_VAE.pth"
  sfwb.manual_seed(3)
  local z = sfwb.randn({1, 2, 16, 4, 6})
  local cpu16, cpu32 = sfwb.vae.load(path, {dtype = "bf16"}), sfwb.vae.load(path)
  local dev16 = sfwb.vae.load(path, {dtype = "bf16", device = "emu:0"})
  local a, b, c = dev16:decode(z), cpu16:decode(z), cpu32:decode(z)
  local d16, d32 = rel(a, b), rel(a, c)
  print(string.format("  VAE decode: emu bf16 vs cpu bf16 %.2e, vs cpu f32 %.2e", d16, d32))
  T.check(d16 < d32 / 10, "decode: the CPU bf16 result, not the f32 one: " .. d16)
  local v = (sfwb.rand({1, 3, 5, 32, 48}) * 2 - 1)
  local e16, e32 = rel(dev16:encode(v), cpu16:encode(v)), rel(dev16:encode(v), cpu32:encode(v))
  print(string.format("  VAE encode: emu bf16 vs cpu bf16 %.2e, vs cpu f32 %.2e", e16, e32))
  T.check(e16 < e32 / 10, "encode: the CPU bf16 result, not the f32 one: " .. e16)
end)

T.case("generate --device emu:0 --dtype bf16 runs end to end (T5, DiT, VAE in bf16 on the device)", function()
  local code, r = require("sfwb.recipes.generate").main({"--wan_dir", P.wan_dir, "--config_path", P.config,
    "--checkpoint_path", P.checkpoint, "--use_ema", "--prompt", "a red bird", "--num_output_frames", "3", "--height", "32",
    "--width", "48", "--device", "emu:0", "--dtype", "bf16", "--save_latents", "--output_folder", T.tmpdir("gen16"), "--quiet"})
  T.eq(code, 0)
  local lat = sfwb.load(r.outputs[2]).latents
  T.check(lat:abs():max():item() < 1e3 and lat:abs():max():item() == lat:abs():max():item(), "finite latents")
end)

T.done()
