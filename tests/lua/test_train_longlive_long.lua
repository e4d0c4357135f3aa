-- test_train_longlive_long.lua — LongLive's configs/longlive_train_long.yaml as written (merged over its
-- default_config.yaml) trains with tiny networks: streaming long tuning over a 240-frame sequence budget, prompt
-- switches (dmd_switch, switch_choices), LoRA adapters (rank 256 from `adapter`), only the latent size made tiny
-- (16x2x4 instead of 16x60x104) and the VAE a stand-in. Checks: the rollout runs far past 21 frames for real (the
-- 33-frame cache rolls, the loss stays finite), only adapter parameters change, the checkpoint is LongLive's
-- {generator_lora, critic_lora, step} (read back by torch), and lora_ckpt resumes the adapters and the step.
local T = require "sfwb.testing"

local DIR = "tests/data/configs/longlive_v1.0"
local TINY = {model_type = "t2v", dim = 32, ffn_dim = 48, num_heads = 2, num_layers = 1, in_dim = 16, out_dim = 16,
              text_dim = 8, text_len = 4, freq_dim = 16, eps = 1e-6}

local vae = {}
function vae:decode(x) return x:narrow(3, 1, 3):tanh() end
function vae:encode(p)
  local q = p:permute({1, 3, 2, 4, 5}):contiguous()
  return sfwb.cat({q, q, q, q, q, q}, 3):narrow(3, 1, 16):contiguous() * 0.5
end

local tmp = T.tmpdir("longlive-long")
local function write(path, lines)
  local f = assert(io.open(path, "w"))
  f:write(table.concat(lines, "\n"), "\n")
  f:close()
end
write(tmp .. "/prompts.txt", {"a cat", "a dog", "a bird"})
write(tmp .. "/switch.txt", {"a cat runs", "a dog sleeps", "a bird flies"})

local function config(extra)
  local cfg = sfwb.config.load(DIR .. "/longlive_train_long.yaml", {defaults = DIR .. "/default_config.yaml"})
  cfg.wan_models_dir = "/nonexistent"
  cfg.data_path, cfg.switch_prompt_path = tmp .. "/prompts.txt", tmp .. "/switch.txt"
  cfg.image_or_video_shape = {1, 240, 16, 2, 4}  -- tiny latents (the config's 60x104 is 1560 tokens a frame)
  cfg.logdir = tmp .. "/logs"
  for k, v in pairs(extra or {}) do cfg[k] = v end
  return cfg
end

local function parts(cfg)
  sfwb.manual_seed(3)
  local mk = cfg.model_kwargs
  local emb = {}
  return {
    generator = sfwb.wan.new(TINY, {causal = true, num_frame_per_block = cfg.num_frame_per_block,
                                    local_attn_size = mk.local_attn_size, sink_size = mk.sink_size}),
    real_score = sfwb.wan.new(TINY), fake_score = sfwb.wan.new(TINY),
    text_encoder = function(p)
      local t = {}
      for i, s in ipairs(p) do
        emb[s] = emb[s] or sfwb.randn({1, 4, 8})
        t[i] = emb[s]
      end
      return sfwb.cat(t, 1)
    end,
    vae = vae,
  }
end

local tr, base_before, lora_before
T.case("longlive_train_long.yaml builds: streaming, dmd_switch, LoRA rank 256 on generator and critic", function()
  local cfg = config()
  T.eq(sfwb.train.objective(cfg), "dmd_switch")
  tr = sfwb.train.new(cfg, parts(cfg))
  T.check(tr.stream and tr.stream.switch, "the streaming switch trainer")
  T.eq(tr.stream.kv_frames, 33, "cache = local_attn_size 12 + slice_last_frames 21 frames")
  local n = 0
  for k, v in pairs(tr.generator:lora_parameters()) do
    n = n + 1
    if k:find("lora_A", 1, true) then T.eq(v:size(1), 256, "rank") end
  end
  T.check(n > 0 and next(tr.critic:lora_parameters()) ~= nil, "adapters on generator and critic (apply_to_critic)")
  T.eq(tr.ema_weight, 0, "no EMA in LoRA mode")
  base_before = tr.generator:parameters()["blocks.0.self_attn.q.weight"]:clone()
  lora_before = tr.generator:parameters()["blocks.0.self_attn.q.lora_B.weight"]:clone()
end)

T.case("it trains past 21 frames: six steps, the cache rolls, a prompt switch, finite losses", function()
  local log = tr:train{steps = 6, progress = false}
  T.eq(#log, 6)
  for _, r in ipairs(log) do
    T.check(r.critic_loss == r.critic_loss and math.abs(r.critic_loss) < 1e6, "finite critic loss")
  end
  T.check(log[1].generator_loss and log[1].generator_loss == log[1].generator_loss, "generator loss at step 0")
  -- 8 chunks (generator at steps 0 and 5, dfake_gen_update_ratio 5; a critic every step): 21 + 7 x 18
  -- (min_new_frame 18 is the only choice below chunk_size 21)
  T.eq(tr.stream.length, 21 + 7 * 18, "sequence length after 8 chunks")
  T.check(tr.stream.kv.global_end > 33 * tr.stream.kv.tokens_per_frame, "the 33-frame cache rolled")
  T.check(tr.stream.switch_index ~= nil, "a switch frame was drawn")
  local q = tr.generator:parameters()["blocks.0.self_attn.q.weight"]
  T.eq((q - base_before):abs():max():item(), 0, "base weights frozen")
  local b = tr.generator:parameters()["blocks.0.self_attn.q.lora_B.weight"]
  T.check((b - lora_before):abs():max():item() > 0, "the adapters trained")
end)

T.case("checkpoint: LongLive's {generator_lora, critic_lora, step}; lora_ckpt resumes adapters and step", function()
  local dir = tmp .. "/ck"
  tr:save(dir)
  if T.have_torch then
    local script = tmp .. "/read.py"
    write(script, {"import sys, torch",
                   "ck = torch.load(sys.argv[1], map_location='cpu')",
                   "assert sorted(ck) == ['critic_lora', 'generator_lora', 'step'], sorted(ck)",
                   "assert int(ck['step']) == 6, ck['step']",
                   "k = 'base_model.model.blocks.0.self_attn.q.lora_A.weight'",
                   "assert tuple(ck['generator_lora'][k].shape) == (256, 32), ck['generator_lora'][k].shape",
                   "assert all(n.startswith('base_model.model.') for n in ck['critic_lora'])"})
    T.check(os.execute(string.format("%s '%s' '%s/model.pt'", T.python, script, dir)), "torch reads the checkpoint")
  end
  local cfg = config{lora_ckpt = dir .. "/model.pt"}
  local tr2 = sfwb.train.new(cfg, parts(cfg))
  T.eq(tr2.step_count, 6, "step restored")
  local a = tr.generator:parameters()["blocks.0.ffn.0.lora_B.weight"]
  local b = tr2.generator:parameters()["blocks.0.ffn.0.lora_B.weight"]
  T.eq((a - b):abs():max():item(), 0, "generator adapters restored")
  local c1 = tr.critic:parameters()["blocks.0.cross_attn.k.lora_A.weight"]
  local c2 = tr2.critic:parameters()["blocks.0.cross_attn.k.lora_A.weight"]
  T.eq((c1 - c2):abs():max():item(), 0, "critic adapters restored")
  T.raises(function()
    local bad = config{lora_ckpt = tmp .. "/nope.pt"}
    sfwb.train.new(bad, parts(bad))
  end, "nope.pt")
end)

T.done()
