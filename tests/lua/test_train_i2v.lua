-- test_train_i2v.lua — Self-Forcing-Plus's I2V training (i2v: true) on tiny I2V Wan models: the batch's image
-- becomes clip_fea (the image encoder) and y (vae:i2v_condition: mask channels + the latents of the image and
-- zero frames) for every model call; a DMD and a SiD step with a bidirectional I2V generator run end to end.
local sfwb = require "sfwb"
local T = require "sfwb.testing"

local TINY = {model_type = "i2v", dim = 32, ffn_dim = 48, num_heads = 2, num_layers = 1, in_dim = 36, out_dim = 16,
              text_dim = 8, text_len = 4, freq_dim = 16}
local F, H, W = 3, 4, 6

local function setup(objective)
  sfwb.manual_seed(4)
  local vae = sfwb.vae.load(require("sfwb.tiny").vae_state_dict(require("sfwb.tiny").vae_config))
  local calls = {}
  local enc = {encode_image = function(_, img)
    calls[#calls + 1] = img
    return (img:reshape({img:size(1), -1}):mean(2, true) + sfwb.zeros({img:size(1), 1280})):view({img:size(1), 1, 1280})
  end}
  local rows = {}
  for i = 1, 2 do
    rows[i] = {prompts = "p" .. i, idx = i - 1, ode_latent = sfwb.randn({2, F, 16, H, W}),
               img = sfwb.rand({3, 8 * H, 8 * W}) * 2 - 1}
  end
  local parts = {generator = sfwb.wan.new(TINY), real_score = sfwb.wan.new(TINY), fake_score = sfwb.wan.new(TINY),
                 text_encoder = function(p) return sfwb.ones({#p, 4, 8}) end, dataset = rows,
                 image_encoder = enc, vae = vae}
  local cfg = {trainer = "score_distillation", distribution_loss = objective, generator_type = "bidirectional",
               i2v = true, seed = 3, lr = 1e-4, lr_critic = 1e-4, guidance_scale = 3.0, dfake_gen_update_ratio = 1,
               denoising_step_list = {1000, 750, 500, 250}, warp_denoising_step = true, num_frame_per_block = 3,
               num_training_frames = F, image_or_video_shape = {1, F, 16, H, W}, model_kwargs = {timestep_shift = 5.0}}
  return sfwb.train.new(cfg, parts), rows, vae, enc, calls
end

T.case("i2v: true: clip_fea and y from the batch's image", function()
  local tr, rows, vae, enc = setup("dmd")
  T.eq(tr.i2v, true)
  T.eq(tr.i2v_video_frames, 9)
  local batch = sfwb.data.collate({rows[1]})
  local a = tr:batch_args(batch)
  local y = vae:i2v_condition(batch.img, 9)
  T.eq(table.concat(a.cond.y:shape(), "x"), "1x20x3x4x6")
  T.close(a.cond.y, y, 0, "y = vae:i2v_condition(img)")
  T.eq(a.cond.y:narrow(2, 1, 4):narrow(3, 1, 1):min():item(), 1.0)    -- mask: 1 on latent frame 0
  T.eq(a.cond.y:narrow(2, 1, 4):narrow(3, 2, 2):abs():max():item(), 0.0)
  T.close(a.cond.clip_fea, enc:encode_image(batch.img), 0, "clip_fea = image encoder(img)")
end)

for _, obj in ipairs({"dmd", "sid"}) do
  T.case(obj .. " with a bidirectional I2V generator: a generator and a critic step", function()
    local tr, _, _, _, calls = setup(obj)
    local info = tr:step()
    T.check(info.generator_loss == info.generator_loss and info.critic_loss == info.critic_loss, "finite losses")
    T.eq(#calls, 2) -- one image encoding per batch (generator and critic batches)
  end)
end

T.case("i2v without the encoders or images is refused with a sentence", function()
  local cfg = {trainer = "score_distillation", distribution_loss = "dmd", generator_type = "bidirectional", i2v = true,
               guidance_scale = 3.0, wan_models_dir = "/nonexistent", generator_name = "Wan2.1-I2V-14B-480P"}
  local p = {generator = sfwb.wan.new(TINY), real_score = sfwb.wan.new(TINY), fake_score = sfwb.wan.new(TINY),
             text_encoder = function() end, dataset = {"x"}}
  T.raises(function() sfwb.train.new(cfg, p) end, "needs the CLIP image encoder at /nonexistent/Wan2.1-I2V-14B-480P")
  local tr = setup("dmd")
  T.raises(function() tr:batch_args({prompts = {"a"}}) end, "rows with img")
end)

T.done()
