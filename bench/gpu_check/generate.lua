-- generate.lua — chunk-wise generation end to end as Self-Forcing's inference runs it: 21 latent frames
-- (832x480) in chunks of 3, 4 denoising steps + the clean context pass per chunk, the Wan VAE decoding
-- each chunk as it is done (streaming decode), random prompt embeddings (no text encoder). Reports FPS of
-- the decoded video (frames / wall seconds, decode included, as the paper's 17.0) and the latency of
-- the first chunk (its latents and its decoded frames), plus the DiT-only rate.
local F = dofile(GPU_CHECK_DIR .. "flops.lua")
local tiny = require "sfwb.tiny"

local M = {}

-- the Wan VAE with random weights in the real key layout (built in memory, on the device)
function M.vae(s, dev)
  sfwb.manual_seed(1)
  return sfwb.vae.load(tiny.vae_state_dict(s.vae), {device = dev})
end

function M.run(s, dev, m, vae, ctx)
  local p = sfwb.pipeline.causal{generator = m, vae = vae, denoising_step_list = s.steps, warp_denoising_step = true,
                                 num_frame_per_block = s.block}
  local function once(decode)
    local t0 = sfwb.time()
    local first
    local r = p:generate{prompt_embeds = ctx, num_frames = s.frames, latent_size = {s.lat_h, s.lat_w}, seed = 42, decode = decode,
                         on_block = function(i) if i == 1 then first = sfwb.time() - t0 end end}
    sfwb.sync()
    return r, sfwb.time() - t0, first
  end
  -- first the DiT alone (this also warms the allocator cache, cuBLAS and the kernels), then the measured
  -- run: DiT + streaming VAE decode of each chunk as soon as it is denoised
  local _, dit_s, dit_first = once(false)
  local r, secs, first = once("block")
  local frames = r.video:size(2)
  local g = F.generation(s)
  return {
    fps_chunkwise = frames / secs, seconds = secs, video_frames = frames,
    video_shape = r.video:shape(), first_chunk_latency_s = first,
    dit_only_s = dit_s, dit_only_first_chunk_s = dit_first, fps_dit_only = frames / dit_s,
    generation_tflop = g.total / 1e12, fps_floor_no_vae = frames / F.floor_s(g),
    fps_expected_no_vae = frames / F.expected_s(g),
  }
end

return M
