-- bench_objectives.lua — training steps per second of every objective sfwb has (dmd, sid, causvid,
-- gan, diffusion, ode) on the tiny set's DiT (sfwb.tiny.dit_config: dim 64, 4 layers; 6 latent frames of 8x12,
-- blocks of 3), f32 on the CPU, one generator and one critic update per step (dfake_gen_update_ratio 1).
-- Prints "objective steps_per_s steps_per_cpu_s" lines.
local steps = tonumber(arg[1] or "4")
local cfgd = {}
for k, v in pairs(require("sfwb.tiny").dit_config) do cfgd[k] = v end
cfgd.text_len = 16
local F, H, W = 6, 8, 12
local function lmdb_rows()
  local rows = {}
  for i = 1, 4 do rows[i] = {prompts = "p" .. i, ode_latent = sfwb.randn({4, F, 16, H, W}), idx = i - 1} end
  return rows
end
local function te(p) return sfwb.randn({#p, 16, cfgd.text_dim}) end
local base = {seed = 1, lr = 1e-5, lr_critic = 1e-5, guidance_scale = 3.0, batch_size = 1, num_frame_per_block = 3,
              denoising_step_list = {1000, 750, 500, 250}, warp_denoising_step = true, num_training_frames = F,
              image_or_video_shape = {1, F, 16, H, W}, model_kwargs = {timestep_shift = 5.0}, timestep_shift = 5.0,
              dfake_gen_update_ratio = 1, negative_prompt = "x"}
local runs = {
  {name = "dmd", cfg = {trainer = "score_distillation", distribution_loss = "dmd"}},
  {name = "sid", cfg = {trainer = "score_distillation", distribution_loss = "sid"}},
  {name = "causvid", cfg = {trainer = "score_distillation", distribution_loss = "causvid"}, lmdb = true},
  {name = "gan", cfg = {trainer = "gan", gen_lr = 1e-5, critic_lr = 1e-5, num_class = 1, gan_feature_blocks = {1, 2, 3},
                        r1_weight = 0.1, r2_weight = 0.1}, lmdb = true},
  {name = "diffusion", cfg = {trainer = "diffusion"}, lmdb = true},
  {name = "ode", cfg = {trainer = "ode"}, lmdb = true},
}
for _, r in ipairs(runs) do
  sfwb.manual_seed(0)
  local cfg = {}
  for k, v in pairs(base) do cfg[k] = v end
  for k, v in pairs(r.cfg) do cfg[k] = v end
  local parts = {generator = sfwb.wan.new(cfgd, {causal = true, num_frame_per_block = 3}),
                 real_score = sfwb.wan.new(cfgd), fake_score = sfwb.wan.new(cfgd), text_encoder = te,
                 dataset = r.lmdb and lmdb_rows() or {"a", "b", "c"}}
  local tr = sfwb.train.new(cfg, parts)
  tr:step() -- warm-up
  local t0, c0 = sfwb.time(), os.clock()
  for _ = 1, steps do tr:step() end
  -- wall clock, and process CPU time (all threads; steadier on a shared machine)
  print(string.format("%s %.4f %.4f", r.name, steps / (sfwb.time() - t0), steps / (os.clock() - c0)))
end
