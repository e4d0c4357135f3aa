-- sfwb/train/schema.lua — the config keys the trainers read, for sfwb.config.check: M.common holds
-- what every trainer shares (the loop, log, optimizers, data, models) and the keys sfwb ignores on
-- purpose; M.of(extra) is common + a trainer's own keys. docs/training.md lists the ignored ones.
local M = {}

-- read by the originals for things sfwb does differently or not at all (listed in docs/training.md)
M.ignored = {
  "wandb_host", "wandb_key", "wandb_entity", "wandb_project", "wandb_save_dir", "disable_wandb", -- no wandb: metrics.jsonl / TensorBoard
  "text_encoder_fsdp_wrap_strategy", -- the text encoder is not sharded (it runs once per prompt, no_grad)
  "mixed_precision",       -- the precision is `dtype` (f32 | bf16)
  "gc_interval",           -- Python garbage collection
  "total_batch_size",      -- informational in the original
  "no_visualize",
  -- inference / evaluation keys of default_config.yaml (used by the generate recipe, not the trainer)
  "ckpt_step", "prompt_name", "prompt_path", "eval_first_n", "num_samples", "height", "width", "num_frames",
  "causal", "config_name",
}

M.common = {
  trainer = "string", distribution_loss = "string", seed = "integer", data_seed = "integer",
  lr = "number", lr_critic = "number", beta1 = "number", beta2 = "number", beta1_critic = "number",
  beta2_critic = "number", weight_decay = "number", max_grad_norm_generator = "number", max_grad_norm_critic = "number",
  batch_size = "integer", data_path = "string", data_type = {type = "string", values = {"text_file", "text_folder"}},
  data_max_count = "integer",
  logdir = "string", log_iters = "integer", no_save = "boolean", tensorboard = "boolean", resume_step = "integer",
  ema_weight = "number", ema_start_step = "integer",
  generator_ckpt = "string", generator_name = "string", real_name = "string", fake_name = "string",
  wan_models_dir = "string", generator_type = {type = "string", values = {"causal", "bidirectional"}},
  dtype = {type = "string", values = {"f32", "bf16"}}, device = "string",
  gradient_checkpointing = "boolean", negative_prompt = "string",
  denoising_step_list = "numbers", warp_denoising_step = "boolean", num_train_timestep = "integer",
  timestep_shift = "number", image_or_video_shape = "integers", num_frame_per_block = "integer",
  independent_first_frame = "boolean", same_step_across_blocks = "boolean", last_step_only = "boolean",
  context_noise = "number", num_training_frames = "integer", min_num_training_frames = "integer",
  slice_last_frames = "integer",
  model_kwargs = {type = "map", keys = {timestep_shift = "number", local_attn_size = "integer", sink_size = "integer"}},
  sharding_strategy = {type = "string", values = {"full", "hybrid_full", "hybrid", "hybrid_zero2", "no_shard"}},
  gradient_accumulation_steps = "integer",
  ranks_per_node = "integer", -- the hybrid strategies' node size (sfwb/dist/fsdp.lua: else SFWB_RANKS_PER_NODE, the launcher's)
  -- FSDP units (sfwb/dist/fsdp.lua): per transformer block, or by torch's size rule (min_num_params 5e7)
  generator_fsdp_wrap_strategy = {type = "string", values = {"size", "transformer"}},
  real_score_fsdp_wrap_strategy = {type = "string", values = {"size", "transformer"}},
  fake_score_fsdp_wrap_strategy = {type = "string", values = {"size", "transformer"}},
  i2v = "boolean", -- DMD and SiD train I2V (sfwb.train.i2v); the trainers without it refuse it themselves
  load_raw_video = {type = "boolean", refuse = {[true] = "training on raw videos (VAE-encoded on the fly) is not implemented; use an LMDB of latents"}},
  discriminator_lr_multiplier = "number",
}
for _, k in ipairs(M.ignored) do M.common[k] = "ignored" end

function M.of(extra)
  local s = {}
  for k, v in pairs(M.common) do s[k] = v end
  for k, v in pairs(extra or {}) do s[k] = v end
  return s
end

-- the DMD trainer's own keys (SiD and CausVid build on it: sfwb.train.new dispatches on these two keys)
M.dmd = M.of({
  distribution_loss = {type = "string", values = {"dmd", "sid", "causvid", "dmd_switch"},
                       why = "the score-distillation objectives sfwb has; sfwb.train.new dispatches on it"},
  sid_alpha = "number", noise_augmentation_max_timestep = "integer", teacher_forcing = "boolean",
  trainer = {type = "string", values = {"score_distillation"}, why = "sfwb.train.dmd is the score_distillation trainer"},
  dfake_gen_update_ratio = "integer", guidance_scale = "number", real_guidance_scale = "number",
  fake_guidance_scale = "number", ts_schedule = "boolean", ts_schedule_max = "boolean", min_score_timestep = "integer",
  score_timestep_shift = "number", detach_kv_cache = "boolean",
  -- LongLive's streaming long tuning and prompt-switch DMD (sfwb/train/streaming.lua, docs/longlive.md)
  streaming_training = "boolean", streaming_chunk_size = "integer", streaming_max_length = "integer",
  streaming_possible_max_length = "integers", streaming_min_new_frame = "integer", train_first_chunk = "boolean",
  switch_prompt_path = "string", switch_mode = {type = "string", values = {"fixed", "random", "random_choice"}},
  switch_choices = "integers", fixed_switch_index = "integer", min_switch_frame_index = "integer",
  max_switch_frame_index = "integer", global_sink = "boolean",
  adapter = {type = "map", keys = {type = {type = "string", values = {"lora"}, why = "LongLive's only adapter type"},
                                   rank = "integer", alpha = "number", dropout = "number", dtype = "string",
                                   apply_to_critic = "boolean", verbose = "boolean"}},
  lora_ckpt = "string",
  -- LongLive's visualisation / validation during training (sfwb trains; generate with recipes/interactive.lua)
  vis_interval = "ignored", vis_ema = "ignored", vis_video_lengths = "ignored", val_batch_size = "ignored",
  val_data_path = "ignored", val_switch_prompt_path = "ignored",
  denoising_loss_type = {type = "string", values = {"flow"}, why = "the critic's loss in model/dmd.py is the flow loss"},
})

-- the GAN trainer (model/gan.py, trainer/gan.py): the DMD trainer's rollout keys plus its own
M.gan = M.of({})
for k, v in pairs(M.dmd) do M.gan[k] = v end
M.gan.trainer = {type = "string", values = {"gan"}, why = "sfwb.train.gan trains the GAN objective"}
M.gan.distribution_loss = "ignored" -- trainer/gan.py does not read it
M.gan.i2v = {type = "boolean", refuse = {[true] = "the GAN trainer's I2V path is not implemented (trainer/gan.py reads an image latent it defines only for raw videos)"}}
for k, v in pairs({gen_lr = "number", critic_lr = "number", num_class = "integer", concat_time_embeddings = "boolean",
                   relativistic_discriminator = "boolean", gan_g_weight = "number", gan_d_weight = "number",
                   r1_weight = "number", r2_weight = "number", r1_sigma = "number", r2_sigma = "number",
                   critic_timestep_shift = "number", discriminator_warmup_steps = "integer", loss_scale = "number",
                   gan_feature_blocks = "integers", force_start_w_ema = "ignored", force_reset_zero_step = "ignored",
                   force_reinit_ema = "ignored", skip_optimizer_scheduler = "ignored", load = "ignored"}) do
  M.gan[k] = v
end

-- the one-network objectives (sfwb.train.diffusion, sfwb.train.ode): the generator's folder may be named by
-- model_kwargs.model_name (WanDiffusionWrapper's argument); no critic, no teacher
local function one_network(trainer, extra)
  local s = M.of(extra)
  s.trainer = {type = "string", values = {trainer}, why = "sfwb.train." .. trainer .. " trains the " .. trainer .. " objective"}
  s.model_kwargs = {type = "map", keys = {timestep_shift = "number", local_attn_size = "integer", sink_size = "integer",
                                          model_name = "string"}}
  s.max_pair = "integer"
  return s
end

M.diffusion = one_network("diffusion", {
  teacher_forcing = "boolean", -- the causal model's forward over noisy + clean sequences (clean_x, aug_t)
  noise_augmentation_max_timestep = "integer",
  timestep_weighting = {type = "string", values = {"original", "none"}}, -- sfwb: "none" drops the bump weight
  text_dropout = "number",     -- sfwb: prompt -> negative_prompt with this probability (CFG training); 0 = the original
  guidance_scale = "number",   -- read by model/diffusion.py, unused by its loss
  i2v = {type = "boolean", refuse = {[true] = "the diffusion trainer has no I2V conditioning"}},
})

-- trainer/ode.py asserts distribution_loss == "ode" when the key is there
M.ode = one_network("ode", {
  distribution_loss = {type = "string", values = {"ode"}, why = "trainer/ode.py asserts distribution_loss == \"ode\""},
})

return M
