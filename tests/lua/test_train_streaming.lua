-- test_train_streaming.lua — LongLive's streaming long tuning, one run of two trainer iterations against our
-- PyTorch transcription (tests/lua/streaming_step.lua says what is compared; the prompt switch variant is
-- test_train_streaming_switch.lua). cpu and emu:0.
local T = require "sfwb.testing"

if not T.have_torch then
  print("skip: python3-torch not importable")
  T.done()
  return
end
local run = dofile("tests/lua/streaming_step.lua")

T.case("the comparison can fail: without gradient_checkpointing the cross-attention K/V get no gradient", function()
  local ok, err = pcall(run, "stream", "cpu", false)
  T.check(not ok and tostring(err):find("generator grad 0", 1, true), "must not match: " .. tostring(err))
end)

for _, dev in ipairs({"cpu", "emu:0"}) do
  T.case("streaming long tuning: two iterations equal LongLive's (" .. dev .. ")", function()
    local tr, worst = run("stream", dev)
    print(string.format("  worst relative gradient difference %.2g", worst))
    T.check(tr.stream.sequences == 2, "a second sequence started")
  end)
end

T.done()
