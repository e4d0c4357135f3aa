-- test_cuda_stream.lua — sfwb.cuda's asynchronous side on emu:0 (or $SFWB_TEST_DEVICE): events bracket
-- device work and give its time, properties describe the device, pinned CPU tensors and copy_async move
-- data in stream order, and misuse is refused with a message naming the problem.
local sfwb = require "sfwb"
local T = require "sfwb.testing"
local dev = T.test_device()

T.case("properties: name, memory, 48 KB static shared memory, compute capability", function()
  if not dev then print("  (skipped: no emu device)") return end
  local p = sfwb.cuda.properties(dev)
  T.check(type(p.name) == "string" and #p.name > 0, "a name")
  T.check(p.total_memory > 0 and p.free_memory <= p.total_memory, "memory figures")
  T.eq(p.shared_memory_per_block, 49152, "the static/default shared-memory limit")
  T.check(p.shared_memory_per_block_optin >= 49152, "opt-in limit")
  T.check(p.compute_capability:match("^%d+%.%d+$"), p.compute_capability)
  T.check(p.multiprocessors > 0, "multiprocessors")
end)

T.case("events: elapsed time of enqueued work is positive and ordered", function()
  if not dev then print("  (skipped: no emu device)") return end
  local a, b, c = sfwb.cuda.event(dev), sfwb.cuda.event(dev), sfwb.cuda.event(dev)
  local x = sfwb.randn({128, 128}, {device = dev})
  a:record()
  local y = sfwb.matmul(x, x)
  b:record()
  y = sfwb.matmul(y, x)
  c:record()
  local ab, ac = a:elapsed_ms(b), a:elapsed_ms(c)
  T.check(ab >= 0 and ac >= ab, string.format("a->b %.4f ms, a->c %.4f ms", ab, ac))
  T.check(y:sum():item() == y:sum():item(), "the work ran")
  T.raises(function() return a:elapsed_ms(sfwb.cuda.event(dev)) end, "not recorded")
end)

T.case("pinned memory and copy_async: a round trip in stream order", function()
  if not dev then print("  (skipped: no emu device)") return end
  local h = sfwb.randn({3, 1001}):pin_memory()
  T.check(h:is_pinned() and not sfwb.randn({2}):is_pinned(), "is_pinned")
  T.eq(h:device(), "cpu")
  local d = sfwb.empty({3, 1001}, {device = dev})
  sfwb.cuda.copy_async(d, h)                    -- host -> device, enqueued
  local back = sfwb.zeros({3, 1001}):pin_memory()
  sfwb.cuda.copy_async(back, d * 2 + 1)         -- device -> host after the arithmetic, same stream
  sfwb.cuda.synchronize(dev)
  T.close(back, h * 2 + 1, 0, "round trip")
  T.raises(function() sfwb.cuda.copy_async(d, sfwb.randn({3, 1001})) end, "must be pinned")
  T.raises(function() sfwb.cuda.copy_async(d, sfwb.randn({3, 1000}):pin_memory()) end, "element count")
  T.raises(function() sfwb.cuda.copy_async(h, sfwb.randn({3, 1001})) end, "one tensor must be")
  T.raises(function() d:pin_memory() end, "only cpu tensors")
  T.raises(function() sfwb.cuda.event("cpu") end, "not cpu")
  T.raises(function() sfwb.cuda.event("cuda:7") end, "cuda:7")
end)

T.done()
