-- test_train_sid.lua — sfwb.train.sid (model/sid.py) against our PyTorch transcription (tests/ref/sid_ref.py):
-- the SiD generator loss for a fixed generated x, dLoss/dx and the fake score's parameter gradients (the loss
-- backpropagates through both score networks), on cpu and emu:0; the dispatch builds it from a config.
local sfwb = require "sfwb"
local T = require "sfwb.testing"

if not T.have_torch then print("SKIP: needs python3-torch"); T.done() end

local TINY = {dim = 32, ffn_dim = 48, num_heads = 2, num_layers = 1, in_dim = 16, out_dim = 16,
              text_dim = 8, text_len = 4, freq_dim = 16}

local function config(extra)
  local cfg = {trainer = "score_distillation", distribution_loss = "sid", seed = 7, guidance_scale = 3.0,
               denoising_step_list = {1000, 750, 500, 250}, warp_denoising_step = true, num_frame_per_block = 3,
               num_training_frames = 3, image_or_video_shape = {1, 3, 16, 2, 4}, model_kwargs = {timestep_shift = 5.0},
               negative_prompt = "blurry"}
  for k, v in pairs(extra or {}) do cfg[k] = v end
  return cfg
end

for _, alpha in ipairs({1.0, 0.5}) do
  local dir = T.tmpdir("sid-ref")
  assert(os.execute(string.format("%s tests/ref/sid_ref.py '%s' %s", T.python, dir, alpha)), "sid_ref.py failed")
  local man = dofile(dir .. "/manifest.lua")
  local d = sfwb.load(dir .. "/data.safetensors")
  for _, dev in ipairs({"cpu", T.test_device() or "emu:0"}) do -- emu:0, or $SFWB_TEST_DEVICE
    local ok_dev = false
    for _, x in ipairs(sfwb.devices()) do if x == dev then ok_dev = true end end
    if ok_dev then
      T.case(string.format("SiD loss and gradients (alpha %g, %s)", alpha, dev), function()
        local p = {generator = sfwb.wan.new(TINY, {causal = true, num_frame_per_block = 3}),
                   real_score = sfwb.wan.load(dir .. "/real"), fake_score = sfwb.wan.load(dir .. "/fake"),
                   text_encoder = function() error("not used") end, dataset = {"x"}}
        if dev ~= "cpu" then for _, m in pairs({p.generator, p.real_score, p.fake_score}) do m:to(dev) end end
        local tr = sfwb.train.new(config({sid_alpha = alpha}), p)
        T.eq(tr.objective, "sid")
        local x = d.x:to(dev):clone():requires_grad_(true)
        local loss, g = tr:dmd_loss_from(x, d.t:to(dev), d.noise:to(dev), d.ctx:to(dev), {negative = d.neg:to(dev)})
        T.eq(g, 0)
        T.near(loss:item(), man.loss, 1e-5, "SiD loss")
        loss:backward()
        T.close(x.grad:cpu(), d.grad_x, 1e-4, "dLoss/dx")
        local worst = 0
        for k, prm in pairs(tr.critic:parameters()) do
          worst = math.max(worst, T.close(prm.grad:cpu(), d["g." .. k], 1e-4, "fake score grad " .. k))
        end
        print(string.format("  loss %.6g, worst fake-score gradient error %.3g", loss:item(), worst))
      end)
    end
  end
end

T.case("SiD trains: a generator and a critic step", function()
  sfwb.manual_seed(3)
  local p = {generator = sfwb.wan.new(TINY, {causal = true, num_frame_per_block = 3}),
             real_score = sfwb.wan.new(TINY), fake_score = sfwb.wan.new(TINY),
             text_encoder = function(prompts) return sfwb.ones({#prompts, 4, 8}) end, dataset = {"a", "b"}}
  local tr = sfwb.train.sid(config({dfake_gen_update_ratio = 1, lr = 1e-3, lr_critic = 1e-3}), p)
  local info = tr:step()
  T.check(info.generator_loss == info.generator_loss and info.critic_loss == info.critic_loss, "finite losses")
  T.raises(function() sfwb.train.sid(config({sid_alpha = "big"}), p) end, "sid_alpha")
end)

T.done()
