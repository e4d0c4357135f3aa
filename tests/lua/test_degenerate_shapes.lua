-- test_degenerate_shapes.lua — zero (and impossible) sizes reach no integer division: each model and
-- pipeline gives a Lua error naming the shape, on cpu and emu:0, and the process lives on (a SIGFPE
-- cannot be caught by pcall: it would end this test).
local T = require "sfwb.testing"
local P = require("sfwb.tiny").build(T.tmpdir("degenerate") .. "/tiny")

local TINY = {dim = 32, ffn_dim = 48, num_heads = 2, num_layers = 1, in_dim = 16, out_dim = 16,
              text_dim = 8, text_len = 4, freq_dim = 16}

local function shape_str(s) return "[" .. table.concat(s, ", ") .. "]" end

T.case("wan forward: zero B, F, H or W is an error, causal and bidirectional, cpu and emu", function()
  for _, dev in ipairs({"cpu", T.test_device()}) do -- emu:0, or $SFWB_TEST_DEVICE
    for _, causal in ipairs({false, true}) do
      sfwb.manual_seed(1)
      local m = sfwb.wan.new(TINY, {causal = causal, num_frame_per_block = 3, device = dev})
      for _, s in ipairs({{1, 16, 3, 0, 12}, {1, 16, 3, 4, 0}, {1, 16, 0, 4, 4}, {0, 16, 3, 4, 4}}) do
        local x = sfwb.zeros(s, {device = dev})
        local t = sfwb.zeros({s[1]}, {device = dev})
        local ctx = sfwb.zeros({math.max(s[1], 1), 4, 8}, {device = dev})
        local ok, err = pcall(m.forward, m, x, t, ctx)
        T.check(not ok, "error for " .. shape_str(s))
        T.check(tostring(err):find("wan forward", 1, true), "names the model: " .. tostring(err))
      end
    end
  end
end)

T.case("VAE, T5 and pipeline: zero sizes are errors", function()
  local vae = sfwb.vae.load(P.wan_dir .. "/Wan2.1_VAE.pth")
  for _, s in ipairs({{1, 3, 1, 0, 16}, {1, 3, 1, 16, 0}, {1, 3, 0, 16, 16}, {0, 3, 1, 16, 16}}) do
    local ok = pcall(vae.encode, vae, sfwb.zeros(s))
    T.check(not ok, "vae encode " .. shape_str(s))
  end
  for _, s in ipairs({{1, 1, 16, 0, 2}, {1, 1, 16, 2, 0}, {1, 0, 16, 2, 2}, {0, 1, 16, 2, 2}}) do
    local ok = pcall(vae.decode, vae, sfwb.zeros(s))
    T.check(not ok, "vae decode " .. shape_str(s))
  end
  local t5 = sfwb.t5.load(P.wan_dir .. "/models_t5_umt5-xxl-enc-bf16.pth", {tokenizer = P.wan_dir .. "/google/umt5-xxl"})
  T.check(not pcall(t5.encode, t5, {}), "t5 encode of no prompts")
  local m = sfwb.wan.load(P.wan_dir, {causal = true, num_frame_per_block = 3})
  local p = sfwb.pipeline.causal{generator = m, text_encoder = t5, vae = vae, denoising_step_list = {1000, 500},
                                 num_frame_per_block = 3}
  for _, o in ipairs({{num_frames = 0}, {num_frames = -3}, {height = 4}, {width = 0}, {height = 0}}) do
    o.prompts = {"x"}
    o.seed = 1
    local ok, err = pcall(p.generate, p, o)
    local k, v = next(o)
    T.check(not ok, "generate with a degenerate size: " .. tostring(err))
  end
end)

T.done()
