-- sfwb/train/init.lua — training entry points: sfwb.train.dmd(cfg [, parts]) (Self-Forcing DMD).
local M = {}

function M.dmd(cfg, parts) return require("sfwb.train.dmd").new(cfg, parts) end

-- sfwb.train.plan(cfg, {gpus=, gpu_memory_gb=}): per-rank memory of a config (sfwb/train/plan.lua)
function M.plan(cfg, o) return require("sfwb.train.plan").plan(cfg, o) end

return M
