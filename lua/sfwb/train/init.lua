-- sfwb/train/init.lua — training entry points: one constructor per objective of the originals and
-- sfwb.train.new(cfg [, parts]), train.py's dispatch on cfg.trainer (and cfg.distribution_loss).
local M = {}

-- generator_type: bidirectional (Self-Forcing-Plus): the same trainer with BidirectionalTrainingPipeline's rollout
local function bidirectional(tr, cfg)
  if type(cfg) == "table" and cfg.generator_type == "bidirectional" then
    tr.rollout_opts.trajectory = require("sfwb.train.rollout_bidirectional").inference_with_trajectory
    tr.generator_type = "bidirectional"
  end
  return tr
end

-- i2v: true (Self-Forcing-Plus): the LMDB's images through CLIP and the VAE into clip_fea and y (sfwb.train.i2v)
local function i2v(build, cfg, parts, who)
  if type(cfg) == "table" and cfg.i2v == true then
    local I = require "sfwb.train.i2v"
    local p = I.parts(cfg, parts)
    return I.attach(bidirectional(build(cfg, p), cfg), cfg, p, who)
  end
  return bidirectional(build(cfg, parts), cfg)
end

function M.dmd(cfg, parts)
  return i2v(require("sfwb.train.dmd").new, cfg, parts, "train.dmd")
end
-- LongLive's DMDSwitch: the DMD trainer whose streaming pipeline switches prompts (sfwb/train/streaming.lua)
function M.dmd_switch(cfg, parts)
  if type(cfg) == "table" and cfg.streaming_training ~= true then
    error("train.dmd_switch: sfwb runs LongLive's prompt-switch DMD inside its streaming long tuning " ..
          "(streaming_training: true); the non-streaming switch rollout is not implemented", 2)
  end
  return M.dmd(cfg, parts)
end
function M.diffusion(cfg, parts) return require("sfwb.train.diffusion").new(cfg, parts) end
function M.ode(cfg, parts) return require("sfwb.train.ode").new(cfg, parts) end

-- objectives of the originals that sfwb does not have yet: refused by name, never replaced by another
local MISSING = {
}
local function missing(what)
  return function()
    error(string.format("train: %s is not implemented in sfwb yet; it is refused rather than run as another objective",
                        MISSING[what]), 2)
  end
end
-- GAN (model/gan.py, trainer/gan.py): the rollout as DMD's (a bidirectional generator with generator_type)
function M.gan(cfg, parts) return bidirectional(require("sfwb.train.gan").new(cfg, parts), cfg) end
function M.causvid(cfg, parts)
  if type(cfg) == "table" and cfg.i2v == true then
    error("train.causvid: i2v: true is not implemented for CausVid in sfwb (its input is simulated from data)", 2)
  end
  if type(cfg) == "table" and cfg.generator_type == "bidirectional" then
    error("train.causvid: generator_type: bidirectional is not a path of the originals (CausVid is causal)", 2)
  end
  return require("sfwb.train.causvid").new(cfg, parts)
end
function M.sid(cfg, parts)
  return i2v(require("sfwb.train.sid").new, cfg, parts, "train.sid")
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

-- sfwb.train.plan(cfg, {gpus=, gpu_memory_gb=}): per-rank memory of a config (sfwb/train/plan.lua)
function M.plan(cfg, o) return require("sfwb.train.plan").plan(cfg, o) end

return M
