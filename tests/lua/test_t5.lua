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

T.case("sfwb._t5.bucket: the reference's buckets, both directions", function()
  local fwd, back = F.buckets_160:totable(), F.buckets_160_back:totable()
  for r = 0, 159 do
    T.eq(sfwb._t5.bucket(r, 32, 128), fwd[r + 1], "bucket of +" .. r)
    T.eq(sfwb._t5.bucket(-r, 32, 128), back[r + 1], "bucket of -" .. r)
  end
  T.raises(function() sfwb._t5.bucket(1, 7) end, "num_buckets")
end)

-- sfwb.tiny's context heads: each head's bias peaks at its offset, and a word's embedding then carries
-- its neighbours (a direction word tells which ball's colour came three words before it)
T.case("tiny T5 context_offsets: bias spikes and context-bound embeddings", function()
  local tok = T.tmpdir("t5_ctx")
  local lines = {}
  for _ = 1, 8 do
    for _, c in ipairs({"red", "blue"}) do
      for _, d in ipairs({"left", "right", "down"}) do lines[#lines + 1] = "a " .. c .. " ball moving " .. d end
    end
  end
  sfwb.tiny.train_tokenizer(tok, 20, lines, "word")
  local function build(offsets)
    sfwb.manual_seed(3)
    local sd = sfwb.tiny.t5_state_dict({vocab = 128, dim = 32, heads = 4, ffn = 64, layers = 2, buckets = 32,
      context_offsets = offsets, context_bias = 4})
    return sd, sfwb.t5.load(sd, {tokenizer = tok, text_len = 16})
  end
  local sd0, plain = build(nil)
  local sd1, ctx = build({-3, -1, 1, 3})
  local d = sd1["blocks.0.pos_embedding.embedding.weight"]:float() - sd0["blocks.0.pos_embedding.embedding.weight"]:float()
  -- four spikes of 4 (up to bf16 rounding of random + 4), nothing else moved; rel -3 -> bucket 3, +3 -> 19
  T.close(d:abs():sum(), sfwb.tensor(16.0), 1e-2)
  T.check(math.abs(d[4][1] - 4) < 0.05 and math.abs(d[20][4] - 4) < 0.05, "spikes not at buckets 3 / 19")
  local function binding(t5)
    local e = t5:encode({"a red ball moving down and a blue ball moving left",
      "a blue ball moving left and a red ball moving down", "a red ball moving left and a blue ball moving down"}).prompt_embeds
    -- "down" after "red" (prompt 1, word 5) vs after "blue" (prompt 3, word 11), relative to its norm
    return (e[1][5] - e[3][11]):norm():item() / e[1][5]:norm():item()
  end
  local b0, b1 = binding(plain), binding(ctx)
  print(string.format("  direction word vs its ball's colour: %.3f of its norm (random T5) -> %.3f (context heads)", b0, b1))
  T.check(b1 > 3 * b0 and b1 > 0.5, "context heads did not bind the direction word to its colour")
  T.raises(function() sfwb.tiny.t5_state_dict({vocab = 8, dim = 8, heads = 2, ffn = 8, layers = 1, buckets = 32,
    context_offsets = {1}}) end, "one offset per head")
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
