-- test_train_resume.lua — the shared trainer base (sfwb.train.base) through the DMD trainer on tiny
-- models: N steps + save + resume + M steps equals N + M steps bit for bit (weights, EMA, optimizer,
-- losses); the step comes from the checkpoint, never its folder's name; an existing checkpoint is never
-- overwritten; killed saves' temporary folders are removed; metrics.jsonl and TensorBoard events (parsed
-- by an independent Python reader) hold every step; a piped log has a line per step; bad step counts fail.
local T = require "sfwb.testing"
local json = require "sfwb.json"

local TINY = {dim = 32, ffn_dim = 48, num_heads = 2, num_layers = 1, in_dim = 16, out_dim = 16,
              text_dim = 8, text_len = 4, freq_dim = 16}

-- a text encoder that draws nothing from the RNG: an embedding from the prompt's bytes
local function te(prompts)
  local rows = {}
  for i, p in ipairs(prompts) do
    local v = {}
    for j = 1, 32 do v[j] = ((p:byte((j - 1) % #p + 1) or 0) % 17) / 17 - 0.5 end
    rows[i] = sfwb.tensor(v):view({1, 4, 8})
  end
  return sfwb.cat(rows, 1)
end

-- the generator and critic from `seed` (a resumed run must replace them); the frozen teacher is the same
-- in every run, as it comes from the same Wan files in a real one
local function parts(seed)
  sfwb.manual_seed(100)
  local teacher = sfwb.wan.new(TINY, {causal = false})
  sfwb.manual_seed(seed)
  return {generator = sfwb.wan.new(TINY, {causal = true, num_frame_per_block = 3}),
          real_score = teacher, fake_score = sfwb.wan.new(TINY, {causal = false}),
          text_encoder = te, dataset = {"a red fox in snow", "waves at night", "a city timelapse", "rain"}}
end

local function config(extra)
  local cfg = {seed = 123, lr = 1e-3, lr_critic = 1e-3, beta1 = 0.0, beta2 = 0.999, weight_decay = 0.01,
    denoising_step_list = {1000, 750, 500, 250}, warp_denoising_step = true, ts_schedule = false,
    num_train_timestep = 1000, timestep_shift = 5.0, guidance_scale = 3.0, batch_size = 1,
    ema_weight = 0.9, ema_start_step = 2, dfake_gen_update_ratio = 2, num_frame_per_block = 3,
    num_training_frames = 6, image_or_video_shape = {1, 6, 16, 2, 4}, model_kwargs = {timestep_shift = 5.0},
    negative_prompt = "blurry", context_noise = 0}
  for k, v in pairs(extra or {}) do cfg[k] = v end
  return cfg
end

local function same_params(a, b, what)
  local n = 0
  for k, v in pairs(a) do
    T.check(b[k] ~= nil, what .. ": " .. k .. " present")
    T.eq((v:float() - b[k]:float()):abs():max():item(), 0, what .. " " .. k)
    n = n + 1
  end
  T.check(n > 0, what .. ": some tensors")
end

T.case("resume is exact: 2 + save + resume + 3 steps == 5 steps, bit for bit", function()
  local root = T.tmpdir("resume")
  local straight = sfwb.train.dmd(config(), parts(1))
  straight:train{steps = 5, quiet = true}

  local first = sfwb.train.dmd(config(), parts(1))
  first:train{steps = 2, quiet = true} -- the EMA starts at step 2: it is in the training state only
  first:save(root .. "/best")          -- a folder name without a step in it
  -- a different init and seed: everything must come from the checkpoint
  local second = sfwb.train.dmd(config({seed = 999}), parts(7))
  sfwb.manual_seed(4242)
  second:resume(root .. "/best")
  T.eq(second.step_count, 2, "step from the checkpoint, not the folder name")
  second:train{steps = 3, quiet = true}
  T.eq(second.step_count, 5)
  same_params(straight.generator:parameters(), second.generator:parameters(), "generator")
  same_params(straight.critic:parameters(), second.critic:parameters(), "critic")
  same_params(straight.ema:state_dict(), second.ema:state_dict(), "ema")
  for i = 3, 5 do
    T.eq(second.log[i - 2].critic_loss, straight.log[i].critic_loss, "critic loss at step " .. i)
    T.eq(second.log[i - 2].generator_loss, straight.log[i].generator_loss, "generator loss at step " .. i)
  end
  -- and a resume at a later step, where model.pt holds the EMA, continues exactly too
  local a = sfwb.train.dmd(config(), parts(1))
  a:train{steps = 3, quiet = true}
  a:save(root .. "/s3")
  local b = sfwb.train.dmd(config(), parts(5))
  b:resume(root .. "/s3")
  b:train{steps = 2, quiet = true}
  same_params(straight.generator:parameters(), b.generator:parameters(), "generator (resume at 3)")
  same_params(straight.ema:state_dict(), b.ema:state_dict(), "ema (resume at 3)")
end)

T.case("checkpoints: never overwritten, stale temporaries removed, original layout still resumes", function()
  local root = T.tmpdir("ckpt")
  local tr = sfwb.train.dmd(config({logdir = root .. "/logs", log_iters = 1}), parts(2))
  tr:train{steps = 1, quiet = true}
  local dir = root .. "/logs/checkpoint_model_000001"
  T.check(sfwb.fs.stat(dir .. "/model.pt") and sfwb.fs.stat(dir .. "/training_state.pt"), "both files written")
  local before = sfwb.fs.sha256(dir .. "/model.pt")
  -- a run that restarts at step 0 in the same logdir reaches step 1 again: refused, file untouched
  local again = sfwb.train.dmd(config({logdir = root .. "/logs", log_iters = 1}), parts(3))
  T.raises(function() again:train{steps = 1, quiet = true} end, "refusing to overwrite")
  T.eq(sfwb.fs.sha256(dir .. "/model.pt"), before, "existing checkpoint unchanged")
  -- a killed save (a process that no longer exists) left a temporary folder: gone after the next save
  local stale = root .. "/logs/checkpoint_model_000009.tmp-999999999-1"
  sfwb.fs.mkdir(stale)
  io.open(stale .. "/model.pt.tmp-999999999-3", "w"):close()
  tr:save(root .. "/logs/checkpoint_model_000002")
  T.check(sfwb.fs.stat(stale) == nil, "stale temporary folder removed")
  for _, name in ipairs(sfwb.fs.listdir(root .. "/logs")) do T.check(not name:find("%.tmp%-"), "no temporaries: " .. name) end
  -- the original's layout (model.pt only): weights resume, the step is 0 unless given
  sfwb.fs.remove(dir .. "/training_state.pt")
  local orig = sfwb.train.dmd(config(), parts(4))
  orig:resume(dir)
  T.eq(orig.step_count, 0, "no training state: step 0, never parsed from checkpoint_model_000001")
  same_params(tr.generator:parameters(), orig.generator:parameters(), "weights from model.pt")
  local orig2 = sfwb.train.dmd(config({resume_step = 1}), parts(4))
  orig2:resume(dir)
  T.eq(orig2.step_count, 1, "resume_step")
end)

T.case("the log: metrics.jsonl, TensorBoard events, steps checked", function()
  local root = T.tmpdir("tblog")
  local tr = sfwb.train.dmd(config({logdir = root, tensorboard = true}), parts(3))
  T.raises(function() tr:train{steps = -1, quiet = true} end, "steps must be >= 0")
  T.raises(function() tr:train{steps = 1.5, quiet = true} end, "whole number")
  tr:train{steps = 3, quiet = true}
  local f = assert(io.open(root .. "/metrics.jsonl"))
  local rows = {}
  for line in f:lines() do rows[#rows + 1] = json.decode(line) end
  f:close()
  T.eq(#rows, 3, "one line per step")
  for i, r in ipairs(rows) do
    T.eq(r.step, i)
    T.eq(r.critic_loss, tr.log[i].critic_loss, "critic loss logged exactly")
    T.check(type(r.critic_grad_norm) == "number" and r.lr_critic == 1e-3 and r.it_per_s > 0, "grad norm, lr, it/s")
  end
  T.check(rows[1].generator_loss and rows[1].dmd_gradient_norm and not rows[2].generator_loss, "generator every 2 steps")
  local ev
  for _, name in ipairs(sfwb.fs.listdir(root)) do
    if name:match("^events%.out%.tfevents%.") then ev = root .. "/" .. name end
  end
  T.check(ev, "an events.out.tfevents.* file")
  local out = root .. "/tb.json"
  local rc = sfwb.fs.run({T.python, "tests/ref/tfevents_read.py", ev, out})
  T.eq(rc, 0, "the Python reader parses the event file (CRC-32C checked)")
  local tb = json.read(out)
  T.eq(tb.file_version, "brain.Event:2")
  T.eq(#tb.scalars["critic_loss"], 3, "critic_loss at 3 steps")
  for i = 1, 3 do
    T.eq(tb.scalars.critic_loss[i][1], i, "step")
    T.near(tb.scalars.critic_loss[i][2], tr.log[i].critic_loss, 1e-6 * math.abs(tr.log[i].critic_loss) + 1e-12, "value (f32)")
  end
end)

T.case("a piped run prints one line per step and one per checkpoint", function()
  local root = T.tmpdir("pipe")
  local script = root .. "/run.lua"
  local f = io.open(script, "w")
  f:write(string.format([[
    package.path = %q
    local tinyparts = dofile(%q)
    local tr = sfwb.train.dmd(tinyparts.config, tinyparts.parts())
    tr:train{steps = 3}
    tr:train{steps = 1}
    error("stop here")
  ]], package.path, root .. "/parts.lua"))
  f:close()
  f = io.open(root .. "/parts.lua", "w")
  f:write(string.format([[
    local TINY = {dim = 32, ffn_dim = 48, num_heads = 2, num_layers = 1, in_dim = 16, out_dim = 16, text_dim = 8, text_len = 4, freq_dim = 16}
    return {config = {seed = 1, logdir = %q, log_iters = 2, dfake_gen_update_ratio = 2, num_training_frames = 3,
                      image_or_video_shape = {1, 3, 16, 2, 4}, denoising_step_list = {1000, 500}, guidance_scale = 3.0,
                      num_frame_per_block = 3},
            parts = function()
              sfwb.manual_seed(1)
              return {generator = sfwb.wan.new(TINY, {causal = true, num_frame_per_block = 3}),
                      real_score = sfwb.wan.new(TINY, {causal = false}), fake_score = sfwb.wan.new(TINY, {causal = false}),
                      text_encoder = function(p) return sfwb.zeros({#p, 4, 8}) end, dataset = {"x", "y"}}
            end}
  ]], root .. "/logs"))
  f:close()
  local log = root .. "/out.txt"
  local rc = sfwb.fs.run({arg[-1], script}, {stdout = log, stderr = log})
  T.check(rc ~= 0, "the script's error exits non-zero")
  local lines = {}
  for line in io.lines(log) do lines[#lines + 1] = line end
  local steps, ckpts = 0, 0
  for _, l in ipairs(lines) do
    T.check(not l:find("\r"), "no carriage returns in a piped log")
    if l:match("^step %d+ %(%d+/%d+%)") then steps = steps + 1 end
    if l:match("^checkpoint: step %d+ written to .*checkpoint_model_00000[24]$") then ckpts = ckpts + 1 end
  end
  T.eq(steps, 4, "a line per step: " .. table.concat(lines, " | "))
  T.eq(ckpts, 2, "a line per checkpoint")
  local own = false
  for _, l in ipairs(lines) do if l:find("stop here", 1, true) and not l:find("step %d") then own = true end end
  T.check(own, "the error has a line of its own")
end)

T.done()
