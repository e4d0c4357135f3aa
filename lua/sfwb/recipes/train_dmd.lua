-- sfwb/recipes/train_dmd.lua — train.py's job for the DMD trainer: config (merged over
-- default_config.yaml next to it), CLI overrides, logdir, a number of iterations with progress.
local sfwb = require "sfwb"
local C = require "sfwb.recipes.common"

local M = {}

M.spec = {
  usage = "recipes/train_dmd.lua --config_path configs/self_forcing_dmd.yaml [options] [key.sub=value ...]",
  description = "Self-Forcing DMD training (generator, critic, teacher, EMA) as Self-Forcing's train.py.",
  options = {
    {"--config_path", "YAML", "training config, merged over default_config.yaml in the same folder"},
    {"--logdir", "DIR", "checkpoints go to DIR/checkpoint_model_NNNNNN/model.pt every log_iters steps", ""},
    {"--steps", "N", "iterations to run (the original loops forever)", 10},
    {"--resume", "DIR", "a checkpoint folder (model.pt, or generator.pt/critic.pt/generator_ema.pt)"},
    {"--wan_models_dir", "DIR", "folder holding Wan2.1-T2V-1.3B/ etc.; default $SFWB_WAN_MODELS or wan_models", nil},
    {"--no_save", false, "never write checkpoints", false},
  },
  epilog = "Extra positional arguments key.sub=value override config entries (as OmegaConf CLI overrides).",
}
for _, o in ipairs(M.spec.options) do
  if o[1] == "--steps" then o.number = true end
end

function M.main(argv)
  local o = C.parse_args(argv, M.spec)
  if not o then return 0 end
  if not o.config_path then error("--config_path is required (see --help)", 0) end
  local defaults = o.config_path:gsub("[^/]*$", "") .. "default_config.yaml"
  local f = io.open(defaults, "r")
  if f then f:close() else defaults = nil end
  local cfg = sfwb.config.load(o.config_path, {defaults = defaults, overrides = o._positional})
  -- assigned after the merge only when given, so a YAML logdir/no_save is not clobbered (the
  -- original's disable_wandb/logdir bug, see training_spec 5.1)
  if o.logdir ~= "" then cfg.logdir = o.logdir end
  if o.no_save then cfg.no_save = true end
  if o.wan_models_dir then cfg.wan_models_dir = o.wan_models_dir end
  -- a config naming another objective is refused, never trained as DMD
  if cfg.trainer ~= nil and sfwb.train.objective(cfg) ~= "dmd" then
    error(string.format("%s names trainer: %s%s, not DMD: run recipes/train.lua", o.config_path, tostring(cfg.trainer),
                        cfg.distribution_loss and (" / distribution_loss: " .. tostring(cfg.distribution_loss)) or ""), 0)
  end
  local tr = sfwb.train.dmd(cfg)
  if o.resume then tr:resume(o.resume) end
  local t0 = sfwb.time()
  tr:train{steps = o.steps}
  print(string.format("trained %d iterations in %.1f s (step_count %d)", o.steps, sfwb.time() - t0, tr.step_count))
  return 0
end

return M
