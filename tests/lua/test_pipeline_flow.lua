-- test_pipeline_flow.lua — the causal pipeline's control flow with a recording stand-in model: block
-- layout, call order and tags {chunk, step, pass, timestep}, cache positions, context pass inputs,
-- step-noise draws, I2V slicing of y, on_block, rollout early stop; numerics are in test_pipeline.lua.
local sfwb = require "sfwb"
local T = require "sfwb.testing"

if not sfwb.scheduler then
  print("SKIP: needs sfwb.scheduler on this build")
  T.done()
end

-- a model whose flow is a fixed function of its input, recording every call
local function mock(C)
  local m = {config = {out_dim = C or 16, num_layers = 2}, calls = {}}
  function m:parameters() return {w = sfwb.zeros({1})} end
  function m:kv_cache(o) self.kv_opts = o return {frames = o.frames} end
  function m:crossattn_cache(o) return {batch = o.batch} end
  function m:forward(x, t, ctx, o)
    local rec = {shape = x:shape(), t = t:totable(), start = o.current_start_frame, tag = o.tag,
                 x = x:clone(), kv = o.kv_cache, ca = o.crossattn_cache}
    if o.y then rec.y = o.y:clone() end
    if o.clip_fea then rec.clip = true end
    self.calls[#self.calls + 1] = rec
    return x * 0.25 - 0.1
  end
  return m
end

local B, h, w = 1, 2, 2
local ctx = sfwb.randn({B, 5, 8})

T.case("T2V: 2 blocks x (4 denoise + 1 refresh), tags and positions", function()
  local m = mock()
  local p = sfwb.pipeline.causal{generator = m, num_frame_per_block = 3}
  local draws = 0
  local r = p:generate{noise = sfwb.randn({B, 6, 16, h, w}), prompt_embeds = ctx,
                       step_noise = function(shape) draws = draws + 1 return sfwb.randn(shape) end}
  T.eq(#m.calls, 10)
  T.eq(draws, 6, "3 re-noisings per block")
  T.eq(m.kv_opts.frames, 6)
  local steps = {1000.0, 937.5, 833.3333129882812, 625.0}
  for i, c in ipairs(m.calls) do
    local blk = (i - 1) // 5 + 1
    local k = (i - 1) % 5 + 1
    T.eq(c.tag.chunk, blk)
    T.eq(c.start, (blk - 1) * 3)
    T.eq(c.shape[3], 3, "model layout [B, C, F, H, W]")
    T.eq(c.shape[2], 16)
    if k <= 4 then
      T.eq(c.tag.pass, "denoise"); T.eq(c.tag.step, k)
      T.near(c.tag.timestep, steps[k], 1e-6)
      T.near(c.t[1][1], steps[k], 1e-6)
    else
      T.eq(c.tag.pass, "refresh"); T.eq(c.tag.step, 5); T.eq(c.t[1][1], 0)
    end
  end
  -- the context pass sees the block's final x0 (= the recorded output), not re-noised
  local x0_blk1 = r.latents:narrow(2, 1, 3)
  local refresh_in = m.calls[5].x:permute({1, 3, 2, 4, 5})
  T.eq((refresh_in - x0_blk1):abs():max():item(), 0)
  T.eq(r.latents:size(2), 6)
  T.eq(table.concat(r.chunk_sizes, ","), "3,3")
  T.eq(r.calls, 10)
end)

T.case("x0 and re-noise follow the scheduler", function()
  local m = mock()
  local p = sfwb.pipeline.causal{generator = m, num_frame_per_block = 1, denoising_step_list = {1000, 500}}
  local eps = sfwb.randn({B, 1, 16, h, w})
  local noise = sfwb.randn({B, 1, 16, h, w})
  local r = p:generate{noise = noise, prompt_embeds = ctx, step_noise = function() return eps end}
  local s = p.scheduler
  local t1, t2 = p._steps[1], p._steps[2]
  -- step 1: x0 = x - sigma(t1) * flow ; x1 = (1 - sigma(t2)) x0 + sigma(t2) eps ; step 2: x0 of x1
  local function sigma(t)
    return s.sigmas:totable()[s:index(t) + 1]
  end
  local flow1 = noise * 0.25 - 0.1
  local x0 = noise - flow1 * sigma(t1)
  local x1 = x0 * (1 - sigma(t2)) + eps * sigma(t2)
  local want = x1 - (x1 * 0.25 - 0.1) * sigma(t2)
  T.close(r.latents, want, 1e-6)
end)

T.case("independent first frame and I2V slicing", function()
  local m = mock()
  local p = sfwb.pipeline.causal{generator = m, num_frame_per_block = 2, independent_first_frame = true}
  p:generate{noise = sfwb.randn({B, 5, 16, h, w}), prompt_embeds = ctx}
  local starts = {}
  for _, c in ipairs(m.calls) do if c.tag.step == 1 then starts[#starts + 1] = c.start .. ":" .. c.shape[3] end end
  T.eq(table.concat(starts, " "), "0:1 1:2 3:2")
  -- I2V: the image latent is a context pass at t=0; y is sliced at absolute frame positions
  local m2 = mock()
  local p2 = sfwb.pipeline.causal{generator = m2, num_frame_per_block = 2, independent_first_frame = true}
  local y = sfwb.arange(0, 5, 1):view({1, 1, 5, 1, 1}):expand({1, 4, 5, h, w}):contiguous()
  local init = sfwb.randn({B, 1, 16, h, w})
  local r = p2:generate{noise = sfwb.randn({B, 4, 16, h, w}), prompt_embeds = ctx, initial_latent = init, y = y,
                        clip_fea = sfwb.zeros({1, 3, 4})}
  local c1 = m2.calls[1]
  T.eq(c1.tag.pass, "refresh"); T.eq(c1.t[1][1], 0); T.eq(c1.start, 0); T.eq(c1.shape[3], 1)
  T.eq(c1.y:size(3), 1); T.eq(c1.y:select(3, 1):max():item(), 0)
  local c2 = m2.calls[2] -- first generated block: frames 1..2
  T.eq(c2.start, 1); T.eq(c2.y:size(3), 2); T.eq(c2.y:select(3, 1):max():item(), 1); T.eq(c2.y:select(3, 2):max():item(), 2)
  T.check(c2.clip, "clip_fea passed")
  T.eq(r.latents:size(2), 5)
  T.eq((r.latents:narrow(2, 1, 1) - init):abs():max():item(), 0, "the image latent is the first output frame")
  T.raises(function()
    p2:generate{noise = sfwb.randn({B, 4, 16, h, w}), prompt_embeds = ctx, initial_latent = sfwb.randn({B, 2, 16, h, w})}
  end, "initial_latent")
end)

T.case("rollout: step through, on_block, early stop frees the caches", function()
  local m = mock()
  local p = sfwb.pipeline.causal{generator = m, num_frame_per_block = 3}
  local seen = {}
  local ro = p:rollout{noise = sfwb.randn({B, 9, 16, h, w}), prompt_embeds = ctx,
                       on_block = function(i, lat) seen[#seen + 1] = i .. ":" .. lat:size(2) end}
  for chunk in ro do
    T.eq(chunk.frames, 3)
    if chunk.index == 2 then break end
  end
  T.eq(table.concat(seen, " "), "1:3 2:3")
  ro:close()
  T.eq(ro.kv, nil)
  T.eq(ro:latents():size(2), 6, "partial latents kept")
  T.eq(ro:next(), nil)
  T.eq(#m.calls, 10, "no work after the break")
  -- a generic for with break closes the rollout through its to-be-closed value
  local m2 = mock()
  local p2 = sfwb.pipeline.causal{generator = m2, num_frame_per_block = 3}
  local last
  for chunk in p2:rollout{noise = sfwb.randn({B, 9, 16, h, w}), prompt_embeds = ctx} do
    last = chunk
    break
  end
  T.eq(last.index, 1)
end)

T.case("windowed cache options and errors", function()
  local m = mock()
  local p = sfwb.pipeline.causal{generator = m, num_frame_per_block = 3, local_attn_size = 6, sink_size = 1}
  p:generate{noise = sfwb.randn({B, 12, 16, h, w}), prompt_embeds = ctx}
  T.eq(m.kv_opts.frames, 6); T.eq(m.kv_opts.local_attn_size, 6); T.eq(m.kv_opts.sink_size, 1)
  T.raises(function() sfwb.pipeline.causal{generator = m, num_frame_per_block = 3, local_attn_size = 3, sink_size = 1} end,
           "local_attn_size")
  T.raises(function() p:generate{noise = sfwb.randn({B, 4, 16, h, w}), prompt_embeds = ctx} end, "multiple")
  T.raises(function() sfwb.pipeline.causal{} end, "generator")
  T.eq(tostring(p):match("^CausalPipeline") ~= nil, true)
end)

T.case("bidirectional: K-1 evaluations, uniform timestep", function()
  local m = mock()
  local p = sfwb.pipeline.bidirectional{generator = m}
  local r = p:generate{noise = sfwb.randn({B, 4, 16, h, w}), prompt_embeds = ctx}
  T.eq(#m.calls, 3)
  T.eq(#m.calls[1].t, 1, "t [B]")
  T.eq(m.calls[2].tag.step, 2)
  local pa = sfwb.pipeline.bidirectional{generator = m, all_steps = true}
  m.calls = {}
  pa:generate{noise = sfwb.randn({B, 4, 16, h, w}), prompt_embeds = ctx}
  T.eq(#m.calls, 4)
end)

T.done()
