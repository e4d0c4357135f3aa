-- sfwb/toy_world.lua — the "bouncing balls" world (issue 15): scenes sampled from a seed, their prompts,
-- their frames, and the measurements that judge any video of the world against its prompt.
--
--   local W = sfwb.toy_world
--   local scene = W.sample_scene(seed, {frames=81})   -- one scene; W.scenes(n, seed, opts) -> list
--   W.prompt(scene)                 -- "a red ball moving down and a blue ball moving right"
--   W.render(scene, {frames=81})    -- f32 [F, 3, 64, 64] in [-1, 1] (the pipelines' video layout)
--   W.write_prompts(path, scenes)   -- the originals' text dataset (one prompt a line)
--   W.measure(video [F, 3, H, W], prompt) -> per-frame and per-video findings (see below)
--   W.summarize({results...})       -- fractions over videos, and frame-ok by frame index
--
-- The world (fixed so results compare across runs): 64 x 64 RGB (any larger square size keeps the
-- rules), 16 fps, a constant near-black background (each channel uniform in 0..24, so <= 30), one or
-- two balls of distinct palette colours, radius uniform in [5, 8] px, each moving along one axis at a
-- speed uniform in [1, 3] px/frame and bouncing elastically off the walls (the centre reflects at r
-- and size - r), starting in the half of the frame opposite to its direction of motion. Two-ball scenes
-- are re-drawn (up to 64 times) until the balls never touch within opts.frames, so every ground-truth
-- frame shows both balls whole. Edges are anti-aliased (4 x 4 sub-samples) and values are u8 levels.
-- Sampling uses its own splitmix64 stream: a seed gives the same scene on every machine and Lua build.
local sfwb = require "sfwb"

local M = {}

M.size, M.fps = 64, 16
M.colours = {"red", "green", "blue", "yellow"}
M.rgb = {red = {220, 40, 40}, green = {40, 200, 60}, blue = {50, 80, 230}, yellow = {230, 220, 40}}
M.directions = {"left", "right", "up", "down"}
local AXIS = {left = {1, -1}, right = {1, 1}, up = {2, -1}, down = {2, 1}} -- {axis (1 = x, 2 = y), sign}

-- the issue's pass marks, in one place so the recipe, tests and docs agree
M.thresholds = {
  frames_ok = 0.8,        -- student: exactly the prompted balls in their colours in >= 80% of frames
  direction = 0.7,        -- ... moving in the prompted directions in >= 70% of videos
  smoothness = 1.0,       -- median |frame-to-frame change of velocity| <= 1 px/frame^2
  long_last_third = 0.6,  -- at 3x the training length, >= 60% of the last third's frames drawn right
  vae_frames_ok = 0.9,    -- the VAE's reconstructions pass in >= 90%
}

-- ---------------------------------------------------------------- random numbers (splitmix64)
local Rng = {}
Rng.__index = Rng

function M.rng(seed)
  if math.type(seed) ~= "integer" then error("toy_world.rng: the seed must be an integer, got " .. tostring(seed), 2) end
  return setmetatable({state = seed}, Rng)
end

function Rng:next64()
  self.state = self.state + -7046029254386353131 -- 0x9E3779B97F4A7C15 (wraps as two's complement)
  local z = self.state
  z = (z ~ (z >> 30)) * -4658895280553007687 -- 0xBF58476D1CE4E5B9
  z = (z ~ (z >> 27)) * -7723592293110705685 -- 0x94D049BB133111EB
  return z ~ (z >> 31)
end

function Rng:uniform(a, b) -- [a, b)
  local u = (self:next64() >> 11) * (1.0 / 9007199254740992.0)
  return a + (b - a) * u
end

function Rng:int(a, b) -- integer in [a, b]
  return a + ((self:next64() >> 1) % (b - a + 1))
end

-- ---------------------------------------------------------------- scenes
local function options(opts)
  opts = opts or {}
  return {
    size = opts.size or M.size,
    frames = opts.frames or 81,
    balls = opts.balls or {1, 2},         -- allowed ball counts
    radius = opts.radius or {5, 8},
    speed = opts.speed or {1, 3},
    background_max = opts.background_max or 24,
  }
end

-- centre of a ball at frame f (0-based): elastic bounces between r and size - r along its axis
local function centre(ball, size, f)
  local lo, hi = ball.radius, size - ball.radius
  local L = hi - lo
  local ax, sg = AXIS[ball.direction][1], AXIS[ball.direction][2]
  local p0 = ax == 1 and ball.x0 or ball.y0
  local m = (p0 - lo + sg * ball.speed * f) % (2 * L)
  local p = lo + (m <= L and m or 2 * L - m)
  if ax == 1 then return p, ball.y0 end
  return ball.x0, p
end

-- {x = {...}, y = {...}} per ball, one centre per frame
function M.trajectory(scene, frames)
  local out = {}
  for b, ball in ipairs(scene.balls) do
    local xs, ys = {}, {}
    for f = 0, frames - 1 do xs[f + 1], ys[f + 1] = centre(ball, scene.size, f) end
    out[b] = {x = xs, y = ys}
  end
  return out
end

local function touch(scene, frames)
  if #scene.balls < 2 then return false end
  local tr = M.trajectory(scene, frames)
  local a, b = scene.balls[1], scene.balls[2]
  local gap = a.radius + b.radius + 2
  for f = 1, frames do
    local dx, dy = tr[1].x[f] - tr[2].x[f], tr[1].y[f] - tr[2].y[f]
    if dx * dx + dy * dy < gap * gap then return true end
  end
  return false
end

-- spec: nil (colours and directions drawn too) or the parsed prompt {{colour=, direction=}, ...}
local function draw_scene(rng, o, n, spec)
  local colours = {table.unpack(M.colours)}
  for i = #colours, 2, -1 do -- Fisher-Yates: distinct colours
    local j = rng:int(1, i)
    colours[i], colours[j] = colours[j], colours[i]
  end
  if spec then
    for b, e in ipairs(spec) do colours[b] = e.colour end
  end
  local bg = {}
  for c = 1, 3 do bg[c] = rng:int(0, o.background_max) end
  local scene = {size = o.size, background = bg, balls = {}}
  local half = o.size / 2
  for b = 1, n do
    local r = rng:uniform(o.radius[1], o.radius[2])
    local dir = M.directions[rng:int(1, 4)]
    if spec then dir = spec[b].direction end
    local ax, sg = AXIS[dir][1], AXIS[dir][2]
    -- along the axis: the half opposite to the motion; across it: anywhere the ball fits
    local along = sg > 0 and rng:uniform(r, half) or rng:uniform(half, o.size - r)
    local across = rng:uniform(r, o.size - r)
    scene.balls[b] = {colour = colours[b], direction = dir, radius = r, speed = rng:uniform(o.speed[1], o.speed[2]),
      x0 = ax == 1 and along or across, y0 = ax == 1 and across or along}
  end
  return scene
end

-- scene from an integer seed (or an rng object)
function M.sample_scene(seed, opts)
  local o = options(opts)
  local rng = type(seed) == "table" and seed or M.rng(seed)
  local n = o.balls[rng:int(1, #o.balls)] -- drawn once: re-draws must not bias the ball count
  local scene
  for _ = 1, 64 do
    scene = draw_scene(rng, o, n)
    if not touch(scene, o.frames) then break end
  end
  scene.prompt = M.prompt(scene)
  return scene
end

-- a scene showing what `prompt` says (sizes, speeds, places and background drawn from seed)
function M.scene_for_prompt(prompt, seed, opts)
  local spec = M.parse_prompt(prompt)
  local o = options(opts)
  local rng = M.rng(seed)
  local scene
  for _ = 1, 64 do
    scene = draw_scene(rng, o, #spec, spec)
    if not touch(scene, o.frames) then break end
  end
  scene.prompt = M.prompt(scene)
  return scene
end

-- n scenes; scene i (1-based) depends only on (seed, i)
function M.scenes(n, seed, opts)
  local out = {}
  for i = 1, n do
    local rng = M.rng(seed)
    rng.state = rng:next64() ~ (i * 1000003)
    out[i] = M.sample_scene(rng, opts)
  end
  return out
end

function M.prompt(scene)
  local parts = {}
  for b, ball in ipairs(scene.balls) do parts[b] = "a " .. ball.colour .. " ball moving " .. ball.direction end
  return table.concat(parts, " and ")
end

-- "a red ball moving down and a blue ball moving right" -> {{colour="red", direction="down"}, ...}
function M.parse_prompt(prompt)
  if type(prompt) ~= "string" then error("toy_world.parse_prompt: expected a string, got " .. type(prompt), 2) end
  local balls, seen = {}, {}
  local rest = prompt .. " and "
  for part in rest:gmatch("(.-) and ") do
    local colour, dir = part:match("^a (%a+) ball moving (%a+)$")
    if not colour or not M.rgb[colour] or not AXIS[dir] then
      error(string.format("toy_world: '%s' is not a toy-world prompt (expected e.g. 'a red ball moving right'; "
        .. "colours red/green/blue/yellow, directions left/right/up/down)", prompt), 2)
    end
    if seen[colour] then error(string.format("toy_world: '%s' names the colour %s twice", prompt, colour), 2) end
    seen[colour] = true
    balls[#balls + 1] = {colour = colour, direction = dir}
  end
  if #balls == 0 then error("toy_world: empty prompt", 2) end
  return balls
end

function M.render(scene, opts)
  opts = opts or {}
  local frames = opts.frames or 81
  local tr = M.trajectory(scene, frames)
  local balls = {}
  for b, ball in ipairs(scene.balls) do
    balls[b] = {rgb = M.rgb[ball.colour], radius = ball.radius, x = tr[b].x, y = tr[b].y}
  end
  return sfwb._toy.render(balls, {frames = frames, height = scene.size, width = scene.size,
    background = scene.background, supersample = opts.supersample or 4})
end

-- one prompt a line, written to a temporary name and renamed
function M.write_prompts(path, scenes)
  local tmp = path .. ".tmp"
  local f, err = io.open(tmp, "wb")
  if not f then error("toy_world.write_prompts: " .. tostring(err), 2) end
  for _, s in ipairs(scenes) do f:write((type(s) == "string" and s or s.prompt), "\n") end
  f:close()
  local ok, rerr = os.rename(tmp, path)
  if not ok then error("toy_world.write_prompts: " .. tostring(rerr), 2) end
end

-- ---------------------------------------------------------------- measurements
local PALETTE = {}
for i, c in ipairs(M.colours) do PALETTE[i] = M.rgb[c] end

-- per frame: the balls found by colour: {n=, {colour="red", area=, x=, y=}, ...} (largest first).
-- A pixel belongs to a palette colour within `tol` (RGB distance, default 90: under half the closest
-- pair's distance, red-yellow 180); 4-connected same-colour regions of >= min_area px (default 12,
-- a sixth of the smallest ball) are balls.
function M.detect(video, opts)
  opts = opts or {}
  if video:dim() == 5 then
    if video:size(1) ~= 1 then error("toy_world.detect: one video at a time ([F, 3, H, W] or [1, F, 3, H, W])", 2) end
    video = video:select(1, 1)
  end
  local frames = sfwb._toy.detect(video:cpu(), {palette = PALETTE, tol = opts.tol or 90,
    min_area = opts.min_area or 12, max_blobs = 8})
  for _, fr in ipairs(frames) do
    for _, b in ipairs(fr) do b.colour = M.colours[b.colour] end
  end
  return frames
end

local function median(xs)
  if #xs == 0 then return nil end
  local s = {table.unpack(xs)}
  table.sort(s)
  local n = #s
  if n % 2 == 1 then return s[(n + 1) // 2] end
  return 0.5 * (s[n // 2] + s[n // 2 + 1])
end
M.median = median

-- judge a video of the world against its prompt:
--   r.frame_ok[f]       exactly the prompted balls (count and colours) in frame f
--   r.count[f]          balls found in frame f (any colour)
--   r.balls[b]          per prompted ball: detected (fraction of frames), centres x/y (false where absent),
--                       initial_velocity (px/frame along the prompted direction over the first
--                       direction_frames frames; the ball starts at least 8 frames from the wall it heads
--                       for), direction_ok, smoothness (median |v[t+1] - v[t]| over runs of three detected
--                       frames, px/frame^2; false when there is no such run), start_ok (its first
--                       detection in the half its prompted direction leaves) and heads_far (its initial
--                       motion along the prompted axis heads for the far wall from where it starts); both
--                       nil without an initial motion. A direction failure with heads_far true and start_ok
--                       false is a ball put in the wrong half, not a ball moving against the world's rule
--   r.direction_ok      every ball moved the prompted way (>= min_speed along it, <= max_drift across)
--   r.smooth            every ball's smoothness <= thresholds.smoothness
--   r.frames_ok         fraction of frames with frame_ok
function M.measure(video, prompt, opts)
  opts = opts or {}
  local expect = M.parse_prompt(prompt)
  local det = opts.detections or M.detect(video, opts)
  local F = #det
  local K = opts.direction_frames or 8
  local size = opts.size or (video and video:size(video:dim())) or M.size -- frames are square
  local min_speed, max_drift = opts.min_speed or 0.5, opts.max_drift or 0.5
  local r = {prompt = prompt, frames = F, frame_ok = {}, count = {}, balls = {}}
  local want = {}
  for _, e in ipairs(expect) do want[e.colour] = true end
  local nok = 0
  for f, fr in ipairs(det) do
    local ok = fr.n == #expect
    if ok then
      for _, b in ipairs(fr) do if not want[b.colour] then ok = false end end
    end
    r.frame_ok[f], r.count[f] = ok, fr.n
    if ok then nok = nok + 1 end
  end
  r.frames_ok = F > 0 and nok / F or 0
  r.direction_ok, r.smooth = true, true
  for bi, e in ipairs(expect) do
    local xs, ys, seen = {}, {}, 0
    for f, fr in ipairs(det) do
      xs[f], ys[f] = false, false
      for _, b in ipairs(fr) do
        if b.colour == e.colour then
          xs[f], ys[f] = b.x, b.y
          seen = seen + 1
          break
        end
      end
    end
    local ax, sg = AXIS[e.direction][1], AXIS[e.direction][2]
    local along = ax == 1 and xs or ys
    local across = ax == 1 and ys or xs
    -- initial motion: first and last detection within frames 1..K+1, at least K/2 frames apart
    local f0, f1
    for f = 1, math.min(K + 1, F) do
      if along[f] then
        f0 = f0 or f
        f1 = f
      end
    end
    local v0, drift, dir_ok = false, false, false
    local start_ok, heads_far = nil, nil
    if f0 and f1 - f0 >= K / 2 then
      v0 = sg * (along[f1] - along[f0]) / (f1 - f0)
      drift = math.abs(across[f1] - across[f0]) / (f1 - f0)
      dir_ok = v0 >= min_speed and drift <= max_drift
      -- the world's rule, split in two: the ball starts in the half its prompted direction leaves
      -- (an absolute position), and it heads for the far wall from where it starts (relative to itself)
      local mid = size / 2
      start_ok = sg * (along[f0] - mid) < 0
      heads_far = (along[f1] - along[f0]) * (mid - along[f0]) > 0
    end
    local acc = {}
    for f = 1, F - 2 do
      if xs[f] and xs[f + 1] and xs[f + 2] then
        local ax2 = xs[f + 2] - 2 * xs[f + 1] + xs[f]
        local ay2 = ys[f + 2] - 2 * ys[f + 1] + ys[f]
        acc[#acc + 1] = math.sqrt(ax2 * ax2 + ay2 * ay2)
      end
    end
    local sm = median(acc) or false
    r.balls[bi] = {colour = e.colour, direction = e.direction, detected = F > 0 and seen / F or 0, x = xs, y = ys,
      initial_velocity = v0, drift = drift, direction_ok = dir_ok, smoothness = sm, start_ok = start_ok,
      heads_far = heads_far}
    if not dir_ok then r.direction_ok = false end
    if not sm or sm > M.thresholds.smoothness then r.smooth = false end
  end
  return r
end

-- over many measured videos: frames_ok (all frames pooled, or those from frame `from` on),
-- direction (fraction of videos), smooth (fraction of videos), smoothness (median of the videos'
-- worst-ball medians), by_frame[f] (fraction of videos with frame f right: the error-accumulation curve),
-- start_half / heads_far / ball_direction (fractions of all prompted balls with start_ok / heads_far /
-- direction_ok, see M.measure: a two-ball video with one ball right counts half here, nothing in direction)
function M.summarize(results, opts)
  opts = opts or {}
  local from = opts.from or 1
  local frames, ok, dir, smooth, worst, by_frame, n_at = 0, 0, 0, 0, {}, {}, {}
  local nb, st, far, bd = 0, 0, 0, 0
  for _, r in ipairs(results) do
    for f = 1, r.frames do
      if f >= from then
        frames = frames + 1
        if r.frame_ok[f] then ok = ok + 1 end
      end
      n_at[f] = (n_at[f] or 0) + 1
      by_frame[f] = (by_frame[f] or 0) + (r.frame_ok[f] and 1 or 0)
    end
    if r.direction_ok then dir = dir + 1 end
    if r.smooth then smooth = smooth + 1 end
    local w = 0
    for _, b in ipairs(r.balls) do
      w = math.max(w, b.smoothness or math.huge)
      nb = nb + 1
      if b.start_ok then st = st + 1 end
      if b.heads_far then far = far + 1 end
      if b.direction_ok then bd = bd + 1 end
    end
    worst[#worst + 1] = w
  end
  for f = 1, #by_frame do by_frame[f] = by_frame[f] / n_at[f] end
  local n = #results
  return {videos = n, frames_ok = frames > 0 and ok / frames or 0, direction = n > 0 and dir / n or 0,
    smooth = n > 0 and smooth / n or 0, smoothness = median(worst) or false, by_frame = by_frame,
    start_half = nb > 0 and st / nb or 0, heads_far = nb > 0 and far / nb or 0,
    ball_direction = nb > 0 and bd / nb or 0}
end

return M
