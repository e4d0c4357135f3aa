-- sfwb/recipes/schema.lua — the config keys the inference recipes (generate, extract_attention, compare,
-- interactive) accept, for sfwb.config.check: their configs are the originals' training configs merged
-- over default_config.yaml (Self-Forcing's inference.py reads those) or LongLive's inference configs, so
-- every trainer key is known here with the trainers' types (lua/sfwb/train/schema.lua), plus the
-- inference keys (default_config.yaml's, inference.py's) and LongLive's (adapter, lora_ckpt, global_sink,
-- switch_frame_indices). A typo is warned with the nearest key and the file; a wrong type is an error
-- before any weights load; a value that selects what sfwb lacks (adapter.type other than lora,
-- generator_type other than causal/bidirectional) is refused.
local T = require "sfwb.train.schema"

local M = {}

local s = {}
for _, part in ipairs({T.dmd, T.diffusion, T.ode}) do
  for k, v in pairs(part) do if s[k] == nil then s[k] = v end end
end
-- which trainer a config names selects nothing at inference
s.trainer, s.distribution_loss = "string", "string"
s.i2v = "boolean"
s.model_kwargs = {type = "map", keys = {timestep_shift = "number", local_attn_size = "integer", sink_size = "integer",
                                        model_name = "string", num_frame_per_block = "integer"}}
-- inference keys: default_config.yaml / inference.py
for k, v in pairs({height = "integer", width = "integer", num_frames = "integer", num_samples = "integer",
                   num_output_frames = "integer", output_folder = "string", use_ema = "boolean",
                   save_with_index = "boolean", causal = "boolean", model_name = "string",
                   inference_iter = "integer"}) do
  s[k] = v
end
-- LongLive's inference keys
s.adapter = {type = "map", keys = {
  type = {type = "string", values = {"lora"}, why = "LongLive's adapters are LoRA"},
  rank = "integer", alpha = "number", dropout = "number", dtype = "string", verbose = "boolean",
  apply_to_critic = "boolean"}}
s.lora_ckpt, s.global_sink = "string", "boolean"
s.switch_frame_indices = "any" -- "40, 80" or a list or one number (recipes/interactive.lua parses it)
-- LongLive's training-only keys the trainers above do not type (its training configs double as inference configs)
for _, k in ipairs({"streaming_training", "streaming_chunk_size", "streaming_max_length", "streaming_min_new_frame",
                    "switch_mode", "switch_choices", "switch_prompt_path", "train_first_chunk", "max_iters",
                    "max_checkpoints", "vis_ema", "vis_interval", "vis_video_lengths", "val_batch_size",
                    "val_data_path", "val_switch_prompt_path", "text_encoder_cpu_offload",
                    "image_encoder_fsdp_wrap_strategy", "use_infinite_attention"}) do
  if s[k] == nil then s[k] = "ignored" end -- a trainer that reads one keeps its type
end
M.inference = s

return M
