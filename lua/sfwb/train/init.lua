-- sfwb/train/init.lua — training entry points: one constructor per objective of the originals and
-- sfwb.train.new(cfg [, parts]), train.py's dispatch on cfg.trainer (and cfg.distribution_loss).
local M = {}

-- Self-Forcing-Plus paths the score-distillation trainers do not have yet are refused by name (never trained
-- as T2V causal)
local function refuse_sfp(cfg, who)
  if type(cfg) ~= "table" then return end
  if cfg.i2v == true then
    error(who .. ": i2v: true (Self-Forcing-Plus's I2V training: LMDB img rows through CLIP and the VAE) is "
          .. "not implemented in sfwb yet; it is refused rather than trained as T2V", 3)
  end
end

-- generator_type: bidirectional (Self-Forcing-Plus): the same trainer with BidirectionalTrainingPipeline's rollout
local function bidirectional(tr, cfg)
  if type(cfg) == "table" and cfg.generator_type == "bidirectional" then
    tr.rollout_opts.trajectory = require("sfwb.train.rollout_bidirectional").inference_with_trajectory
    tr.generator_type = "bidirectional"
  end
  return tr
end

function M.dmd(cfg, parts)
  refuse_sfp(cfg, "train.dmd")
  return bidirectional(require("sfwb.train.dmd").new(cfg, parts), cfg)
end
function M.diffusion(cfg, parts) return require("sfwb.train.diffusion").new(cfg, parts) end
function M.ode(cfg, parts) return require("sfwb.train.ode").new(cfg, parts) end

-- objectives of the originals that sfwb does not have yet: refused by name, never replaced by another
local MISSING = {
  gan = "GAN (trainer/gan.py, model/gan.py)",
  dmd_switch = "LongLive's prompt-switch DMD (dmd_switch)",
}
local function missing(what)
  return function()
    error(string.format("train: %s is not implemented in sfwb yet; it is refused rather than run as another objective",
                        MISSING[what]), 2)
  end
end
M.gan = missing("gan")
function M.causvid(cfg, parts)
  refuse_sfp(cfg, "train.causvid")
  if type(cfg) == "table" and cfg.generator_type == "bidirectional" then
    error("train.causvid: generator_type: bidirectional is not a path of the originals (CausVid is causal)", 2)
  end
  return require("sfwb.train.causvid").new(cfg, parts)
end
function M.sid(cfg, parts)
  refuse_sfp(cfg, "train.sid")
  return bidirectional(require("sfwb.train.sid").new(cfg, parts), cfg)
end

local TRAINERS = {"score_distillation", "diffusion", "ode", "gan"}
local LOSSES = {"dmd", "sid", "causvid", "dmd_switch"}

local function known(list, v)
  for _, x in ipairs(list) do if x == v then return true end end
  return false
end

-- the objective a config selects: "dmd" | "sid" | "causvid" | "dmd_switch" | "diffusion" | "ode" | "gan",
-- or an error naming the key, its value and the accepted values
function M.objective(cfg)
  if type(cfg) ~= "table" then error("train.new: expects a config table (sfwb.config.load(...))", 3) end
  local tr = cfg.trainer
  if tr == nil then
    error("train.new: the config has no 'trainer' key (train.py dispatches on it: "
          .. table.concat(TRAINERS, ", ") .. "); an inference config cannot train", 3)
  end
  if not known(TRAINERS, tr) then
    error(string.format("train.new: trainer: %s is not one of %s", tostring(tr), table.concat(TRAINERS, ", ")), 3)
  end
  if tr ~= "score_distillation" then return tr end
  local dl = cfg.distribution_loss
  if dl == nil then
    error("train.new: trainer: score_distillation needs distribution_loss (" .. table.concat(LOSSES, ", ") .. ")", 3)
  end
  if not known(LOSSES, dl) then
    error(string.format("train.new: distribution_loss: %s is not one of %s", tostring(dl), table.concat(LOSSES, ", ")), 3)
  end
  return dl
end

-- train.py: the trainer the config names
function M.new(cfg, parts)
  local obj = M.objective(cfg)
  if MISSING[obj] then missing(obj)() end
  return M[obj](cfg, parts)
end

return M
