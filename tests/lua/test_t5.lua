-- test_t5.lua — the umT5 encoder against our PyTorch transcription (tests/ref/t5_ref.py) on a tiny
-- random model (2 layers, 32 buckets, 160 tokens with padding masks): f32 and bf16 weights,
-- encode_ids and encode(prompts) with a SentencePiece model trained at test time.
local sfwb = require "sfwb"
local T = require "sfwb.testing"

local dir = T.tmpdir("t5")
assert(os.execute(string.format("cd tests/ref && %s tokenizer_ref.py '%s' && %s t5_ref.py '%s' '%s/spiece.model'",
  T.python, dir, T.python, dir, dir)), "reference scripts failed")
local F = sfwb.load(dir .. "/fixture.pt")

T.case("config inferred from the weights", function()
  local t5 = sfwb.t5.load(dir .. "/t5.pth")
  local c = t5.config
  T.eq(c.dim, 32); T.eq(c.dim_attn, 32); T.eq(c.num_heads, 4); T.eq(c.dim_ffn, 48)
  T.eq(c.num_layers, 2); T.eq(c.num_buckets, 32); T.eq(c.vocab, 512); T.eq(c.shared_pos, false)
end)

T.case("encode_ids f32 weights (padding masks, every bucket)", function()
  local t5 = sfwb.t5.load(dir .. "/t5.pth")
  local out = t5:encode_ids(F.ids, F.mask)
  T.eq(out:dtype(), "f32")
  print(string.format("  worst relative error %.3g", T.close(out, F.out, 1e-4)))
end)

T.case("encode_ids bf16 weights as Self-Forcing (f32 compute)", function()
  local t5 = sfwb.t5.load(dir .. "/t5_bf16.pth")
  T.close(t5:encode_ids(F.ids, F.mask), F.out_bf16, 1e-4)
end)

-- compute dtypes: the reference after .to(bf16 / f16), op outputs rounded (t5_ref.encoder_lp)
local function lp_stats(out, ref)
  local d = (out - ref):abs()
  local rel = d:max():item() / ref:abs():max():item()
  local frac = d:gt(0):float():mean():item()
  return rel, frac
end

T.case("compute dtype bf16 / f16 against the rounded transcription", function()
  local t5 = sfwb.t5.load(dir .. "/t5_bf16.pth", {dtype = "bf16"})
  T.eq(t5.dtype, "bf16")
  local f32 = sfwb.t5.load(dir .. "/t5_bf16.pth")
  local out32 = f32:encode_ids(F.ids, F.mask)
  for _, dt in ipairs({"bf16", "f16"}) do
    t5:set_dtype(dt)
    T.eq(t5.dtype, dt)
    local out = t5:encode_ids(F.ids, F.mask)
    local ref = F["out_c_" .. dt]
    T.close(out:to(dt):float(), out, 0) -- the values are dtype numbers
    local rel, frac = lp_stats(out, ref)
    local gap = lp_stats(out32, ref)
    print(string.format("  %s: worst relative error %.3g, %.3g of the values differ (f32 compute vs this reference: %.3g)",
      dt, rel, frac, gap))
    -- equal but for rounding flips where our f32 sums fall on the other side of a dtype tie
    T.check(rel < 2e-2 and frac < 0.05, dt .. " compute too far from the reference")
    T.check(rel < gap / 4, dt .. " compute is not closer to the reference than f32 compute")
  end
  T.raises(function() t5:set_dtype("f64") end, "not supported")
end)

T.case("f16: fp16_clamp after an overflowing residual add", function()
  local t5 = sfwb.t5.load(dir .. "/t5_big.pth", {dtype = "f16"})
  local out = t5:encode_ids(F.ids, F.mask)
  local mx = out:abs():max():item()
  T.check(mx == mx and mx < math.huge, "f16 output has inf/nan: clamp missing")
  local rel, frac = lp_stats(out, F.out_c_f16_big)
  print(string.format("  f16 overflow case: worst relative error %.3g (%.3g of the values differ)", rel, frac))
  T.check(rel < 2e-2, "f16 clamp case too far from the reference")
  t5:set_dtype("bf16") -- bf16 does not overflow there and never clamps
  local rb = lp_stats(t5:encode_ids(F.ids, F.mask), F.out_c_bf16_big)
  T.check(rb < 2e-2, "bf16 big case too far from the reference")
end)

T.case("encode(prompts): tokenizer, zeroed padding, cache", function()
  local t5 = sfwb.t5.load(dir .. "/t5.pth", {tokenizer = dir})
  local prompts = {"A cat walks on the grass, realistic, 4k.", "  一只猫在草地上行走，写实风格。 ",
                   "Tom &amp; Jerry “chase” each other"}
  local ids = t5.tokenizer:encode(prompts)
  T.eq((ids - F.prompt_ids):abs():sum():item(), 0)
  local e = t5:encode(prompts).prompt_embeds
  T.eq(e:size(1), 3); T.eq(e:size(2), 512); T.eq(e:size(3), 32)
  print(string.format("  worst relative error %.3g", T.close(e, F.prompt_embeds, 1e-4)))
  -- second call hits the cache and returns the same values, in any order
  local e2 = t5:encode({prompts[3], prompts[1]}).prompt_embeds
  T.close(e2:select(1, 1), F.prompt_embeds:select(1, 3), 1e-6)
  T.close(e2:select(1, 2), F.prompt_embeds:select(1, 1), 1e-6)
end)

local dev = T.test_device() -- emu:0, or $SFWB_TEST_DEVICE
local has_emu = dev ~= nil
T.case("emu: tensor-op forward on the CUDA backend's emulated device", function()
  if not has_emu then print("  skipped: no emu device in this build") return end
  local t5 = sfwb.t5.load(dir .. "/t5_bf16.pth", {device = dev, tokenizer = dir})
  local out = t5:encode_ids(F.ids, F.mask)
  T.eq(out:device(), dev)
  print(string.format("  emu: worst relative error %.3g", T.close(out, F.out_bf16, 1e-4)))
end)

T.case("errors name the problem", function()
  local t5 = sfwb.t5.load(dir .. "/t5.pth")
  T.raises(function() t5:encode_ids(sfwb.full({1, 4}, 9999, {dtype = "i64"}), nil) end, "outside the embedding")
  T.raises(function() t5:encode({"x"}) end, "tokenizer")
  local sd = sfwb.load(dir .. "/t5.pth")
  sd["blocks.1.attn.k.weight"] = nil
  T.raises(function() sfwb.t5.load(sd) end, "blocks.1.attn.k.weight")
end)

T.done()
