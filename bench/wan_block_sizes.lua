-- wan_block_sizes.lua — what bench_wan.lua and bench_train.lua share: a Wan DiT at real Wan2.1-1.3B block
-- sizes (dim 1536, 12 heads, ffn 8960, 1 latent frame of 60x104 = 1560 tokens, text 512) with its inputs.
-- dofile() it: returns setup(layers [, h, w]) -> m, x, t, context (random, seed 0; the latent frame h x w, 60x104 by default).
return function(layers, h, w)
  sfwb.manual_seed(0)
  local m = sfwb.wan.new({dim = 1536, ffn_dim = 8960, num_heads = 12, num_layers = layers, text_len = 512, text_dim = 4096,
                          freq_dim = 256})
  return m, sfwb.randn({1, 16, 1, h or 60, w or 104}), sfwb.full({1}, 937.5), sfwb.randn({1, 512, 4096})
end
