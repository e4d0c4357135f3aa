-- test_kv_policy.lua — the KV cache policy in Lua (sfwb.kv_policy): a third policy written as docs/kv_policy.md
-- shows (a sliding read over a global buffer) reproduces the built-in rolling window exactly; plans are checked
-- by C before anything is written; the shipped instances resolve by name.
local sfwb = require "sfwb"
local T = require "sfwb.testing"
local P = require "sfwb.kv_policy"

local function tiny()
  sfwb.manual_seed(4)
  return sfwb.wan.new({dim = 64, ffn_dim = 128, num_heads = 2, num_layers = 2, in_dim = 16, out_dim = 16, text_dim = 32,
                       text_len = 16, freq_dim = 256}, {causal = true, num_frame_per_block = 3})
end

local function rollout(m, o)
  sfwb.manual_seed(9)
  local ctx = sfwb.randn({1, 11, 32})
  local p = sfwb.pipeline.causal(o)
  return p:generate{prompt_embeds = ctx, num_frames = 15, latent_size = {4, 6}, seed = 5}
end

T.case("a third policy: a 6-frame sliding read over a global buffer equals the rolling 6-frame window", function()
  local m = tiny()
  local calls = 0
  local sliding = P.new{
    name = "sliding_read",
    plan = function(_, state, call)
      calls = calls + 1
      local new_end = state.local_end + (call.start + call.frames - state.global_end)
      return {write = {at = new_end - call.frames, from = 0, n = call.frames},
              read = {{math.max(0, new_end - 6), new_end}},
              advance = true, global_end = call.start + call.frames, local_end = new_end}
    end,
  }
  local a = rollout(m, {generator = m, num_frame_per_block = 3, kv_policy = sliding})
  T.eq(calls, 5 * 5, "one plan per forward call")
  local b = rollout(m, {generator = m, num_frame_per_block = 3, local_attn_size = 6, sink_size = 0})
  T.eq((a.latents - b.latents):abs():max():item(), 0, "same keys read, same latents")
  local c = rollout(m, {generator = m, num_frame_per_block = 3})   -- global attention differs
  T.check((c.latents - b.latents):abs():max():item() > 1e-4, "the window matters")
end)

T.case("plans are checked before anything is written; names resolve", function()
  local m = tiny()
  local bad = P.new{name = "bad", plan = function() return {write = {at = 5, from = 0, n = 3}, read = {{0, 8}}} end}
  local kv = m:kv_cache{batch = 1, frames = 6, policy = bad}
  T.eq(tostring(kv.policy), "kv_policy(bad)")
  local x, t, ctx = sfwb.randn({1, 16, 3, 4, 6}), sfwb.full({1, 3}, 500), sfwb.randn({1, 11, 32})
  T.raises(function() m:forward(x, t, ctx, {kv_cache = kv}) end, "slots [5, 8)")
  T.eq(kv.global_end, 0)
  T.raises(function() m:kv_cache{frames = 6, policy = "nope"} end, "policy must be")
  T.raises(function() P.new{name = "x"} end, "plan=")
  T.eq(m:kv_cache{frames = 6}.policy, P.self_forcing)
  T.eq(m:kv_cache{frames = 6, policy = "longlive"}.policy, P.longlive)
  local noread = P.new{plan = function(_, _, c) return {write = {at = 0, from = 0, n = c.frames}, read = {{0, 0}}} end}
  T.raises(function() m:forward(x, t, ctx, {kv_cache = m:kv_cache{frames = 6, policy = noread}}) end, "empty")
end)

T.case("the shipped plans: Self-Forcing rolls, LongLive protects the sink on a recompute", function()
  local st = {global_end = 12, local_end = 12, capacity = 12, sink_size = 3, local_attn_size = 12}
  local p = P.self_forcing:plan(st, {start = 12, frames = 3})
  T.eq(p.roll.dst, 3); T.eq(p.roll.src, 6); T.eq(p.roll.n, 6)
  T.eq(p.write.at, 9); T.eq(p.read[1][1], 0); T.eq(p.read[1][2], 12)
  local q = P.longlive:plan({global_end = 6, local_end = 6, capacity = 12, sink_size = 6, local_attn_size = 12},
                            {start = 3, frames = 3})
  T.eq(q.write.n, 0, "all three frames in protected sink slots"); T.eq(q.advance, nil)
  local r = P.longlive:plan({global_end = 30, local_end = 30, capacity = 40, sink_size = 3, local_attn_size = -1},
                            {start = 27, frames = 3})
  T.eq(#r.read, 2); T.eq(r.read[2][1], 12, "sink + the last 18 frames of a 21-frame attention")
  local s = P.longlive:switch({local_attn_size = 12}, {pos = 30, global_sink = true})
  T.eq(s.zero, false); T.eq(s.recache_start, 18); T.eq(s.recache_frames, 12)
end)

T.done()
