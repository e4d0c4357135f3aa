-- plan_configs.lua — sfwb.train.plan for the originals' shipped training configs (the keys the plan reads,
-- transcribed from their yaml files) on 1 and 8 GPUs of 80 GB, replicated and sharded, with what their
-- READMEs report using. `sfwb bench/plan_configs.lua` (bench/bench_dist.sh).
local SHAPE = {1, 21, 16, 60, 104}
local CONFIGS = {
  {name = "Self-Forcing configs/self_forcing_dmd.yaml", reported = "64 H100 (80 GB), 600 iterations < 2 h; 8 H100 with gradient accumulation",
   cfg = {real_name = "Wan2.1-T2V-14B", mixed_precision = true, sharding_strategy = "hybrid_full",
          gradient_checkpointing = true, image_or_video_shape = SHAPE}},
  {name = "Self-Forcing-Plus configs/self_forcing_dmd.yaml", reported = "64 H100, 3000 iterations < 3 days",
   cfg = {real_name = "Wan2.1-T2V-14B", fake_name = "Wan2.1-T2V-1.3B", generator_name = "Wan2.1-T2V-1.3B",
          mixed_precision = true, sharding_strategy = "hybrid_full", gradient_checkpointing = true, image_or_video_shape = SHAPE}},
  {name = "Self-Forcing-Plus configs/self_forcing_14b_dmd.yaml", reported = "64 H100, 1000 iterations < 12 h",
   cfg = {real_name = "Wan2.1-T2V-14B", fake_name = "Wan2.1-T2V-14B", generator_name = "Wan2.1-T2V-14B",
          mixed_precision = true, sharding_strategy = "full", gradient_checkpointing = true, image_or_video_shape = SHAPE}},
  {name = "LongLive (v1.0) configs/longlive_train_init.yaml", reported = "part of 32 H100 GPU-days (init + long tuning)",
   cfg = {real_name = "Wan2.1-T2V-14B", fake_name = "Wan2.1-T2V-1.3B", mixed_precision = true,
          sharding_strategy = "hybrid_full", gradient_checkpointing = true, image_or_video_shape = SHAPE,
          num_training_frames = 21, slice_last_frames = 21}},
  {name = "LongLive (v1.0) configs/longlive_train_long.yaml (LoRA r256)", reported = "part of 32 H100 GPU-days",
   cfg = {real_name = "Wan2.1-T2V-14B", fake_name = "Wan2.1-T2V-1.3B", mixed_precision = true,
          sharding_strategy = "hybrid_full", gradient_checkpointing = true, image_or_video_shape = {1, 240, 16, 60, 104},
          slice_last_frames = 21, adapter = {type = "lora", rank = 256, dtype = "bfloat16", apply_to_critic = true}}},
}
-- per config: the need (GB per rank, checkpointing as the config sets it) on 1 GPU replicated, and sharded
-- on 8 and 64 GPUs with the whole model gathered during the step (sfwb today) or two blocks (torch FSDP)
local RUNS = {{gpus = 1}, {gpus = 8}, {gpus = 8, gather = "block"}, {gpus = 64, gather = "block"}}
print(("| %-62s | %8s | %8s | %8s | %8s | %s |"):format("config", "1 GPU", "8 model", "8 block", "64 block", "reported by the original"))
print("|" .. ("-"):rep(64) .. "|" .. ("-"):rep(10) .. "|" .. ("-"):rep(10) .. "|" .. ("-"):rep(10) .. "|" .. ("-"):rep(10) .. "|---|")
for _, c in ipairs(CONFIGS) do
  local cells = {}
  for _, o in ipairs(RUNS) do
    local cfg = {}
    for k, v in pairs(c.cfg) do cfg[k] = v end
    if o.gpus == 1 then cfg.sharding_strategy = nil end
    local p = sfwb.train.plan(cfg, {gpus = o.gpus, gpu_memory_gb = 80, gather = o.gather})
    cells[#cells + 1] = ("%6.1f%s"):format(p.need / 2^30, p.fits and "  " or " !")
  end
  print(("| %-62s | %8s | %8s | %8s | %8s | %s |"):format(c.name, cells[1], cells[2], cells[3], cells[4], c.reported))
end
print("(GB per rank on 80 GB GPUs; ! = does not fit)")
if arg[1] == "-v" then
  for _, c in ipairs(CONFIGS) do
    print("\n### " .. c.name)
    print(sfwb.train.plan(c.cfg, {gpus = 8, gpu_memory_gb = 80}):report())
  end
end
