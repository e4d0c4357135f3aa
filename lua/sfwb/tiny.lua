-- sfwb/tiny.lua — a complete tiny model set in the REAL file formats, written by sfwb itself: a Wan DiT
-- folder (config.json + diffusion_pytorch_model.safetensors), a umT5 encoder .pth (bf16) with a
-- SentencePiece tokenizer trained by spm_train, a Wan VAE .pth, and a Self-Forcing .pt with
-- generator / generator_ema. Key names and shapes follow the official checkpoints (wan_model_spec §2, §6, §7).
local sfwb = require "sfwb"
local json = require "sfwb.json"

local M = {}

M.dit_config = {
  _class_name = "WanModel", _diffusers_version = "0.30.0", model_type = "t2v",
  dim = 64, ffn_dim = 128, freq_dim = 256, num_heads = 4, num_layers = 4,
  in_dim = 16, out_dim = 16, text_dim = 32, text_len = 512, eps = 1e-6,
  window_size = {-1, -1}, qk_norm = true, cross_attn_norm = true, patch_size = {1, 2, 2},
}
M.t5_config = {vocab = 384, dim = 32, heads = 4, ffn = 64, layers = 2, buckets = 32}
M.vae_config = {dim = 4, z_dim = 16, dim_mult = {1, 2, 4, 4}, num_res_blocks = 1}
-- latent frames 9 (3 blocks of 3) at 8 x 12 latents -> 33 frames of 64 x 96 pixels
M.video = {num_frames = 9, height = 64, width = 96}

-- bump when the set changes: an older cache is rebuilt instead of reused
M.version = "tiny-set-3"

M.prompts = {
  "A majestic eagle soaring through a cloudy sky, cinematic lighting",
  "A medieval castle standing on a foggy mountain, twilight lighting",
  "A peaceful lake at dawn, soft morning mist, serene atmosphere",
  "A massive locomotive rushing through a dark tunnel, sparks flying",
}

local function randn(shape, scale, base)
  local t = sfwb.randn(shape) * scale
  if base and base ~= 0 then t = t + base end
  return t
end
local function w(shape, fan) return randn(shape, 1 / math.sqrt(fan)) end

---------------------------------------------------------------------------------------------------
function M.dit_state_dict(c)
  local D, sd = c.dim, {}
  sd["patch_embedding.weight"] = w({D, c.in_dim, 1, 2, 2}, c.in_dim * 4)
  sd["patch_embedding.bias"] = randn({D}, 0.1)
  sd["text_embedding.0.weight"] = w({D, c.text_dim}, c.text_dim)
  sd["text_embedding.0.bias"] = randn({D}, 0.1)
  sd["text_embedding.2.weight"] = w({D, D}, D)
  sd["text_embedding.2.bias"] = randn({D}, 0.1)
  sd["time_embedding.0.weight"] = w({D, c.freq_dim}, c.freq_dim)
  sd["time_embedding.0.bias"] = randn({D}, 0.1)
  sd["time_embedding.2.weight"] = w({D, D}, D)
  sd["time_embedding.2.bias"] = randn({D}, 0.1)
  sd["time_projection.1.weight"] = randn({6 * D, D}, 0.3 / math.sqrt(D))
  sd["time_projection.1.bias"] = randn({6 * D}, 0.05)
  for i = 0, c.num_layers - 1 do
    local b = "blocks." .. i .. "."
    sd[b .. "modulation"] = randn({1, 6, D}, 0.1)
    for _, a in ipairs({"self_attn", "cross_attn"}) do
      for _, n in ipairs({"q", "k", "v", "o"}) do
        sd[b .. a .. "." .. n .. ".weight"] = w({D, D}, D)
        sd[b .. a .. "." .. n .. ".bias"] = randn({D}, 0.1)
      end
      sd[b .. a .. ".norm_q.weight"] = randn({D}, 0.1, 1.0)
      sd[b .. a .. ".norm_k.weight"] = randn({D}, 0.1, 1.0)
    end
    sd[b .. "norm3.weight"] = randn({D}, 0.1, 1.0)
    sd[b .. "norm3.bias"] = randn({D}, 0.1)
    sd[b .. "ffn.0.weight"] = w({c.ffn_dim, D}, D)
    sd[b .. "ffn.0.bias"] = randn({c.ffn_dim}, 0.1)
    sd[b .. "ffn.2.weight"] = w({D, c.ffn_dim}, c.ffn_dim)
    sd[b .. "ffn.2.bias"] = randn({D}, 0.1)
  end
  sd["head.modulation"] = randn({1, 2, D}, 0.1)
  sd["head.head.weight"] = w({c.out_dim * 4, D}, D)
  sd["head.head.bias"] = randn({c.out_dim * 4}, 0.1)
  return sd
end

-- c.context_offsets (optional, one per head): head h's relative-position bias peaks (+c.context_bias)
-- at key = query + offset, so every token's output carries its neighbours' words. A random T5 mixes its
-- context almost uniformly, and a word's embedding then hardly depends on its sentence: "moving down"
-- after "red" and after "blue" differ by ~12 % of their norm, so a DiT cannot tell which ball the
-- direction belongs to. The real umT5 learnt that binding; a tiny frozen one gets it built in.
function M.t5_state_dict(c)
  local sd = {}
  sd["token_embedding.weight"] = randn({c.vocab, c.dim}, 1.0)
  for l = 0, c.layers - 1 do
    local b = "blocks." .. l .. "."
    sd[b .. "norm1.weight"] = randn({c.dim}, 0.1, 1.0)
    sd[b .. "norm2.weight"] = randn({c.dim}, 0.1, 1.0)
    -- T5 attention has no 1/sqrt(d) scaling: keep q small so softmax does not saturate
    sd[b .. "attn.q.weight"] = w({c.dim, c.dim}, c.dim * c.dim / c.heads)
    for _, n in ipairs({"k", "v", "o"}) do sd[b .. "attn." .. n .. ".weight"] = w({c.dim, c.dim}, c.dim) end
    sd[b .. "ffn.gate.0.weight"] = w({c.ffn, c.dim}, c.dim)
    sd[b .. "ffn.fc1.weight"] = w({c.ffn, c.dim}, c.dim)
    sd[b .. "ffn.fc2.weight"] = w({c.dim, c.ffn}, c.ffn)
    sd[b .. "pos_embedding.embedding.weight"] = randn({c.buckets, c.heads}, 0.5)
    if c.context_offsets then
      assert(#c.context_offsets == c.heads, "t5 config: context_offsets needs one offset per head")
      local bias = sfwb.zeros({c.buckets, c.heads})
      for h, off in ipairs(c.context_offsets) do bias[sfwb._t5.bucket(off, c.buckets) + 1][h] = c.context_bias or 8.0 end
      sd[b .. "pos_embedding.embedding.weight"] = sd[b .. "pos_embedding.embedding.weight"] + bias
    end
  end
  sd["norm.weight"] = randn({c.dim}, 0.1, 1.0)
  for k, v in pairs(sd) do sd[k] = v:bf16() end -- the official file is bf16
  return sd
end

-- Wan VAE keys: encoder/decoder stages as wan_model_spec §7.3 with a configurable width and depth
function M.vae_state_dict(c)
  local sd = {}
  local function conv3(prefix, cout, cin, k)
    local kt, kh, kw = table.unpack(k)
    sd[prefix .. ".weight"] = w({cout, cin, kt, kh, kw}, cin * kt * kh * kw)
    sd[prefix .. ".bias"] = randn({cout}, 0.02)
  end
  local function conv2(prefix, cout, cin, kk)
    sd[prefix .. ".weight"] = w({cout, cin, kk, kk}, cin * kk * kk)
    sd[prefix .. ".bias"] = randn({cout}, 0.02)
  end
  local function gamma(prefix, C, images)
    sd[prefix .. ".gamma"] = images and randn({C, 1, 1}, 0.05, 1.0) or randn({C, 1, 1, 1}, 0.05, 1.0)
  end
  local function res(prefix, cin, cout)
    gamma(prefix .. ".residual.0", cin)
    conv3(prefix .. ".residual.2", cout, cin, {3, 3, 3})
    gamma(prefix .. ".residual.3", cout)
    conv3(prefix .. ".residual.6", cout, cout, {3, 3, 3})
    sd[prefix .. ".residual.6.weight"] = sd[prefix .. ".residual.6.weight"] * 0.5
    if cin ~= cout then conv3(prefix .. ".shortcut", cout, cin, {1, 1, 1}) end
  end
  local function attn(prefix, C)
    gamma(prefix .. ".norm", C, true)
    conv2(prefix .. ".to_qkv", 3 * C, C, 1)
    conv2(prefix .. ".proj", C, C, 1)
  end
  local dim, z, mult, nrb = c.dim, c.z_dim, c.dim_mult, c.num_res_blocks
  local tdown = {false, true, true}
  -- encoder
  local dims = {dim}
  for _, u in ipairs(mult) do dims[#dims + 1] = dim * u end
  conv3("encoder.conv1", dims[1], 3, {3, 3, 3})
  local idx = 0
  for i = 1, #mult do
    local cin, cout = dims[i], dims[i + 1]
    for _ = 1, nrb do
      res("encoder.downsamples." .. idx, cin, cout)
      cin = cout
      idx = idx + 1
    end
    if i ~= #mult then
      local p = "encoder.downsamples." .. idx
      conv2(p .. ".resample.1", cout, cout, 3)
      if tdown[i] then conv3(p .. ".time_conv", cout, cout, {3, 1, 1}) end
      idx = idx + 1
    end
  end
  local top = dims[#dims]
  res("encoder.middle.0", top, top)
  attn("encoder.middle.1", top)
  res("encoder.middle.2", top, top)
  gamma("encoder.head.0", top)
  conv3("encoder.head.2", 2 * z, top, {3, 3, 3})
  conv3("conv1", 2 * z, 2 * z, {1, 1, 1})
  conv3("conv2", z, z, {1, 1, 1})
  -- decoder: dims = [dim*mult[-1]] + reversed(dim*mult)
  local ddims = {dim * mult[#mult]}
  for i = #mult, 1, -1 do ddims[#ddims + 1] = dim * mult[i] end
  local tup = {true, true, false}
  conv3("decoder.conv1", ddims[1], z, {3, 3, 3})
  res("decoder.middle.0", ddims[1], ddims[1])
  attn("decoder.middle.1", ddims[1])
  res("decoder.middle.2", ddims[1], ddims[1])
  idx = 0
  for i = 1, #mult do
    local cin, cout = ddims[i], ddims[i + 1]
    if i > 1 then cin = cin // 2 end -- the previous upsample halved the channels
    for _ = 1, nrb + 1 do
      res("decoder.upsamples." .. idx, cin, cout)
      cin = cout
      idx = idx + 1
    end
    if i ~= #mult then
      local p = "decoder.upsamples." .. idx
      if tup[i] then conv3(p .. ".time_conv", 2 * cout, cout, {3, 1, 1}) end
      conv2(p .. ".resample.1", cout // 2, cout, 3)
      idx = idx + 1
    end
  end
  gamma("decoder.head.0", ddims[#ddims])
  conv3("decoder.head.2", 3, ddims[#ddims], {3, 3, 3})
  return sd
end

---------------------------------------------------------------------------------------------------
-- SentencePiece model with T5's special ids (<pad>=0, </s>=1, <unk>=2, no <s>), trained by spm_train
-- on the demo's corpus, or on `lines` (a list of strings) when given
function M.train_tokenizer(dir, vocab, lines, model_type)
  sfwb.fs.mkdir(dir)
  local corpus = dir .. "/corpus.txt"
  local f = assert(io.open(corpus, "w"))
  if lines then
    for _, l in ipairs(lines) do f:write(l, "\n") end
  end
  local words = {"a", "the", "of", "on", "through", "at", "in", "with", "and", "sky", "light", "water", "forest",
                 "city", "night", "morning", "river", "mountain", "ocean", "bird", "train", "fog", "snow", "rain",
                 "sun", "moon", "slow", "motion", "camera", "pan", "close", "up", "wide", "shot", "golden", "hour"}
  for i = 1, lines and 0 or 60 do
    for _, p in ipairs(M.prompts) do f:write(p, "\n") end
    local line = {}
    for j = 1, 12 do line[j] = words[((i * 7 + j * 13) % #words) + 1] end
    f:write(table.concat(line, " "), "\n")
  end
  f:close()
  local log = dir .. "/spm_train.log"
  -- run inside dir with relative names and one thread: the model embeds its trainer arguments, so the
  -- file is the same wherever the set is built
  local rc = sfwb.fs.run({"spm_train", "--input=corpus.txt", "--model_prefix=spiece", "--num_threads=1",
    "--vocab_size=" .. vocab, "--model_type=" .. (model_type or "unigram"), "--character_coverage=1.0", "--pad_id=0", "--eos_id=1",
    "--unk_id=2", "--bos_id=-1", "--hard_vocab_limit=false", "--minloglevel=2"}, {stdout = log, stderr = log, cwd = dir})
  if rc ~= 0 then error("spm_train failed (see " .. log .. ")", 0) end
  os.remove(corpus)
  json.write(dir .. "/special_tokens_map.json", {eos_token = "</s>", pad_token = "<pad>", unk_token = "<unk>"})
  json.write(dir .. "/tokenizer_config.json", {model_max_length = 512, eos_token = "</s>", pad_token = "<pad>",
                                              unk_token = "<unk>", tokenizer_class = "T5Tokenizer"})
end

local function yaml_list(t)
  local r = {}
  for i, v in ipairs(t) do r[i] = tostring(v) end
  return "[" .. table.concat(r, ", ") .. "]"
end

-- builds the whole set in `dir` (skipped when dir/READY exists); returns the paths
function M.build(dir, o)
  o = o or {}
  local paths = {
    wan_dir = dir .. "/Wan2.1-T2V-tiny",
    checkpoint = dir .. "/checkpoints/self_forcing_tiny.pt",
    config = dir .. "/configs/self_forcing_tiny.yaml",
    prompts = dir .. "/prompts.txt",
  }
  local f = io.open(dir .. "/READY", "r")
  if f then
    local stamp = f:read("l")
    f:close()
    if stamp == M.version and not o.force then return paths, false end
  end
  local t0 = sfwb.time()
  for _, d in ipairs({paths.wan_dir .. "/google/umt5-xxl", dir .. "/checkpoints", dir .. "/configs"}) do
    sfwb.fs.mkdir(d)
  end
  sfwb.manual_seed(o.seed or 20251207)
  local c = M.dit_config
  local base = M.dit_state_dict(c)
  json.write(paths.wan_dir .. "/config.json", c)
  sfwb.save(paths.wan_dir .. "/diffusion_pytorch_model.safetensors", base)
  -- Self-Forcing checkpoint: the trained generator drifted from the base; its EMA drifted less
  local gen, ema = {}, {}
  local names = {}
  for k in pairs(base) do names[#names + 1] = k end
  table.sort(names) -- the draws in a fixed order: the set is the same on every build and machine
  for _, k in ipairs(names) do
    local v = base[k]
    local step = sfwb.randn(v:shape()) * (0.15 * (v:std():item() + 0.05))
    gen["model." .. k] = v + step
    ema["model." .. k] = v + step * 0.5
  end
  sfwb.save(paths.checkpoint, {generator = gen, generator_ema = ema})
  M.train_tokenizer(paths.wan_dir .. "/google/umt5-xxl", M.t5_config.vocab - 128)
  sfwb.save(paths.wan_dir .. "/models_t5_umt5-xxl-enc-bf16.pth", M.t5_state_dict(M.t5_config))
  sfwb.save(paths.wan_dir .. "/Wan2.1_VAE.pth", M.vae_state_dict(M.vae_config))
  local v = M.video
  local cf = assert(io.open(dir .. "/configs/default_config.yaml", "w"))
  cf:write("independent_first_frame: false\nwarp_denoising_step: false\nsame_step_across_blocks: true\n",
           "num_training_frames: 21\ncontext_noise: 0\ncausal: true\n")
  cf:close()
  cf = assert(io.open(paths.config, "w"))
  cf:write("# tiny Self-Forcing DMD config for the sfwb demo (same keys as configs/self_forcing_dmd.yaml)\n",
           "# paths are relative to this folder: build/sfwb recipes/train_dmd.lua --config_path <this file> trains\n",
           "generator_ckpt: ../checkpoints/self_forcing_tiny.pt\n",
           "wan_models_dir: ..\ngenerator_name: Wan2.1-T2V-tiny\nreal_name: Wan2.1-T2V-tiny\nfake_name: Wan2.1-T2V-tiny\n",
           "data_path: ../prompts.txt\nnum_training_frames: 3\nmin_num_training_frames: 3\n",
           "lr: 2.0e-06\nlr_critic: 4.0e-07\ndfake_gen_update_ratio: 5\nema_weight: 0.99\nema_start_step: 4\nlog_iters: 4\n",
           "guidance_scale: 3.0\nseed: 1\n",
           "denoising_step_list: ", yaml_list({1000, 750, 500, 250}), "\n",
           "warp_denoising_step: true\nnum_frame_per_block: 3\nindependent_first_frame: false\n",
           "context_noise: 0\ntimestep_shift: 5.0\n",
           "image_or_video_shape: ", yaml_list({1, (v.num_frames - 1) // 4 + 1, 16, v.height // 8, v.width // 8}), "\n",
           "model_kwargs:\n  timestep_shift: 5.0\n")
  cf:close()
  local pf = assert(io.open(paths.prompts, "w"))
  for _, p in ipairs(M.prompts) do pf:write(p, "\n") end
  pf:close()
  local rf = assert(io.open(dir .. "/READY", "w"))
  rf:write(M.version, "\n", os.date("!%Y-%m-%dT%H:%M:%SZ"), "\n")
  rf:close()
  return paths, true, sfwb.time() - t0
end

return M
