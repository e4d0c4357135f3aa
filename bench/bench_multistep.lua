-- bench_multistep.lua — a 50-step UniPC sample with classifier-free guidance (two forwards a step) of a Wan
-- DiT at real Wan2.1-1.3B block width (dim 1536, 12 heads, ffn 8960, 1 latent frame of 60x104 = 1560 tokens,
-- text 512), sfwb.pipeline.bidirectional_diffusion, f32 on the CPU. Prints "key value" lines.
local layers = tonumber(arg[1] or "2")
local steps = tonumber(arg[2] or "50")
local h, w = tonumber(arg[3] or "60"), tonumber(arg[4] or "104")  -- the latent frame (60x104: 1560 tokens)
local m, x, _, ctx = dofile(arg[0]:gsub("[^/]*$", "") .. "wan_block_sizes.lua")(layers, h, w)
local neg = sfwb.randn({1, 512, 4096})
local p = sfwb.pipeline.bidirectional_diffusion{generator = m, num_inference_steps = steps, guidance_scale = 5.0,
                                                timestep_shift = 8.0, solver = "unipc"}
local noise = x:permute({1, 3, 2, 4, 5}):contiguous()           -- [1, 1, 16, h, w] pipeline layout
sfwb.no_grad(function()
  local t0, c0 = sfwb.time(), os.clock()
  local ran = 0  -- steps the sampler actually ran (the figure is for these; the .sh checks them)
  local r = p:generate{noise = noise, prompt_embeds = ctx, negative_embeds = neg, decode = false,
                       on_step = function(k) ran = k end}
  local s = sfwb.time() - t0
  print(string.format("sample_s %.4f", s))
  print(string.format("sample_cpu_s %.4f", os.clock() - c0))
  print(string.format("steps_per_s %.4f", ran / s))
  print(string.format("steps_run %d", ran))
  print(string.format("latent_absmean %.6f", r.latents:abs():mean():item()))
end)
