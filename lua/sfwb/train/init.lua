-- sfwb/train/init.lua — training entry points: sfwb.train.dmd(cfg [, parts]) (Self-Forcing DMD).
local M = {}

function M.dmd(cfg, parts) return require("sfwb.train.dmd").new(cfg, parts) end

return M
