-- sizes.lua — the shapes gpu_check measures. `real`: Wan2.1-T2V-1.3B as Self-Forcing runs it (dim 1536,
-- 12 heads of 128, ffn 8960, 30 layers, text 512 x 4096, 21 latent frames of 60x104 = 1560 tokens after the
-- 1x2x2 patch, chunks of 3 frames, 4 steps, Wan VAE dim 96) — what a GPU run measures. `tiny`: the same
-- code path at sizes the emulated device runs in seconds (head dim stays 128: the kernels' real tiling).
local M = {}

M.real = {
  dim = 1536, ffn_dim = 8960, num_heads = 12, num_layers = 30, text_len = 512, text_dim = 4096, freq_dim = 256,
  in_dim = 16, lat_h = 60, lat_w = 104, frames = 21, block = 3, steps = {1000, 750, 500, 250},
  attn_key_frames = {1, 3, 9, 15, 21}, gemm_rows = {4680, 32760}, text_rows = 512,
  vae = {dim = 96, z_dim = 16, dim_mult = {1, 2, 4, 4}, num_res_blocks = 2},
  reps = 5, reps_long = 2, dmd_steps = 2,
  copy_mb = 256, overlap_gemms = 20, -- ~10 ms of upload under ~10 ms of GEMMs on an H100
}

M.tiny = {
  dim = 256, ffn_dim = 256, num_heads = 2, num_layers = 2, text_len = 16, text_dim = 32, freq_dim = 32,
  in_dim = 16, lat_h = 4, lat_w = 4, frames = 6, block = 3, steps = {1000, 750, 500, 250},
  attn_key_frames = {1, 3, 6}, gemm_rows = {12, 24}, text_rows = 16,
  vae = {dim = 4, z_dim = 16, dim_mult = {1, 2, 4, 4}, num_res_blocks = 1},
  reps = 1, reps_long = 1, dmd_steps = 1,
  copy_mb = 1, overlap_gemms = 2,
}

-- derived: tokens per latent frame after the 1x2x2 patch, head dim
for _, s in pairs(M) do
  s.frame_tokens = (s.lat_h // 2) * (s.lat_w // 2)
  s.head_dim = s.dim // s.num_heads
end

return M
