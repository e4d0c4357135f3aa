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
  sd["decoder.head.2.weight"] = sd["decoder.head.2.weight"] * 0
  sd["decoder.head.2.bias"] = sd["decoder.head.2.bias"] * 0 - 0.9
  -- the temporal convs start as copies: the encoder's (stride 2, taps t-2, t-1, t) keep the newest frame
  -- and the decoder's (causal, out channels = two frames' halves) give both frames the current one, so a
  -- latent frame starts as its last video frame and decodes to it repeated 4x: what the image phase
  -- learns (below) holds for every frame from step 0 and training only has to add the motion
  for k, v in pairs(sd) do
    local pre = k:match("^(.*)%.time_conv%.weight$")
    if not pre and v:dim() == 5 and v:size(3) == 3 then
      -- a causal 3x3x3 conv starts per frame (its two older taps zeroed); training adds the time mixing
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

-- a batch of clips: scene (seed, step, b), a random window of `clip` frames inside its trajectory
function M.batch(seed, step, n, clip, span)
  local vids = {}
  for b = 1, n do
    local rng = W.rng(seed * 7919 + step * 131 + b)
    local scene = W.sample_scene(rng, {frames = span})
    local start = rng:int(0, span - clip)
    local v = W.render(scene, {frames = start + clip}):narrow(1, start + 1, clip) -- [clip, 3, H, W]
    vids[b] = v:permute({2, 1, 3, 4})                                              -- [3, clip, H, W]
  end
  return sfwb.stack(vids, 1)
end

local function weights_of(target) -- target [B, T, 3, H, W] in [-1, 1]
  local ball = ((target + 1):sum(3, true):gt(1.2)):float()
  return ball * (M.ball_weight - 1) + 1
end

function M.loss(V, x)
  local lat = V:encode(x)
  local rec = V:decode(lat)
  local target = x:permute({1, 3, 2, 4, 5})
  local w = weights_of(target)
  local l = (((rec - target) ^ 2) * w):mean() / w:mean()
  -- keep the latents bounded (the fold below rescales them to unit variance afterwards)
  return l + (lat * lat):mean() * 1e-4, l
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
-- progress=fn(step, steps, loss)}; returns {steps=, seconds=, losses={...}, path=}
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
  local opt = sfwb.optim.adamw(V, {lr = cfg.lr, weight_decay = 0})
  if st.step > 0 then opt:load_state_dict(sfwb.load(dir .. "/last_optim.pt")) end
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
  while st.step < cfg.steps do
    -- the image phase: single frames (the first-frame path, no temporal conv) are ~4x cheaper per frame and
    -- teach the spatial encoder/decoder where the balls are; the clips after it add the motion
    local img = st.step < (cfg.image_steps or 0)
    local x = M.batch(cfg.seed, st.step, img and (cfg.image_batch or cfg.batch) or cfg.batch, img and 1 or cfg.clip,
      cfg.span)
    opt.param_groups[1].lr = M.lr_at(cfg.lr, st.step, cfg.steps, warmup)
    opt:zero_grad()
    local loss, rec = M.loss(V, x)
    loss:backward()
    opt:step()
    st.step = st.step + 1
    st.losses[st.step] = rec:item()
    st.seconds = sfwb.time() - t0
    if cfg.progress then cfg.progress(st.step, cfg.steps, st.losses[st.step], st.seconds) end
    if st.step % cfg.save_every == 0 or st.step == cfg.steps then save() end
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
