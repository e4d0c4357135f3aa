-- test_longlive_recipe.lua — recipes/interactive.lua end to end on the tiny model set with a LongLive-style
-- config as LongLive writes it (switch_frame_indices as "a, b", adapter + lora_ckpt, global_sink), a jsonl of
-- segments; the LoRA is honoured (the latents differ without it and equal an in-process run with it).
local sfwb = require "sfwb"
local T = require "sfwb.testing"

local root = T.tmpdir("longlive_recipe")
local P = require("sfwb.tiny").build(root .. "/tiny")
local R = require "sfwb.recipes.interactive"

-- a LoRA checkpoint in LongLive's layout, made by sfwb itself (fresh adapters, B perturbed)
local m0 = sfwb.wan.load(P.wan_dir)
sfwb.manual_seed(11)
m0:lora{rank = 2, alpha = 4}
for k, t in pairs(m0:lora_parameters()) do
  if k:find("lora_B", 1, true) then sfwb.no_grad(function() t:copy_(sfwb.randn(t:shape()) * 0.05) end) end
end
local lora = root .. "/lora.pt"
m0:save_lora(lora)

local jsonl = root .. "/segments.jsonl"
local f = io.open(jsonl, "w")
f:write('{"prompts": ["a red ball rolls", "a blue cube spins", "a green cone falls"]}\n')
f:close()
local out = root .. "/videos"
local cfg = root .. "/longlive_interactive_tiny.yaml"
f = io.open(cfg, "w")
f:write(table.concat({
  "denoising_step_list:", "- 1000", "- 750", "- 500", "- 250",
  "warp_denoising_step: true", "num_frame_per_block: 3",
  "model_kwargs:", "  local_attn_size: 6", "  timestep_shift: 5.0", "  sink_size: 3",
  "data_path: " .. jsonl, "output_folder: " .. out, "inference_iter: -1", "num_output_frames: 12",
  "use_ema: false", "seed: 1", "num_samples: 1", "save_with_index: true",
  "switch_frame_indices: 4, 8", "global_sink: true", "context_noise: 0",
  "generator_ckpt: " .. P.checkpoint, "lora_ckpt: " .. lora,
  "adapter:", '  type: "lora"', "  rank: 2", "  alpha: 4", "  dropout: 0.0", '  dtype: "bfloat16"', "  verbose: false",
}, "\n") .. "\n")
f:close()

T.case("switch_frame_indices parse as interactive_inference.py", function()
  T.eq(table.concat(R.parse_switches("40, 80, 120"), ","), "40,80,120")
  T.eq(table.concat(R.parse_switches(40), ","), "40")
  T.eq(table.concat(R.parse_switches({21, 39}), ","), "21,39")
  T.raises(function() R.parse_switches("4, x") end, "not an integer")
end)

T.case("LongLive's own interactive config as written: switches, window, sink, policy, adapter", function()
  local C = require "sfwb.recipes.common"
  local c = sfwb.config.load("tests/data/configs/longlive_v1.0/longlive_interactive_inference.yaml")
  T.eq(table.concat(R.parse_switches(c.switch_frame_indices), ","), "40,80,120,160,200")
  local s = C.pipeline_settings(c)
  T.eq(s.local_attn_size, 12); T.eq(s.sink_size, 3); T.eq(s.num_frame_per_block, 3)
  T.eq(C.kv_policy(c), "longlive")
  T.eq(c.global_sink, true); T.eq(c.adapter.rank, 256); T.eq(c.adapter.alpha, 256)
end)

T.case("recipes/interactive.lua: LongLive config, jsonl, LoRA honoured, progress per segment", function()
  local lines = {}
  local rc, s = R.main({"--config_path", cfg, "--wan_dir", P.wan_dir, "--height", "32", "--width", "48", "--png",
                        "--save_latents", "--quiet"})
  T.eq(rc, 0)
  T.eq(#s.runs, 1)
  T.eq(#s.runs[1].recaches, 2, "two switches")
  T.eq(s.runs[1].recaches[1].frame, 6, "first block at or after 4")
  T.eq(s.runs[1].recaches[2].frame, 9)
  T.eq(s.provenance.lora.rank, 2)
  local lat = sfwb.load(out .. "/rank0-0-0_lora.latents.safetensors").latents
  T.eq(lat:size(1), 12)
  T.check((lat - lat):abs():sum():item() == 0, "finite latents")
  -- the same run in-process: base + checkpoint + merged LoRA, same seed -> the same latents
  local m = sfwb.wan.load(P.wan_dir, {causal = true, num_frame_per_block = 3})
  m:load_checkpoint(P.checkpoint)
  m:load_lora(lora, {rank = 2, alpha = 4})
  local t5 = sfwb.t5.load(P.wan_dir .. "/models_t5_umt5-xxl-enc-bf16.pth", {tokenizer = P.wan_dir .. "/google/umt5-xxl"})
  local p = sfwb.pipeline.interactive{generator = m, text_encoder = t5, num_frame_per_block = 3, local_attn_size = 6,
                                      sink_size = 3, global_sink = true}
  sfwb.manual_seed(1)
  local noise = sfwb.randn({1, 12, 16, 4, 6})
  local r = p:generate{noise = noise, prompts_list = {{"a red ball rolls"}, {"a blue cube spins"}, {"a green cone falls"}},
                       switch_frame_indices = {4, 8}}
  T.close(r.latents:select(1, 1), lat, 1e-6, "recipe vs in-process")
  -- without the LoRA the video differs
  local _, s2 = R.main({"--config_path", cfg, "--wan_dir", P.wan_dir, "--height", "32", "--width", "48", "--no_lora",
                        "--no_decode", "--quiet", "--output_folder", root .. "/nolora"})
  local lat2 = sfwb.load(root .. "/nolora/rank0-0-0_regular.latents.safetensors").latents
  T.check((lat2 - lat):abs():max():item() > 1e-4, "the LoRA changes the output")
  T.eq(s2.provenance.lora, nil)
  T.raises(function() R.main({"--config_path", cfg, "--wan_dir", P.wan_dir, "--switch_frame_indices", "4"}) end,
           "switch_frame_indices needs 2")
end)

T.done()
