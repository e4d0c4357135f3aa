-- sfwb/train/streaming.lua — LongLive v1.0's streaming long tuning (`streaming_training: true`) and its prompt-switch
-- DMD (`distribution_loss: dmd_switch`) on top of sfwb.train.dmd: trainer/distillation.py start_new_sequence +
-- fwdbwd_one_step_streaming, model/streaming_training.py (StreamingTrainingModel) and the training pipelines
-- pipeline/streaming_training.py / streaming_switch_training.py.
--
-- A training sequence of up to streaming_max_length frames is generated chunk by chunk over ONE KV cache of
-- local_attn_size + slice_last_frames frames (LongLive's cache policy: rolling window with sink, attention over
-- [sink | last local_attn_size - sink frames]) that persists between the trainer's steps; every generator or critic
-- step generates the sequence's next chunk: the first chunk_size frames, then a random count of new frames
-- (streaming_min_new_frame, +3, ... below chunk_size) after an overlap with the previous chunk_size frames, the
-- first frame re-encoded through the VAE (_process_first_frame_encoding), the loss on the new frames only.
-- With dmd_switch a second prompt takes over at a random switch frame: caches reset and re-filled from the last
-- 21 frames (_recache_after_switch of the training pipeline). docs/longlive.md ("Streaming long tuning") lists
-- the original's surprises kept here.
--
-- Draws (through tr.rng, in the original's order): per sequence the switch frame (random.choice, as
-- randint(0, n, {1})); per chunk the new-frame count (random.randint, as randint(0, n, {1}); not for the first),
-- the chunk noise randn{B, new, C, h, w}, the exit steps randint(0, K, {blocks}), per block one
-- randn{B*nf, C, h, w} per step before the exit and one for the context pass; then the loss's timestep and noise.
local sfwb = require "sfwb"
local Rollout = require "sfwb.train.rollout"

local M = {}

local get = require("sfwb.train.base").get -- a config value, the default for nil or YAML null

local ints, normal = Rollout.ints, Rollout.normal

-- one python `random` draw (random.randint(0, n - 1) / random.choice over n items) on rank 0, broadcast: a
-- 0-based index through tr.rng as randint(0, n, {1})
local function pick(tr, n)
  local v = 0
  if not tr.dist or tr.dist.rank() == 0 then v = ints(tr.rng, 0, n, {1})[1] end
  if tr.dist then
    local t = sfwb.tensor({v}, {dtype = "i64"})
    tr.dist.broadcast(t, 0)
    v = t:totable()[1]
  end
  return math.tointeger(v) or v
end

local function prompts_of(v)
  if type(v) == "string" then return {v} end
  return v
end

-- _get_switch_frame_index (switch_mode fixed | random | random_choice)
local function switch_frame_index(tr, max_length)
  local cfg = tr.cfg
  local mode = get(cfg, "switch_mode", "fixed")
  if mode == "fixed" then
    local idx = get(cfg, "fixed_switch_index", 21)
    if max_length and not (max_length > idx) then
      error(string.format("train.dmd_switch: streaming_max_length %d is not greater than fixed_switch_index %d", max_length, idx), 0)
    end
    return idx
  elseif mode == "random_choice" then
    local choices = {}
    for _, c in ipairs(get(cfg, "switch_choices", {})) do
      if not max_length or c < max_length then choices[#choices + 1] = c end
    end
    if #get(cfg, "switch_choices", {}) == 0 then error("train.dmd_switch: switch_choices is empty", 0) end
    if #choices == 0 then
      error(string.format("train.dmd_switch: no switch_choices below the sequence length %d", max_length), 0)
    end
    return choices[pick(tr, #choices) + 1]
  elseif mode == "random" then
    -- the original's random mode: an integer in [min_switch_frame_index, max_switch_frame_index] (a multiple of
    -- the block size is not enforced there either)
    local lo, hi = get(cfg, "min_switch_frame_index", nil), get(cfg, "max_switch_frame_index", nil)
    if lo == nil or hi == nil then
      error("train.dmd_switch: switch_mode random needs min_switch_frame_index and max_switch_frame_index", 0)
    end
    if hi <= lo then return lo end
    return lo + pick(tr, hi - lo + 1)
  end
  error(string.format("train.dmd_switch: switch_mode must be fixed, random or random_choice, got %s", tostring(mode)), 0)
end

local Stream = {}
Stream.__index = Stream

-- the VAE of the re-encode: parts.vae, else the generator folder's Wan2.1_VAE.pth (what LongLive's model loads),
-- loaded at the first re-encode; nil when neither exists (the re-encode then says so)
local function vae_of(tr)
  local v = tr.vae or tr.rollout_opts.vae
  if v then return v end
  local cfg = tr.cfg
  local dir = get(cfg, "wan_models_dir", os.getenv("SFWB_WAN_MODELS") or "wan_models")
  local path = dir .. "/" .. get(cfg, "generator_name", "Wan2.1-T2V-1.3B") .. "/Wan2.1_VAE.pth"
  local f = io.open(path, "rb")
  if not f then return nil end
  f:close()
  tr.vae = sfwb.vae.load(path, {device = get(cfg, "device", "cpu")})
  return tr.vae
end

-- the trainer's streaming state (StreamingTrainingModel + the pipeline's caches)
function M.new_stream(tr)
  local cfg = tr.cfg
  local mk = get(cfg, "model_kwargs", {})
  local s = setmetatable({tr = tr}, Stream)
  s.chunk_size = get(cfg, "streaming_chunk_size", 21)
  s.max_length = get(cfg, "streaming_max_length", 57)
  s.possible_max_length = get(cfg, "streaming_possible_max_length", nil)
  s.min_new_frame = get(cfg, "streaming_min_new_frame", 18)
  s.train_first_chunk = get(cfg, "train_first_chunk", false)
  s.local_attn_size = get(mk, "local_attn_size", -1)
  s.sink_size = get(mk, "sink_size", 0)
  s.slice_last_frames = get(cfg, "slice_last_frames", 21)
  s.global_sink = get(cfg, "global_sink", false)
  s.switch = get(cfg, "distribution_loss", "dmd") == "dmd_switch"
  -- StreamingTrainingPipeline: kv_cache_size = (local_attn_size + slice_last_frames) frames; max_attention_size
  -- local_attn_size frames, or 32760 tokens = 21 frames when global (-1)
  s.kv_frames = s.local_attn_size + s.slice_last_frames
  s.max_attention = s.local_attn_size == -1 and 21 or s.local_attn_size
  if s.kv_frames < 1 then
    error(string.format("train: streaming cache of local_attn_size + slice_last_frames = %d frames", s.kv_frames), 0)
  end
  local nfpb = tr.rollout_opts.nfpb
  if s.chunk_size % nfpb ~= 0 or s.min_new_frame % nfpb ~= 0 then
    error(string.format("train: streaming_chunk_size %d and streaming_min_new_frame %d must be multiples of num_frame_per_block %d",
                        s.chunk_size, s.min_new_frame, nfpb), 0)
  end
  s.active = false
  return s
end

-- setup_sequence: caches cleared, state reset, conditioning kept (initial_latent: not in LongLive's t2v configs)
function Stream:setup(o)
  local tr = self.tr
  local B = o.cond:size(1)
  if not self.kv or self.B ~= B then
    self.kv = tr.G.model:kv_cache{batch = B, capacity = self.kv_frames, local_attn_size = self.local_attn_size,
                                  sink_size = self.sink_size, policy = "longlive", max_attention_frames = self.max_attention}
    self.ca = tr.G.model:crossattn_cache{batch = B}
    self.B = B
  end
  self.kv:reset()   -- clear_kv_cache (a zero_() under grad mode also cuts the graph)
  self.ca:reset()
  self.length, self.has_switched, self.previous = 0, false, nil
  self.temp_max_length = o.temp_max_length
  self.cond, self.uncond = o.cond, o.uncond
  self.switch_cond, self.switch_index = o.switch_cond, o.switch_index
  self.active = true
end

function Stream:can_generate_more()
  local L, T = self.length, self.temp_max_length
  return L < T and L + self.min_new_frame <= T
end

-- _get_current_conditional_dict
function Stream:current_cond(chunk_start)
  if self.switch_index and (self.has_switched or chunk_start >= self.switch_index) then return self.switch_cond end
  return self.cond
end

local function call(s, x, tval, ctx, pos, with_grad, extra)
  local G = s.tr.G
  local B, n = x:size(1), x:size(2)
  local t = sfwb.full({B, n}, tval, {dtype = "f32", device = x:device()})
  local e = {kv_cache = s.kv, crossattn_cache = s.ca, current_start_frame = pos}
  for k, v in pairs(extra or {}) do e[k] = v end
  local x0
  if with_grad then
    local _; _, x0 = G:forward(x, t, ctx, e)
  else
    sfwb.no_grad(function() local _; _, x0 = G:forward(x, t, ctx, e) end)
  end
  return x0
end

-- StreamingSwitchTrainingPipeline._recache_after_switch: the K/V zeroed unless global_sink (indices kept), the
-- cross-attention cache reset; then one no-grad pass over the last 21 frames of [previous frames | this chunk so
-- far] at context_noise timesteps (the frames themselves, no noise added), under the new prompt, WITHOUT
-- sink_recache (so zeroed sink slots stay zero: LongLive's training pipeline does not pass the flag); last, the
-- cross-attention K/V are zeroed while staying initialised (later cached calls see zero K/V)
function Stream:recache_after_switch(output, pos, new_cond, local_start)
  if not self.global_sink then
    self.kv:zero()
    if sfwb.is_grad_enabled() then self.kv:detach() end -- zero_() under grad mode: no gradient to earlier writes
  end
  self.ca:reset()
  if pos == 0 then return end
  local frames
  if self.previous then
    local all = local_start > 0 and sfwb.cat({self.previous, output:narrow(2, 1, local_start)}, 2) or self.previous
    local n = math.min(21, all:size(2))
    frames = all:narrow(2, all:size(2) - n + 1, n)
  else
    local n = math.min(local_start, 21)
    frames = output:narrow(2, local_start - n + 1, n)
  end
  local n = frames:size(2)
  call(self, frames:detach():contiguous(), self.tr.rollout_opts.context_noise or 0, new_cond, pos - n, false)
  self.ca:zero()
  self.recaches = (self.recaches or 0) + 1
end

-- generate_chunk_with_cache (both pipelines): noise [B, n, C, h, w] from absolute frame `start`; returns the chunk
-- (with the exit steps' graph), t_from, t_to
function Stream:generate_chunk(noise, cond, start, requires_grad, sw)
  local tr = self.tr
  local ro = tr.rollout_opts
  local steps, K, nfpb = tr.steps, #tr.steps, ro.nfpb
  local rng = tr.rng
  local n = noise:size(2)
  local nb = n // nfpb
  local exits = {}
  if not tr.dist or tr.dist.rank() == 0 then
    exits = ints(rng, 0, K, {nb})
    if ro.last_step_only then for i = 1, nb do exits[i] = K - 1 end end
  else
    for i = 1, nb do exits[i] = 0 end
  end
  if tr.dist then
    local e = sfwb.tensor(exits, {dtype = "i64"})
    tr.dist.broadcast(e, 0)
    exits = e:totable()
  end
  local grad_from = requires_grad and (sw and sw.rel or 0) or n
  local cn = ro.context_noise or 0
  local function renoise(x0, tval)
    local s = x0:shape()
    local flat = {s[1] * s[2], s[3], s[4], s[5]}
    local e = normal(rng, flat, {dtype = x0:dtype(), device = x0:device()})
    local T = sfwb.full({s[1] * s[2]}, tval, {dtype = "f32", device = x0:device()})
    return tr.G.scheduler:add_noise(x0:reshape(flat), e, T):view(s)
  end
  local outs = {}
  local cur, using_second = cond, false
  local ls = 0
  for b = 1, nb do
    if sw and not using_second and ls >= sw.rel then
      local so_far = ls > 0 and sfwb.cat(outs, 2) or nil
      self:recache_after_switch(so_far, start + ls, sw.cond, ls)
      cur, using_second = sw.cond, true
    end
    local x = noise:narrow(2, ls + 1, nfpb)
    local stop_at = ro.same_step_across_blocks == false and exits[b] or exits[1]
    local x0
    for k = 0, K - 1 do
      if k ~= stop_at then
        sfwb.no_grad(function()
          x0 = call(self, x, steps[k + 1], cur, start + ls, false)
          if k < K - 1 then x = renoise(x0, steps[k + 2]) end
        end)
      else
        x0 = call(self, x, steps[k + 1], cur, start + ls, ls >= grad_from and sfwb.is_grad_enabled())
        break
      end
    end
    outs[#outs + 1] = x0
    sfwb.no_grad(function() call(self, renoise(x0:detach(), cn), cn, cur, start + ls, false) end)
    ls = ls + nfpb
  end
  local t_from, t_to
  if ro.same_step_across_blocks ~= false then t_from, t_to = Rollout.exit_interval(tr.G, steps, exits[1]) end
  return sfwb.cat(outs, 2), t_from, t_to
end

-- generate_next_chunk: returns the chunk for the loss and its info {start, new, overlap, frames = {first, count}}
function Stream:next_chunk(requires_grad)
  if not self:can_generate_more() then error("train: streaming: cannot generate more chunks in this sequence", 2) end
  local tr = self.tr
  local L = self.length
  local prev = self.previous
  local new, overlap
  if prev then
    local max_new = math.min(self.temp_max_length - L + 1, self.chunk_size)
    local possible = {}
    for v = self.min_new_frame, max_new - 1, 3 do possible[#possible + 1] = v end
    if #possible == 0 then
      error(string.format("train: streaming: no new-frame count in range(%d, %d, 3)", self.min_new_frame, max_new), 0)
    end
    new = possible[pick(tr, #possible) + 1]
    overlap = self.chunk_size - new
    if not (overlap > 0 and overlap <= prev:size(2)) then overlap, new = 0, self.chunk_size end
  else
    overlap, new = 0, self.chunk_size
  end
  local shp = tr.latent_shape
  local noise = normal(tr.rng, {self.B, new, shp[3], shp[4], shp[5]},
                       {dtype = tr.rollout_opts.dtype or "f32", device = tr.rollout_opts.device})
  local cond = self:current_cond(L)
  local sw = nil
  if self.switch and self.switch_index and not self.has_switched and L <= self.switch_index and self.switch_index < L + new then
    sw = {rel = math.max(0, self.switch_index - L), cond = self.switch_cond}
    self.has_switched = true
  end
  local gen, t_from, t_to = self:generate_chunk(noise, cond, L, requires_grad, sw)
  local full = prev and sfwb.cat({prev, gen}, 2) or gen
  local save
  sfwb.no_grad(function() save = full:detach():narrow(2, math.max(1, full:size(2) - self.chunk_size + 1),
                                                      math.min(self.chunk_size, full:size(2))):clone() end)
  local frames
  if prev then
    -- _process_first_frame_encoding: the last min(21, F) frames kept, the first of them re-encoded (21 hard-coded)
    local F = full:size(2)
    if F > 1 then
      full = Rollout.reencode_first({vae = vae_of(tr)}, full, math.min(21, F))
    end
    frames = {overlap, new}   -- gradient_mask[:, overlap:overlap + new]
  else
    frames = {0, full:size(2)}
  end
  self.length = L + new
  self.previous = save
  return full, {start = L, new = new, overlap = overlap, frames = frames, t_from = t_from, t_to = t_to,
                current_length = self.length}
end

-- start_new_sequence: the next batch, its prompts (and switch prompts), the sequence length, the switch frame
function M.start_new_sequence(tr)
  local s = tr.stream
  local batch = tr.next_batch()
  local prompts = prompts_of(batch.prompts)
  local B = #prompts
  local cond = tr:encode(prompts)
  local uncond = tr:negative(B)
  local T = s.max_length
  if s.possible_max_length then
    T = s.possible_max_length[pick(tr, #s.possible_max_length) + 1]
  end
  local switch_cond, switch_index
  if s.switch and batch.switch_prompts then
    switch_cond = tr:encode(prompts_of(batch.switch_prompts))
    switch_index = switch_frame_index(tr, T)
  end
  s:setup{cond = cond, uncond = uncond, switch_cond = switch_cond, switch_index = switch_index, temp_max_length = T}
  s.sequences = (s.sequences or 0) + 1
end

local function ensure_sequence(tr)
  local s = tr.stream
  if not s.active or not s:can_generate_more() then M.start_new_sequence(tr) end
end

-- the chunk a step trains on: train_first_chunk false skips (generates without gradient) a sequence's first chunk
local function step_chunk(tr, requires_grad)
  local s = tr.stream
  ensure_sequence(tr)
  if not s.train_first_chunk and s.length == 0 then s:next_chunk(false) end
  return s:next_chunk(requires_grad)
end

-- compute_generator_loss on the next chunk: loss, log
function M.generator_loss(tr)
  local s = tr.stream
  local x, info = step_chunk(tr, true)
  local ctx = s:current_cond(info.start)
  local B, F = x:size(1), x:size(2)
  local t = tr:score_timesteps(B, F, info.t_from, info.t_to)
  local n = normal(tr.rng, x:shape(), {dtype = x:dtype(), device = x:device()})
  local loss, gnorm = tr:dmd_loss_from(x, t, n, ctx, {negative = s.uncond, frames = info.frames})
  return loss, {dmdtrain_gradient_norm = gnorm, timestep = t, chunk = info, new_frames_supervised = info.new}
end

-- compute_critic_loss on the next chunk (generated without gradient; the cache's gradient references dropped)
function M.critic_loss(tr)
  local s = tr.stream
  local x, info
  sfwb.no_grad(function() x, info = step_chunk(tr, false) end)
  x = x:detach()
  s.kv:detach()   -- _clear_cache_gradients
  local ctx = s:current_cond(info.start)
  local t = tr:score_timesteps(x:size(1), x:size(2), info.t_from, info.t_to)
  local n = normal(tr.rng, x:shape(), {dtype = x:dtype(), device = x:device()})
  return tr:critic_loss_from(x, t, n, ctx, {frames = info.frames}), {critic_timestep = t, chunk = info}
end

-- the streaming iteration (gradient_accumulation_steps: sfwb/train/scale.lua calls the same two losses)
local function iteration(self)
  local dmd = require "sfwb.train.dmd"
  local cfg = self.cfg
  local info = {}
  local train_g = self.step_count % get(cfg, "dfake_gen_update_ratio", 5) == 0
  if train_g then
    self.opt_g:zero_grad()
    local loss, gi = self:generator_loss()
    loss:backward()
    info.generator_loss, info.dmd_gradient_norm = loss:item(), gi.dmdtrain_gradient_norm
    info.generator_grad_norm = dmd.clip_and_step(require("sfwb.train.lora").trainable(self.generator), self.opt_g,
      get(cfg, "max_grad_norm_generator", 10.0), self.dist, self.world)
    if self.ema then self.ema:update() end
  end
  self.opt_c:zero_grad()
  local closs = self:critic_loss()
  closs:backward()
  info.critic_loss = closs:item()
  info.critic_grad_norm = dmd.clip_and_step(require("sfwb.train.lora").trainable(self.critic), self.opt_c,
    get(cfg, "max_grad_norm_critic", 10.0), self.dist, self.world)
  info.sequence_length = self.stream.length
  return info
end

-- called by sfwb.train.dmd when streaming_training is true: tr:generator_loss() / tr:critic_loss() without
-- arguments train on the sequence's next chunk (with a table they are Self-Forcing's, as before)
function M.install(tr)
  tr.stream = M.new_stream(tr)
  local gl, cl = tr.generator_loss, tr.critic_loss
  tr.generator_loss = function(self, o)
    if o == nil then return M.generator_loss(self) end
    return gl(self, o)
  end
  tr.critic_loss = function(self, o)
    if o == nil then return M.critic_loss(self) end
    return cl(self, o)
  end
  tr.iteration = iteration
  return tr
end

return M
