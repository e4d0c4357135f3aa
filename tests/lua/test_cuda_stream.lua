-- test_cuda_stream.lua — sfwb.cuda's asynchronous side on emu:0 (or $SFWB_TEST_DEVICE): events bracket
-- device work and give its time, properties describe the device, pinned CPU tensors and copy_async move
-- data in stream order, user streams take a thread's work (with_stream/set_stream) and order it across
-- streams (wait_event, wait_stream), the caching allocator keeps each stream's blocks apart (record_stream
-- for memory used on two streams), and misuse is refused with a message naming the problem.
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

-- a size of its own (bytes -> its own size class), so the cache's lists for it start empty
local function fresh(n) return sfwb.empty({n}, {device = dev}) end
local function mem() collectgarbage("collect") collectgarbage("collect") return sfwb.cuda.memory(dev) end
local function caching() -- ASan builds cache nothing (every free returns the block)
  local before = mem().cached_blocks
  local t = fresh(12345) t = nil -- luacheck: ignore t
  return mem().cached_blocks > before
end

T.case("streams: current stream, with_stream restores (also on error), the same results on any stream", function()
  if not dev then print("  (skipped: no emu device)") return end
  local own = sfwb.cuda.current_stream(dev)
  T.check(own.is_default and own == sfwb.cuda.default_stream(dev), "the device's own stream is current at first")
  T.eq(own.device, dev)
  local s = sfwb.cuda.stream(dev)
  T.check(not s.is_default and s ~= own, "a new stream")
  T.check(tostring(s):match("Stream%(" .. dev:gsub("%p", "%%%0")), tostring(s))
  local x = sfwb.randn({64, 48}, {device = dev})
  local ref = (sfwb.matmul(x, x:t()) + 1):relu():sum(1)
  local got, again = sfwb.cuda.with_stream(s, function(a, b)
    T.check(sfwb.cuda.current_stream(dev) == s, "s is current inside")
    return (sfwb.matmul(a, a:t()) + b):relu():sum(1), "two results"
  end, x, 1)
  T.eq(again, "two results")
  T.check(sfwb.cuda.current_stream(dev) == own, "restored")
  s:synchronize()
  T.close(got, ref, 0, "the same op on another stream")
  local ok, err = pcall(sfwb.cuda.with_stream, s, function() error("inside") end)
  T.check(not ok and tostring(err):match("inside"), "the error goes on")
  T.check(sfwb.cuda.current_stream(dev) == own, "restored after an error")
  -- nested, and set_stream by hand
  local s2 = sfwb.cuda.stream(dev)
  sfwb.cuda.with_stream(s, function()
    sfwb.cuda.with_stream(s2, function() T.check(sfwb.cuda.current_stream(dev) == s2, "inner") end)
    T.check(sfwb.cuda.current_stream(dev) == s, "outer again")
  end)
  sfwb.cuda.set_stream(s2)
  T.check(sfwb.cuda.current_stream(dev) == s2, "set_stream")
  sfwb.cuda.set_stream(nil, dev)
  T.check(sfwb.cuda.current_stream(dev) == own, "set_stream(nil, dev) gives the own stream back")
end)

T.case("ordering across streams: record_event, wait_event, wait_stream, query, synchronize", function()
  if not dev then print("  (skipped: no emu device)") return end
  local copy, compute = sfwb.cuda.stream(dev), sfwb.cuda.stream(dev)
  local h = sfwb.randn({4, 257}):pin_memory()
  local d = sfwb.empty({4, 257}, {device = dev})
  sfwb.cuda.copy_async(d, h, copy)                   -- the upload on its own stream
  local uploaded = copy:record_event()
  compute:wait_event(uploaded)                       -- compute starts once the data is there
  local y = sfwb.cuda.with_stream(compute, function() return d * 3 end)
  local done = compute:record_event()
  done:synchronize()
  T.check(done:query() and compute:query() and copy:query(), "all done after the wait")
  T.close(y, h * 3, 0, "the computed values")
  -- wait_stream: the own stream orders after compute
  sfwb.cuda.default_stream(dev):wait_stream(compute)
  T.close(y + 0, h * 3, 0, "read on the own stream after wait_stream")
  -- events recorded on a given stream time its work
  local a, b = sfwb.cuda.event(dev), sfwb.cuda.event(dev)
  a:record(compute)
  sfwb.cuda.with_stream(compute, function() return sfwb.matmul(d:t(), d) end)
  b:record(compute)
  T.check(a:elapsed_ms(b) >= 0, "elapsed on a stream")
  T.check(sfwb.cuda.event(dev):query(), "an event never recorded counts as done (as CUDA)")
  sfwb.cuda.event(dev):synchronize()
  compute:wait_event(sfwb.cuda.event(dev))           -- a wait on an unrecorded event is a no-op
end)

T.case("the caching allocator keeps streams apart; record_stream; a freed stream hands its cache back", function()
  if not dev then print("  (skipped: no emu device)") return end
  if not caching() then print("  (skipped: this build caches no device memory)") return end
  local s = sfwb.cuda.stream(dev)
  local N = 777 * 1024 + 13
  local t = sfwb.cuda.with_stream(s, function() return fresh(N) end)
  t = nil -- luacheck: ignore t
  local m0 = mem()
  t = fresh(N) -- on the own stream: the block cached for s is not taken
  local m1 = mem()
  T.check(m1.reserved > m0.reserved, "a block cached for s is not reused on another stream")
  t = nil
  m1 = mem()
  t = sfwb.cuda.with_stream(s, function() return fresh(N) end)
  local m2 = mem()
  T.eq(m2.reserved, m1.reserved, "reused on its own stream")
  -- record_stream: used on s too; once s is done, the block is reusable on its own stream
  local u = fresh(N)
  u:record_stream(s)
  sfwb.cuda.with_stream(s, function() return u * 2 end)
  u = nil -- luacheck: ignore u
  s:synchronize()
  local m3 = mem()
  u = fresh(N)
  T.eq(mem().reserved, m3.reserved, "the recorded block comes back once s is done")
  u = nil
  -- a freed stream's cached blocks go to the own stream
  t = nil
  local m4 = mem()
  s = nil -- luacheck: ignore s
  local m5 = mem()
  T.eq(m5.reserved, m4.reserved, "nothing returned to the device")
  local a, b = fresh(N), fresh(N) -- both of the former stream's blocks now serve the own stream
  T.eq(mem().reserved, m5.reserved, "the freed stream's cache serves the own stream")
  a, b = nil, nil -- luacheck: ignore a b
  u = fresh(N)
  u:record_stream(sfwb.cuda.stream(dev))
  u = nil
  mem()
  sfwb.cuda.empty_cache(dev)
  local m6 = sfwb.cuda.memory(dev)
  T.eq(m6.cached_blocks, 0, "empty_cache also takes pending and per-stream blocks")
  T.eq(m6.reserved, m6.allocated, "nothing held beyond the live blocks")
end)

T.case("stream misuse is refused, naming the problem", function()
  if not dev then print("  (skipped: no emu device)") return end
  T.raises(function() sfwb.cuda.stream("cpu") end, "not cpu")
  T.raises(function() sfwb.cuda.stream("cuda:7") end, "cuda:7")
  T.raises(function() sfwb.cuda.with_stream("x", function() end) end, "Stream")
  T.raises(function() sfwb.cuda.with_stream(sfwb.cuda.stream(dev), 3) end, "function")
  T.raises(function() sfwb.randn({3}):record_stream(sfwb.cuda.stream(dev)) end, "the tensor is on cpu")
  T.raises(function() sfwb.cuda.stream(dev):wait_event("e") end, "Event")
  T.raises(function() sfwb.cuda.copy_async(sfwb.empty({3}, {device = dev}), sfwb.randn({3}):pin_memory(), 5) end, "Stream")
end)

T.done()
