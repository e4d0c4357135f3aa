-- test_train_long.lua — training rollouts longer than slice_last_frames (model/base.py _run_generator of
-- Self-Forcing and LongLive): every frame but the last slice - 1 is decoded to pixels without gradient, the last
-- pixel frame is encoded back into one latent frame, which goes before the last slice - 1 frames (which keep
-- their gradient). Checked on the wiring with a recording VAE (the VAE's own numerics are test_vae's).
local sfwb = require "sfwb"
local T = require "sfwb.testing"
local Rollout = require "sfwb.train.rollout"

local B, C, h, w = 1, 16, 2, 4
local function spy_vae()
  local v = {decoded = nil, encoded = nil}
  sfwb.manual_seed(2)
  v.pixels = sfwb.randn({B, 9, 3, 16, 32})
  v.latent = sfwb.randn({B, 1, C, h, w})
  function v:decode(x) self.decoded = x:clone(); return self.pixels end
  function v:encode(x) self.encoded = x:clone(); return self.latent end
  return v
end

local function run(sl, F, vae, min_F)
  sfwb.manual_seed(7)
  local gen = sfwb.randn({B, F, C, h, w})
  gen:requires_grad_(true)
  local out_seen
  local o = {nfpb = 3, num_training_frames = F, min_num_training_frames = min_F or F, grad_window = sl, vae = vae,
             trajectory = function(_, noise)
               if not min_F then T.eq(noise:size(2), F, "rollout length") end
               out_seen = gen:narrow(2, 1, noise:size(2)) * 1
               return out_seen, 0, 0
             end}
  local x, mask = Rollout.run_generator(o, {B, 21, C, h, w}, {})
  return x, mask, gen, out_seen
end

T.case("a 27-frame rollout keeps 21: one re-encoded frame + the last 20 with gradient", function()
  local vae = spy_vae()
  local x, mask, gen = run(21, 27, vae)
  T.eq(x:size(2), 21)
  T.eq(mask, nil, "the minimum length: no mask")
  T.eq((vae.decoded - gen:detach():narrow(2, 1, 7)):abs():max():item(), 0, "decoded: frames 1..7")
  T.eq(table.concat(vae.encoded:shape(), "x"), "1x3x1x16x32", "encoded: the last pixel frame as [B, 3, 1, H, W]")
  T.eq((vae.encoded:select(3, 1) - vae.pixels:select(2, 9)):abs():max():item(), 0)
  T.eq((x:narrow(2, 1, 1) - vae.latent):abs():max():item(), 0, "frame 1 is the re-encoded latent")
  T.eq((x:narrow(2, 2, 20) - gen:narrow(2, 8, 20)):detach():abs():max():item(), 0, "the last 20 frames")
  x:sum():backward()
  local g = gen.grad
  T.eq(g:narrow(2, 1, 7):abs():max():item(), 0, "no gradient through the re-encode")
  T.eq(g:narrow(2, 8, 20):min():item(), 1, "the kept frames carry gradient")
end)

T.case("slice_last_frames -1 keeps every frame; <= the slice is untouched; no VAE is an error", function()
  local x = run(-1, 27, nil)
  T.eq(x:size(2), 27)
  x = run(21, 21, nil)
  T.eq(x:size(2), 21)
  local y, mask = run(21, 27, spy_vae(), 21)   -- a random length in 21..27: 21 frames out either way
  T.eq(y:size(2), 21)
  T.raises(function() run(21, 24, nil) end, "parts.vae")
  local vae = spy_vae()
  local z = run(1, 24, vae)
  T.eq(z:size(2), 1, "slice 1: the re-encoded frame alone")
  T.eq(vae.decoded:size(2), 24)
end)

T.done()
