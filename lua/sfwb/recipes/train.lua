-- sfwb/recipes/train.lua — train.py's job: the config (merged over default_config.yaml next to it, CLI
-- key=value overrides) names the objective (trainer / distribution_loss) and sfwb.train.new builds that
-- trainer or refuses with a sentence; never another objective in its place. recipes/train_dmd.lua is the
-- same job for a DMD config only (M.config and M.run serve both).
local sfwb = require "sfwb"
local C = require "sfwb.recipes.common"

local M = {}

-- the command line both recipes take; `usage` / `description` are each recipe's own
function M.spec_for(usage, description)
  local spec = {
    usage = usage,
    description = description,
    options = {
      {"--config_path", "YAML", "training config, merged over default_config.yaml in the same folder"},
      {"--logdir", "DIR", "checkpoints go to DIR/checkpoint_model_NNNNNN/ every log_iters steps; DIR/metrics.jsonl", ""},
      {"--steps", "N", "iterations to run, >= 0 (the original loops forever)", 10},
      {"--resume", "DIR", "a checkpoint folder (model.pt + training_state.pt, or the original's files)"},
      {"--tensorboard", false, "also write TensorBoard event files to the logdir", false},
      {"--wan_models_dir", "DIR", "folder holding Wan2.1-T2V-1.3B/ etc.; default $SFWB_WAN_MODELS or wan_models", nil},
      {"--no_save", false, "never write checkpoints", false},
    },
    epilog = "Extra positional arguments key.sub=value override config entries (as OmegaConf CLI overrides).",
  }
  for _, o in ipairs(spec.options) do
    if o[1] == "--steps" then o.number = true end
  end
  return spec
end

M.spec = M.spec_for("recipes/train.lua --config_path configs/X.yaml [options] [key.sub=value ...]",
                    "Train the objective the config names (trainer: score_distillation (dmd / sid / causvid), "
                    .. "diffusion, ode, gan), as train.py.")

-- the merged config with the command line's logdir / no_save / wan_models_dir / tensorboard
function M.config(o)
  if not o.config_path then error("--config_path is required (see --help)", 0) end
  local folder = o.config_path:match("^(.*)/[^/]*$") or "."
  local defaults = folder .. "/default_config.yaml"
  if not sfwb.fs.stat(defaults) then defaults = nil end
  local cfg = sfwb.config.load(o.config_path, {defaults = defaults, overrides = o._positional})
  -- paths written in the config are found relative to its folder (then the working directory, as the original)
  sfwb.config.resolve_paths(cfg, {"generator_ckpt", "data_path", "switch_prompt_path", "lora_ckpt", "wan_models_dir", "logdir"},
                            folder)
  if o.tensorboard then cfg.tensorboard = true end
  -- assigned after the merge only when given, so a YAML logdir/no_save is not clobbered (the
  -- original's disable_wandb/logdir bug, see training_spec 5.1)
  if o.logdir ~= "" then cfg.logdir = o.logdir end
  if o.no_save then cfg.no_save = true end
  if o.wan_models_dir then cfg.wan_models_dir = o.wan_models_dir end
  return cfg
end

function M.run(o, cfg, build)
  -- the step count and the output folder before any model loads
  if type(o.steps) ~= "number" or o.steps ~= math.floor(o.steps) or o.steps < 0 then
    error(string.format("--steps must be a whole number >= 0, got %s", tostring(o.steps)), 0)
  end
  o.steps = math.tointeger(o.steps)
  if cfg.logdir and cfg.logdir ~= "" and not cfg.no_save then C.output_dir(cfg.logdir, "--logdir") end
  local tr = build(cfg)
  if o.resume then tr:resume(o.resume) end
  local t0 = sfwb.time()
  tr:train{steps = o.steps}
  print(string.format("trained %d iterations in %.1f s (step_count %d)", o.steps, sfwb.time() - t0, tr.step_count))
  return 0, tr
end

function M.main(argv)
  local o = C.parse_args(argv, M.spec)
  if not o then return 0 end
  local cfg = M.config(o)
  print("objective " .. sfwb.train.objective(cfg))
  return M.run(o, cfg, sfwb.train.new)
end

return M
