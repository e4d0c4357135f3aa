-- streaming_step.lua (shared by test_train_streaming*.lua) — LongLive's streaming long tuning: two trainer iterations (generator loss, critic
-- loss, twice; no optimizer steps) equal our PyTorch transcription of LongLive v1.0 (tests/ref/streaming_step_ref.py),
-- draw for draw (the reference's draws replayed through tr.rng): losses, chunk positions, and EVERY parameter
-- gradient. The run covers a sequence's first chunk (21 frames with gradient), a chunk after the random overlap
-- (the first frame re-encoded through the VAE, the loss on the new frames only), a chunk past the 33-frame cache
-- (rolled, sink kept) and a new sequence; `switch` adds dmd_switch's prompt switch inside a gradient chunk (recache
-- from the previous frames, zeroed sink, zeroed cross-attention K/V). cpu and emu:0.
local T = require "sfwb.testing"

local function replayer(man, d) -- tr.rng handing back the reference's draws in order (kind and shape checked)
  return (T.replay_rng(man.draws, function(i) return d[string.format("draw_%03d", i)] end))
end

-- the stand-in VAE of the reference: decode = tanh of the first 3 channels, encode = the pixel channels tiled
local C = 16
local vae = {}
function vae:decode(x) return x:narrow(3, 1, 3):tanh() end
function vae:encode(p)
  local q = p:permute({1, 3, 2, 4, 5}):contiguous()
  return sfwb.cat({q, q, q, q, q, q}, 3):narrow(3, 1, C):contiguous() * 0.5
end

local refs = {}
local function ref_dir(variant)
  if not refs[variant] then
    local dir = T.tmpdir("streaming-step-" .. variant)
    -- "checkpoint": the transcription runs LongLive's gradient_checkpointing (each block under
    -- torch.utils.checkpoint(use_reentrant=False), recomputed against the cache as it is at backward time)
    assert(os.execute(string.format("%s tests/ref/streaming_step_ref.py '%s' %s checkpoint", T.python, dir, variant)),
      "tests/ref/streaming_step_ref.py failed")
    refs[variant] = dir
  end
  return refs[variant]
end

local function run(variant, dev, ckpt)
  local dir = ref_dir(variant)
  local man = dofile(dir .. "/manifest.lua")
  local d = sfwb.load(dir .. "/data.safetensors")
  local emb = {}
  for _, k in ipairs({"a", "b", "c", "d"}) do emb[k] = d["prompt_" .. k]:to(dev) end
  local p = {generator = sfwb.wan.load(dir .. "/gen", {causal = true, num_frame_per_block = 3, device = dev}),
             real_score = sfwb.wan.load(dir .. "/real", {device = dev}),
             fake_score = sfwb.wan.load(dir .. "/fake", {device = dev}),
             text_encoder = function(prompts)
               local t = {}
               for i, s in ipairs(prompts) do t[i] = emb[s] end
               return sfwb.cat(t, 1)
             end,
             dataset = {"x"}, vae = vae}
  local cfg = {seed = 1, lr = 1e-3, lr_critic = 1e-3, denoising_step_list = {1000, 750, 500, 250},
               warp_denoising_step = true, ts_schedule = false, num_train_timestep = 1000, timestep_shift = 5.0,
               guidance_scale = 3.0, num_frame_per_block = 3, batch_size = 2, trainer = "score_distillation",
               distribution_loss = variant == "switch" and "dmd_switch" or "dmd",
               image_or_video_shape = {2, 240, 16, 2, 4}, context_noise = 0, ema_weight = 0, device = dev,
               model_kwargs = {timestep_shift = 5.0, local_attn_size = 12, sink_size = 3},
               gradient_checkpointing = ckpt ~= false, slice_last_frames = 21, dfake_gen_update_ratio = 1,
               streaming_training = true, streaming_chunk_size = 21, streaming_max_length = 60,
               streaming_min_new_frame = 12, train_first_chunk = true, global_sink = false,
               switch_mode = "random_choice", switch_choices = {42, 63}}
  local tr = sfwb.train.new(cfg, p)
  local seqs = {{prompts = {"a", "b"}, switch_prompts = {"c", "d"}}, {prompts = {"c", "d"}, switch_prompts = {"a", "b"}}}
  local nseq = 0
  tr.next_batch = function() nseq = nseq + 1; return seqs[nseq] end
  tr._neg = d.neg:to(dev)
  local rp = replayer(man, d)
  tr.rng = rp
  local where = variant .. " on " .. dev .. ": "
  local worst = 0
  for it = 0, 1 do
    local r = man.results[2 * it + 1]
    tr.opt_g:zero_grad()
    local loss, gi = tr:generator_loss()
    T.eq(gi.chunk.start, r.start, where .. "generator chunk start")
    T.eq(gi.chunk.new, r.new, where .. "generator chunk new frames")
    T.eq(rp.count(), man.n_draws[2 * it + 1], where .. "generator step draws")
    T.near(loss:item(), r.loss, 1e-5, where .. "generator loss " .. it)
    loss:backward()
    for k, v in pairs(tr.generator:parameters()) do
      local g = v.grad or sfwb.zeros(v:shape())
      worst = math.max(worst, T.close(g, d[string.format("g%d.%s", it, k)], 1e-4,
                                      where .. "generator grad " .. it .. " " .. k))
    end
    r = man.results[2 * it + 2]
    tr.opt_c:zero_grad()
    local closs, ci = tr:critic_loss()
    T.eq(ci.chunk.start, r.start, where .. "critic chunk start")
    T.eq(rp.count(), man.n_draws[2 * it + 2], where .. "critic draws")
    T.near(closs:item(), r.loss, 1e-5, where .. "critic loss " .. it)
    closs:backward()
    for k, v in pairs(tr.critic:parameters()) do
      local g = v.grad or sfwb.zeros(v:shape())
      worst = math.max(worst, T.close(g, d[string.format("c%d.%s", it, k)], 1e-4, where .. "critic grad " .. it .. " " .. k))
    end
  end
  T.eq(rp.count(), #man.draws, where .. "every draw used")
  return tr, worst
end

return run
