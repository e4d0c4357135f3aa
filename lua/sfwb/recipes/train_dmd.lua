-- sfwb/recipes/train_dmd.lua — train.py's job for the DMD trainer only: recipes/train.lua's command line,
-- config handling and loop, with a config naming another objective refused (never trained as DMD).
local sfwb = require "sfwb"
local C = require "sfwb.recipes.common"
local Train = require "sfwb.recipes.train"

local M = {}

M.spec = Train.spec_for("recipes/train_dmd.lua --config_path configs/self_forcing_dmd.yaml [options] [key.sub=value ...]",
                        "Self-Forcing DMD training (generator, critic, teacher, EMA) as Self-Forcing's train.py.")

function M.main(argv)
  local o = C.parse_args(argv, M.spec)
  if not o then return 0 end
  local cfg = Train.config(o)
  if cfg.trainer ~= nil and sfwb.train.objective(cfg) ~= "dmd" then
    error(string.format("%s names trainer: %s%s, not DMD: run recipes/train.lua", o.config_path, tostring(cfg.trainer),
                        cfg.distribution_loss and (" / distribution_loss: " .. tostring(cfg.distribution_loss)) or ""), 0)
  end
  return (Train.run(o, cfg, sfwb.train.dmd))
end

return M
