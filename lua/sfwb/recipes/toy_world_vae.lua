-- sfwb/recipes/toy_world_vae.lua — the toy world's VAE stage: a tiny Wan VAE (real key names and shapes,
-- both temporal stages, z_dim 16, /8 spatially) trained from random weights by AdamW through
-- sfwb.vae_train (conv backward in sfwb), saved as a Wan2.1_VAE.pth that sfwb.vae.load reads; then the
-- latent normalisation is folded into conv1/conv2 so the training data's latents are zero-mean,
-- unit-variance per channel under Wan's fixed mean/std (the diffusion stages expect unit-scale latents).
local sfwb = require "sfwb"
local json = require "sfwb.json"
local W = require "sfwb.toy_world"

local M = {}

-- loss weights: ball pixels (colour sum well above the background's) count `ball_weight` times. The
-- balls cover 2-10% of a frame; at 10x a net that draws only the background sat on that plateau for
-- ~300 steps (issue 15's 1.5% of frames right), at 30x it leaves it within ~100
M.ball_weight = 30

-- the start of training: every residual branch's last conv zeroed (each block starts as its shortcut, so
-- the input reaches the bottleneck and the output undistorted by 12 random blocks) and the decoder's
-- output conv zeroed with its bias at the near-black background (-0.9), so step 0 draws the background
-- and the gradient goes straight to the balls
function M.init_for_training(sd)
  for k, v in pairs(sd) do
    if k:match("residual%.6%.weight$") or k:match("residual%.6%.bias$") then sd[k] = v * 0 end
  end
  -- the encoder's first conv starts as R, G, B and their sum (centre tap of the current frame) on top of
  -- a small random part: from a random start the encoder told blue from green by a latent distance of
  -- 1.6 (red from the others: ~15) after 400 steps, and decoded both as the same teal; colour has to be in
  -- the features from the start for the balls' colours to come out
  do
    local w = sd["encoder.conv1.weight"] * 0.1 -- [dim, 3, 3, 3, 3], older taps zeroed below
    local id = sfwb.zeros(w:shape())
    for c = 1, math.min(3, w:size(1)) do id[c][c][3][2][2] = 1 end
    if w:size(1) >= 4 then for c = 1, 3 do id[4][c][3][2][2] = 1 / 3 end end
    sd["encoder.conv1.weight"] = w + id
  end
  -- the middle attention starts as the identity too (its output projection zeroed): trained on crops it
  -- sees fewer positions than at 64 x 64, so it only comes in as far as it helps
  for k, v in pairs(sd) do
    if k:match("middle%.1%.proj%.") then sd[k] = v * 0 end
  end
  sd["decoder.head.2.weight"] = sd["decoder.head.2.weight"] * 0
  sd["decoder.head.2.bias"] = sd["decoder.head.2.bias"] * 0 - 0.9
  -- the temporal convs start as copies: the encoder's (stride 2, taps t-2, t-1, t) keep the newest frame
  -- and the decoder's (causal, out channels = two frames' halves) give both frames the current one, so a
  -- latent frame starts as its last video frame and decodes to it repeated 4x: what the image phase
  -- learns (below) holds for every frame from step 0 and training only has to add the motion
  for k, v in pairs(sd) do
    local pre = k:match("^(.*)%.time_conv%.weight$")
    if not pre and v:dim() == 5 and v:size(3) == 3 then
      -- a causal 3x3x3 conv is per frame (its two older taps zeroed, and kept at zero: M.per_frame)
      local s = v:shape()
      s[3] = 2
      sd[k] = sfwb.cat({sfwb.zeros(s), v:narrow(3, 3, 1)}, 3)
    elseif pre then
      local co, ci = v:size(1), v:size(2)
      local w = sfwb.zeros(v:shape())
      for c = 1, co do w[c][((c - 1) % ci) + 1][3][1][1] = 1 end
      sd[k] = w
      sd[pre .. ".time_conv.bias"] = sd[pre .. ".time_conv.bias"] * 0
    end
  end
  return sd
end

-- a batch of clips: scene (seed, step, b), a random window of `clip` frames inside its trajectory; with
-- `crop` (a multiple of 8), a crop x crop window on the /8 latent grid holding a ball in the clip's first
-- frame (a random one among those that do): the VAE is convolutional, so crops teach it the same
-- encode/decode at a quarter of the cost per frame (32 of 64)
function M.batch(seed, step, n, clip, span, crop)
  local vids = {}
  for b = 1, n do
    local rng = W.rng(seed * 7919 + step * 131 + b)
    local scene = W.sample_scene(rng, {frames = span})
    local start = rng:int(0, span - clip)
    local v = W.render(scene, {frames = start + clip}):narrow(1, start + 1, clip) -- [clip, 3, H, W]
    if crop and crop < v:size(3) then
      local H, Wd = v:size(3), v:size(4)
      local ball = ((v[1] + 1):sum(1):gt(1.2)):float() -- [H, W]
      local good, all = {}, {}
      for oy = 0, H - crop, 8 do
        for ox = 0, Wd - crop, 8 do
          all[#all + 1] = {oy, ox}
          if ball:narrow(1, oy + 1, crop):narrow(2, ox + 1, crop):sum():item() >= 30 then good[#good + 1] = {oy, ox} end
        end
      end
      local pick = #good > 0 and good or all
      local o = pick[rng:int(1, #pick)]
      v = v:narrow(3, o[1] + 1, crop):narrow(4, o[2] + 1, crop):contiguous()
    end
    vids[b] = v:permute({2, 1, 3, 4})                                              -- [3, clip, H, W]
  end
  return sfwb.stack(vids, 1)
end

local function weights_of(target) -- target [B, T, 3, H, W] in [-1, 1]
  local ball = ((target + 1):sum(3, true):gt(1.2)):float()
  return ball * (M.ball_weight - 1) + 1
end

local function weighted_mse(a, b, w) return (((a - b) ^ 2) * w):mean() / w:mean() end

function M.loss(V, x)
  local lat = V:encode(x)
  local rec = V:decode(lat)
  local target = x:permute({1, 3, 2, 4, 5})
  local l = weighted_mse(rec, target, weights_of(target))
  -- keep the latents bounded (the fold below rescales them to unit variance afterwards)
  return l + (lat * lat):mean() * 1e-4, l
end

-- the decoder phase's loss: the encoder run without gradients (its latents stay what the earlier phases
-- made them), the weighted reconstruction loss plus `td` times the same weighted loss on frame-to-frame
-- differences. Trained on the reconstruction alone, the decoded ball moved too little inside each latent's
-- 4 frames and jumped at the next (docs/toy_world.md: "The decoder phase"); the difference term
-- weighs exactly that motion
function M.decoder_loss(V, x, td)
  local lat = sfwb.no_grad(function() return V:encode(x) end)
  local rec = V:decode(lat)
  local target = x:permute({1, 3, 2, 4, 5})
  local w = weights_of(target)
  local l = weighted_mse(rec, target, w)
  local T = rec:size(2)
  if td == 0 or T < 2 then return l, l end
  local function diff(v) return v:narrow(2, 2, T - 1) - v:narrow(2, 1, T - 1) end
  return l + weighted_mse(diff(rec), diff(target), w:narrow(2, 2, T - 1) + w:narrow(2, 1, T - 1)) * td, l
end

-- the decoder's parameters (and conv2, the decoder side of the latent): what the decoder phase trains
function M.decoder_params(V)
  local out = {}
  for k, v in pairs(V:parameters()) do
    if k:match("^decoder%.") or k:match("^conv2%.") then out[k] = v end
  end
  return out
end

-- per-channel mean/std of the normalised latents of `videos` ([N, 3, T, H, W] in batches)
local function latent_stats(vae, videos)
  local lats = {}
  for i = 1, videos:size(1) do lats[i] = vae:encode(videos:narrow(1, i, 1)) end
  local l = sfwb.cat(lats, 1) -- [N, F, z, h, w]
  local z = l:size(3)
  local per = l:permute({3, 1, 2, 4, 5}):reshape({z, -1})
  return per:mean(2):totable(), per:std(2):totable()
end

-- folds an affine renormalisation of the latents into conv1 (encoder side) and conv2 (decoder side):
-- new latent = (latent - m) / s, and the decoder sees exactly the old input
function M.fold_normalisation(sd, m, s, mean, std)
  local z = #m
  local w1, b1 = sd["conv1.weight"]:clone(), sd["conv1.bias"]:clone() -- [2z, 2z, 1, 1, 1], [2z]
  local w2, b2 = sd["conv2.weight"]:clone(), sd["conv2.bias"]:clone() -- [z, z, 1, 1, 1], [z]
  local W1, B1 = w1:view({2 * z, 2 * z}):totable(), b1:totable()
  local W2, B2 = w2:view({z, z}):totable(), b2:totable()
  for c = 1, z do
    -- mu' = mu / s + M - (M + m S) / s
    for j = 1, 2 * z do W1[c][j] = W1[c][j] / s[c] end
    B1[c] = B1[c] / s[c] + mean[c] - (mean[c] + m[c] * std[c]) / s[c]
  end
  -- conv2'(z') = W (s z' + k) + b, k = M - s M + m S
  local k = {}
  for i = 1, z do k[i] = mean[i] - s[i] * mean[i] + m[i] * std[i] end
  for o = 1, z do
    local add = 0
    for i = 1, z do
      add = add + W2[o][i] * k[i]
      W2[o][i] = W2[o][i] * s[i]
    end
    B2[o] = B2[o] + add
  end
  sd["conv1.weight"] = sfwb.tensor(W1):view(w1:shape())
  sd["conv1.bias"] = sfwb.tensor(B1)
  sd["conv2.weight"] = sfwb.tensor(W2):view(w2:shape())
  sd["conv2.bias"] = sfwb.tensor(B2)
  return sd
end

-- the causal 3x3x3 convs kept per frame (all but the temporal down/up-sampling convs). With their older
-- taps free, a net trained on 9-frame clips degraded along a 33-frame video (each latent's frames were
-- worse than the last: through ~15 stacked causal convs its temporal receptive field spans the whole
-- video, far beyond the 3 latents a clip shows). Per-frame, the only temporal mixing is the resampling
-- convs': a latent sees at most frames 4k-4 .. 4k of the video and decodes from latents k-2 .. k, all of
-- which a 9-frame clip covers, so what the clips teach holds at any length
function M.per_frame(params)
  local out = {}
  for k, v in pairs(params) do
    if not k:match("time_conv") and v:dim() == 5 and v:size(3) == 3 then out[#out + 1] = v end
  end
  return out
end

-- the learning rate at step (0-based): a linear warm-up over `warmup` steps (Adam's first steps at a large
-- rate scatter the zeroed branches), constant, then a cosine decay to a tenth over the last 30% (the
-- balls' edges and colours settle there)
function M.lr_at(lr, step, steps, warmup)
  local f = math.min(1, (step + 1) / math.max(warmup or 0, 1))
  local d0 = math.floor(0.7 * steps)
  if step >= d0 and steps > d0 then
    f = f * (0.1 + 0.45 * (1 + math.cos(math.pi * (step - d0) / (steps - d0))))
  end
  return lr * f
end

-- runs (or resumes) the stage. cfg: {dir=, seed=, steps=, batch=, clip=, span=, lr=, dim=, save_every=,
-- decoder_steps=, decoder_td=, decoder_lr=, progress=fn(step, steps, loss)}; returns {steps=, seconds=,
-- losses={...}, path=}. After `steps` (image, then clip phase), `decoder_steps` more train the decoder alone
-- (M.decoder_loss, a fresh AdamW over M.decoder_params and its own warm-up and cosine tail): the encoder, so
-- the latents every later stage trains on, are those of the first `steps`, whatever decoder_steps is
function M.train(cfg)
  local dir = cfg.dir
  local path = dir .. "/Wan2.1_VAE.pth"
  local state_path = dir .. "/train_state.json"
  local st = {step = 0, losses = {}, seconds = 0}
  local sd
  local f = io.open(state_path, "r")
  if f then
    f:close()
    st = json.read(state_path)
    sd = sfwb.load(dir .. "/last.pth")
  else
    sfwb.manual_seed(cfg.seed)
    sd = M.init_for_training(sfwb.tiny.vae_state_dict({dim = cfg.dim, z_dim = 16, dim_mult = {1, 2, 4, 4},
      num_res_blocks = 1}))
  end
  local V = sfwb.vae_train.new(sd)
  local dsteps = cfg.decoder_steps or 0
  local total = cfg.steps + dsteps
  local function decoder_optimizer()
    return sfwb.optim.adamw(M.decoder_params(V), {lr = cfg.decoder_lr or cfg.lr, weight_decay = 0})
  end
  -- the saved optimizer is the phase's: the joint one up to `steps`, the decoder's after (at exactly `steps`,
  -- a run that ended there and goes on with a decoder phase, the decoder's starts fresh)
  if st.decoder_from and st.step > st.decoder_from and st.decoder_from ~= cfg.steps then
    error(string.format("%s: its decoder phase began after %d steps; %d steps would train the encoder again "
      .. "after it (start the VAE stage afresh, or keep its steps)", state_path, st.decoder_from, cfg.steps), 0)
  end
  local opt, opt_decoder
  if st.step >= cfg.steps and dsteps > 0 then
    opt, opt_decoder = decoder_optimizer(), true
    if st.step > cfg.steps then opt:load_state_dict(sfwb.load(dir .. "/last_optim.pt")) end
  else
    opt = sfwb.optim.adamw(V, {lr = cfg.lr, weight_decay = 0})
    if st.step > 0 then opt:load_state_dict(sfwb.load(dir .. "/last_optim.pt")) end
  end
  local function save()
    -- temporary names keep the suffix: it picks the file format
    sfwb.save(dir .. "/last.tmp.pth", V:state_dict())
    os.rename(dir .. "/last.tmp.pth", dir .. "/last.pth")
    sfwb.save(dir .. "/last_optim.tmp.pt", opt:state_dict())
    os.rename(dir .. "/last_optim.tmp.pt", dir .. "/last_optim.pt")
    json.write(state_path, st)
  end
  local t0 = sfwb.time() - st.seconds
  local warmup = cfg.warmup or 0
  local frozen = M.per_frame(V:parameters())
  local function keep_per_frame()
    sfwb.no_grad(function()
      for _, p in ipairs(frozen) do
        if p.grad then p.grad:narrow(3, 1, 2):fill_(0) end
      end
    end)
  end
  -- one step of the image or clip phase; returns the reconstruction loss
  local function joint_step()
    -- the image phase: single frames (the first-frame path, no temporal conv) are ~4x cheaper per frame and
    -- teach the spatial encoder/decoder where the balls are; the clips after it add the motion
    local img = st.step < (cfg.image_steps or 0)
    local x = M.batch(cfg.seed, st.step, img and (cfg.image_batch or cfg.batch) or cfg.batch, img and 1 or cfg.clip,
      cfg.span, cfg.crop)
    -- the clip phase starts its own warm-up at its own (lower) rate: its first steps at the image phase's
    -- full rate undid what that phase had learnt (the temporal taps' Adam state starts empty)
    local ph0 = cfg.image_steps or 0
    if img or ph0 == 0 then
      opt.param_groups[1].lr = M.lr_at(cfg.lr, st.step, cfg.steps, warmup)
    else
      opt.param_groups[1].lr = M.lr_at(cfg.clip_lr or cfg.lr, st.step - ph0, cfg.steps - ph0, warmup)
    end
    opt:zero_grad()
    local loss, rec = M.loss(V, x)
    loss:backward()
    keep_per_frame()
    opt:step()
    return rec:item()
  end
  -- one step of the decoder phase (clips; a fresh optimizer over the decoder at its first step)
  local function decoder_step()
    if not opt_decoder then opt, opt_decoder = decoder_optimizer(), true end
    st.decoder_from = cfg.steps
    local x = M.batch(cfg.seed, st.step, cfg.batch, cfg.clip, cfg.span, cfg.crop)
    opt.param_groups[1].lr = M.lr_at(cfg.decoder_lr or cfg.lr, st.step - cfg.steps, dsteps, warmup)
    opt:zero_grad()
    local loss, rec = M.decoder_loss(V, x, cfg.decoder_td or 0)
    loss:backward()
    keep_per_frame()
    opt:step()
    return rec:item()
  end
  while st.step < total do
    local l = st.step < cfg.steps and joint_step() or decoder_step()
    st.step = st.step + 1
    st.losses[st.step] = l
    st.seconds = sfwb.time() - t0
    if cfg.progress then cfg.progress(st.step, total, st.losses[st.step], st.seconds) end
    if st.step % cfg.save_every == 0 or st.step == cfg.steps or st.step == total then save() end
  end
  -- the normalisation fold, from the latents of a few fixed clips
  local final = V:state_dict()
  local probe = M.batch(cfg.seed + 1, 0, cfg.probe or 4, cfg.clip, cfg.span)
  local m, s = latent_stats(sfwb.vae.load(final), probe)
  final = M.fold_normalisation(final, m, s, V.mean, V.std)
  sfwb.save(dir .. "/Wan2.1_VAE.tmp.pth", final)
  os.rename(dir .. "/Wan2.1_VAE.tmp.pth", path)
  return {steps = st.step, seconds = st.seconds, losses = st.losses, path = path, latent_mean = m, latent_std = s}
end

return M
