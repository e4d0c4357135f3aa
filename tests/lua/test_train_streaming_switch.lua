-- test_train_streaming_switch.lua — LongLive's dmd_switch inside streaming long tuning: a prompt switch inside a
-- gradient chunk (recache from the previous frames, zeroed sink, zeroed cross-attention K/V, gradient from the
-- switch block on) against our PyTorch transcription (tests/lua/streaming_step.lua). cpu and emu:0.
local T = require "sfwb.testing"

if not T.have_torch then
  print("skip: python3-torch not importable")
  T.done()
  return
end
local run = dofile("tests/lua/streaming_step.lua")

for _, dev in ipairs({"cpu", "emu:0"}) do
  T.case("dmd_switch: a prompt switch inside a gradient chunk equals LongLive's (" .. dev .. ")", function()
    local tr, worst = run("switch", dev)
    print(string.format("  worst relative gradient difference %.2g", worst))
    T.check(tr.stream.recaches == 1, "one recache")
    T.eq(tr.stream.switch_index ~= nil, true)
  end)
end

T.done()
