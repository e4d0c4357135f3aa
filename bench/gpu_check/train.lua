-- train.lua — DMD training steps in the 1.3B setting through the trainer's public API only
-- (sfwb.train.dmd(cfg, parts), tr:step()): generator (causal) and critic 1.3B, bf16, gradient
-- checkpointing, 21 latent frames of 60x104, Self-Forcing's DMD config; random weights, random prompt
-- embeddings. The teacher is a 1.3B model here too (Self-Forcing's runs use the 14B teacher sharded over
-- GPUs; one 14B forward costs ~10x a 1.3B one): the step times are the 1.3B-teacher ones.
local timing = dofile(GPU_CHECK_DIR .. "timing.lua")
local dit = dofile(GPU_CHECK_DIR .. "dit.lua")

return function(s, dev)
  local emb = {}
  local parts = {
    generator = dit.model(s, dev, true), real_score = dit.model(s, dev, false), fake_score = dit.model(s, dev, false),
    text_encoder = function(prompts)
      local rows = {}
      for i, p in ipairs(prompts) do
        emb[p] = emb[p] or sfwb.randn({1, s.text_len, s.text_dim}, {dtype = "bf16", device = dev})
        rows[i] = emb[p]
      end
      return sfwb.cat(rows, 1)
    end,
    dataset = {"a red fox running through fresh snow", "waves breaking on rocks at night"},
  }
  local cfg = {
    seed = 123, dtype = "bf16", device = dev, lr = 2e-6, lr_critic = 4e-7, beta1 = 0.0, beta2 = 0.999,
    beta1_critic = 0.0, beta2_critic = 0.999, weight_decay = 0.01, denoising_step_list = s.steps,
    warp_denoising_step = true, ts_schedule = false, num_train_timestep = 1000, timestep_shift = 5.0,
    guidance_scale = 3.0, batch_size = 1, ema_weight = 0.99, ema_start_step = 200, dfake_gen_update_ratio = 5,
    num_frame_per_block = s.block, num_training_frames = s.frames, gradient_checkpointing = true,
    image_or_video_shape = {1, s.frames, s.in_dim, s.lat_h, s.lat_w}, model_kwargs = {timestep_shift = 5.0},
    negative_prompt = "blurry, static", context_noise = 0, denoising_loss_type = "flow",
  }
  local tr = sfwb.train.dmd(cfg, parts)
  local times = {}
  for i = 1, s.dmd_steps do
    sfwb.cuda.synchronize(dev)
    local t0 = sfwb.time()
    tr:step()             -- step 0: generator + critic; then critic only (dfake_gen_update_ratio 5)
    sfwb.cuda.synchronize(dev)
    times[i] = sfwb.time() - t0
  end
  return {dmd_step_s = times[1], dmd_critic_step_s = times[2], dmd_steps_s = times}
end
