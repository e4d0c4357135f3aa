-- test_toy_world.lua — the bouncing-balls world (lua/sfwb/toy_world.lua, src/models/toy_world.c): its
-- rules, determinism, the renderer against an independent torch rasterizer stepping the physics frame
-- by frame (tests/ref/toy_world_ref.py), and the measurements: the ground truth passes them, and each
-- kind of wrong video (colour, count, direction, jitter, noise) fails the part that should catch it.
local sfwb = require "sfwb"
local T = require "sfwb.testing"
local json = require "sfwb.json"
local W = sfwb.toy_world

local FRAMES = 81

T.case("scenes follow the world's rules and the prompt grammar", function()
  local scenes = W.scenes(300, 3, {frames = FRAMES})
  local two = 0
  for i, s in ipairs(scenes) do
    T.check(#s.balls == 1 or #s.balls == 2, "ball count")
    if #s.balls == 2 then two = two + 1 end
    for c = 1, 3 do T.check(s.background[c] >= 0 and s.background[c] <= 30, "background <= 30") end
    local seen = {}
    local parts = {}
    for _, b in ipairs(s.balls) do
      T.check(W.rgb[b.colour] and not seen[b.colour], "distinct palette colours")
      seen[b.colour] = true
      T.check(b.radius >= 5 and b.radius <= 8, "radius in [5, 8]")
      T.check(b.speed >= 1 and b.speed <= 3, "speed in [1, 3]")
      local along = (b.direction == "left" or b.direction == "right") and b.x0 or b.y0
      if b.direction == "right" or b.direction == "down" then
        T.check(along <= 32, string.format("scene %d: a ball moving %s starts in the other half (%.1f)", i, b.direction, along))
      else
        T.check(along >= 32, string.format("scene %d: a ball moving %s starts in the other half (%.1f)", i, b.direction, along))
      end
      parts[#parts + 1] = "a " .. b.colour .. " ball moving " .. b.direction
    end
    T.eq(s.prompt, table.concat(parts, " and "), "prompt")
    T.check(s.prompt:match("^a %a+ ball moving %a+$") or s.prompt:match("^a %a+ ball moving %a+ and a %a+ ball moving %a+$"),
      "prompt form: " .. s.prompt)
    -- the trajectory stays inside the frame and keeps its speed except at a bounce
    local tr = W.trajectory(s, FRAMES)
    for b, ball in ipairs(s.balls) do
      for f = 1, FRAMES do
        T.check(tr[b].x[f] >= ball.radius - 1e-9 and tr[b].x[f] <= 64 - ball.radius + 1e-9, "inside in x")
        T.check(tr[b].y[f] >= ball.radius - 1e-9 and tr[b].y[f] <= 64 - ball.radius + 1e-9, "inside in y")
      end
    end
  end
  T.check(two > 100 and two < 200, "about half the scenes have two balls: " .. two)
  local first = W.sample_scene(1234)
  T.eq(first.prompt, W.sample_scene(1234).prompt, "same seed, same scene")
  T.eq(first.balls[1].x0, W.sample_scene(1234).balls[1].x0, "same seed, same start")
  T.check(W.scenes(5, 1)[3].balls[1].x0 ~= W.scenes(5, 2)[3].balls[1].x0, "another seed, another scene")
  T.eq(W.scenes(5, 1)[3].prompt, W.scenes(9, 1)[3].prompt, "scene i depends on (seed, i) only")
  -- a scene for a given prompt shows exactly that prompt, and measures right
  for i, p in ipairs({"a yellow ball moving up", "a green ball moving left and a red ball moving down"}) do
    local s = W.scene_for_prompt(p, i)
    T.eq(s.prompt, p)
    T.eq(W.measure(W.render(s, {frames = FRAMES}), p).frames_ok, 1.0, p)
  end
end)

T.case("prompts parse, and malformed ones are refused with the prompt named", function()
  local p = W.parse_prompt("a red ball moving down and a blue ball moving right")
  T.eq(#p, 2)
  T.eq(p[1].colour, "red")
  T.eq(p[2].direction, "right")
  T.raises(function() W.parse_prompt("a purple ball moving right") end, "a purple ball moving right")
  T.raises(function() W.parse_prompt("a red ball moving sideways") end, "not a toy-world prompt")
  T.raises(function() W.parse_prompt("a red ball moving up and a red ball moving down") end, "twice")
  T.raises(function() W.parse_prompt(3) end, "expected a string")
  T.raises(function() sfwb._toy.detect(sfwb.zeros({2, 4, 8, 8}), {palette = {{1, 2, 3}}}) end, "[F, 3, H, W]")
  T.raises(function() sfwb._toy.render({{rgb = {1, 2}, radius = 5, x = {1}, y = {1}}}, {frames = 1}) end, "{r, g, b}")
  T.raises(function() sfwb._toy.render({{rgb = {1, 2, 3}, radius = 5, x = {}, y = {}}}, {frames = 2}) end, "one number per frame")
end)

if T.have_torch then
  T.case("renderer equals an independent rasterizer; splitmix64 equals the reference", function()
    local dir = T.tmpdir("toy_world")
    local scenes = W.scenes(6, 11, {frames = 24})
    json.write(dir .. "/scenes.json", {frames = 24, scenes = scenes})
    T.check(os.execute(T.python .. " tests/ref/toy_world_ref.py '" .. dir .. "'") == true, "reference script")
    local exp = sfwb.load(dir .. "/expected.pt")
    for i, s in ipairs(scenes) do
      local tr = W.trajectory(s, 24)
      for b = 1, #s.balls do
        local ex, ey = exp["x_" .. (i - 1) .. "_" .. (b - 1)]:totable(), exp["y_" .. (i - 1) .. "_" .. (b - 1)]:totable()
        for f = 1, 24 do
          T.near(tr[b].x[f], ex[f], 1e-9, "x of ball " .. b)
          T.near(tr[b].y[f], ey[f], 1e-9, "y of ball " .. b)
        end
      end
      local got, want = W.render(s, {frames = 24}), exp["frames_" .. (i - 1)]
      local d = (got - want):abs()
      -- f32 (sfwb) and f64 (reference) sub-sample tests may differ exactly on a circle's edge: one
      -- sub-sample of 16 is at most 230 / 16 levels; anything else must be identical
      local levels = 2 / 255
      T.check(d:max():item() <= 15 * levels, "scene " .. i .. ": max diff " .. d:max():item() / levels .. " levels")
      local off = (d:gt(0.5 * levels)):float():mean():item()
      T.check(off < 1e-3, "scene " .. i .. ": fraction of pixels off " .. off)
    end
    local sm = json.read(dir .. "/splitmix.json")
    for _, seed in ipairs({0, 1, 12345, -7}) do
      local r = W.rng(seed)
      for k = 1, 4 do T.eq(tostring(r:next64()), sm[tostring(seed)][k], "splitmix64 seed " .. seed .. " output " .. k) end
    end
  end)
else
  print("skip renderer reference: python3-torch is not importable")
end

-- renders a scene with its balls overridden (for wrong videos)
local function render_with(scene, frames, edit)
  local tr = W.trajectory(scene, frames)
  local balls = {}
  for b, ball in ipairs(scene.balls) do
    balls[b] = {rgb = W.rgb[ball.colour], radius = ball.radius, x = tr[b].x, y = tr[b].y}
  end
  balls = edit(balls) or balls
  return sfwb._toy.render(balls, {frames = frames, height = 64, width = 64, background = scene.background})
end

T.case("measurements: the ground truth passes every check", function()
  local res = {}
  local scenes = W.scenes(60, 5, {frames = FRAMES})
  for i, s in ipairs(scenes) do
    local v = W.render(s, {frames = FRAMES})
    res[i] = W.measure(v, s.prompt)
    local tr = W.trajectory(s, FRAMES)
    for b = 1, #s.balls do -- centroids recover the centres
      for f = 1, FRAMES, 7 do
        T.check(math.abs(res[i].balls[b].x[f] - tr[b].x[f]) < 0.3, "centroid x")
        T.check(math.abs(res[i].balls[b].y[f] - tr[b].y[f]) < 0.3, "centroid y")
      end
      T.check(math.abs(res[i].balls[b].initial_velocity - s.balls[b].speed) < 0.1, "initial velocity = speed")
    end
  end
  local sum = W.summarize(res)
  T.eq(sum.frames_ok, 1.0, "frames ok")
  T.eq(sum.direction, 1.0, "direction")
  T.eq(sum.smooth, 1.0, "smooth")
  T.check(sum.smoothness < 0.3, "smoothness " .. sum.smoothness)
  T.eq(sum.start_half, 1.0, "every ball starts in the half its direction leaves")
  T.eq(sum.heads_far, 1.0, "every ball heads for the far wall")
  T.eq(sum.ball_direction, 1.0, "every ball moves the prompted way")
  T.eq(#sum.by_frame, FRAMES)
  -- also on a video as the pipelines return it, [1, F, 3, H, W]
  T.eq(W.measure(W.render(scenes[1], {frames = 9}):unsqueeze(1), scenes[1].prompt).frames_ok, 1.0)
end)

T.case("measurements: wrong videos fail the check that should catch them", function()
  local scenes = W.scenes(40, 9, {frames = FRAMES})
  local s1, s2
  for _, s in ipairs(scenes) do
    if #s.balls == 1 and not s1 then s1 = s end
    if #s.balls == 2 and not s2 then s2 = s end
  end
  -- a ball missing: frames fail, the missing ball has no direction
  local r = W.measure(render_with(s2, FRAMES, function(b) return {b[1]} end), s2.prompt)
  T.eq(r.frames_ok, 0.0, "missing ball")
  T.eq(r.direction_ok, false, "missing ball: no direction")
  -- the wrong colour (red <-> blue by channel swap, yellow -> green...): every frame fails
  local other = {red = "blue", blue = "red", green = "yellow", yellow = "green"}
  r = W.measure(render_with(s1, FRAMES, function(b) b[1].rgb = W.rgb[other[s1.balls[1].colour]] end), s1.prompt)
  T.eq(r.frames_ok, 0.0, "wrong colour")
  -- an extra ball of an unprompted colour
  r = W.measure(render_with(s1, FRAMES, function(b)
    local xs, ys = {}, {}
    for f = 1, FRAMES do xs[f], ys[f] = 10, 10 end
    b[2] = {rgb = W.rgb[other[s1.balls[1].colour]], radius = 4, x = xs, y = ys}
  end), s1.prompt)
  T.check(r.frames_ok < 0.2, "extra ball: frames ok " .. r.frames_ok)
  -- the opposite direction in the prompt
  local flip = {left = "right", right = "left", up = "down", down = "up"}
  local wrong = "a " .. s1.balls[1].colour .. " ball moving " .. flip[s1.balls[1].direction]
  r = W.measure(W.render(s1, {frames = FRAMES}), wrong)
  T.eq(r.direction_ok, false, "opposite direction")
  T.eq(r.frames_ok, 1.0, "opposite direction: frames still right")
  -- ... a ball in the wrong half for the prompt, still heading for its far wall
  T.eq(r.balls[1].start_ok, false, "opposite direction: wrong start half")
  T.eq(r.balls[1].heads_far, true, "opposite direction: still heads for the far wall")
  -- in the right half for the prompt but heading for the wall it is near (1 px/frame for 10 frames)
  local d1 = s1.balls[1].direction
  local sg = (d1 == "right" or d1 == "down") and 1 or -1
  r = W.measure(render_with(s1, FRAMES, function(b)
    for f = 1, FRAMES do
      local a = 32 - sg * 12 - sg * math.min(f - 1, 10)
      if d1 == "left" or d1 == "right" then b[1].x[f], b[1].y[f] = a, 32 else b[1].x[f], b[1].y[f] = 32, a end
    end
  end), s1.prompt)
  T.eq(r.balls[1].start_ok, true, "near-wall heading: right start half")
  T.eq(r.balls[1].heads_far, false, "near-wall heading: not for the far wall")
  T.eq(r.direction_ok, false, "near-wall heading: wrong direction")
  -- the perpendicular direction: the ball does not move along the prompted axis
  local perp = {left = "up", right = "down", up = "left", down = "right"}
  r = W.measure(W.render(s1, {frames = FRAMES}), "a " .. s1.balls[1].colour .. " ball moving " .. perp[s1.balls[1].direction])
  T.eq(r.direction_ok, false, "perpendicular direction")
  -- jitter of 2 px on the centres: motion is not smooth
  local rng = W.rng(77)
  r = W.measure(render_with(s1, FRAMES, function(b)
    for f = 1, FRAMES do
      b[1].x[f] = math.min(math.max(b[1].x[f] + rng:uniform(-2, 2), 8), 56)
      b[1].y[f] = math.min(math.max(b[1].y[f] + rng:uniform(-2, 2), 8), 56)
    end
  end), s1.prompt)
  T.eq(r.smooth, false, "jitter")
  T.check(r.balls[1].smoothness > 1.0, "jitter smoothness " .. r.balls[1].smoothness)
  -- noise: no frame right
  sfwb.manual_seed(3)
  r = W.measure(sfwb.randn({FRAMES, 3, 64, 64}):clamp(-1, 1), s1.prompt)
  T.check(r.frames_ok < 0.05, "noise frames ok " .. r.frames_ok)
  T.eq(r.direction_ok, false, "noise direction")
  -- frozen: the first frame repeated has no motion
  local v = W.render(s1, {frames = FRAMES})
  r = W.measure(v:narrow(1, 1, 1):expand({FRAMES, 3, 64, 64}):contiguous(), s1.prompt)
  T.eq(r.direction_ok, false, "frozen video")
  T.eq(r.frames_ok, 1.0, "frozen video: frames right")
end)

T.done()
