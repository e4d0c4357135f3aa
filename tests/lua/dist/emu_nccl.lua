-- emu_nccl.lua — sfwb.dist.run_emu: two ranks on emu:0 and emu:1 in one process (needs
-- SFWB_EMU_DEVICES=2, set by tests/cmake/cuda.cmake); all-reduce of rank-dependent data is exact.
local T = require "sfwb.testing"

T.case("run_emu all_reduce exact on every rank", function()
  local res = sfwb.dist.run_emu(2, function(rank, world)
    local dev = "emu:" .. rank
    local t = (sfwb.arange(0, 1000, 1, {device = dev}) * (rank + 1) + rank):bf16()
    sfwb.dist.all_reduce(t)
    -- sum over ranks of i*(r+1) + r = 3i + 1; exact in bf16 only below 256, so check in f32
    local f = (sfwb.arange(0, 1000, 1, {device = dev}) * (rank + 1) + rank)
    sfwb.dist.all_reduce(f)
    local ar = sfwb.arange(0, 1000, 1, {device = dev})
    local want = ar * 3 + 1
    -- bf16: the f32 sum of the two bf16 inputs (exact), rounded once
    local want_bf = ((ar * 1):bf16():float() + (ar * 2 + 1):bf16():float()):bf16()
    return string.format("%s %d %g %g", t:device(), world, (f - want):abs():max():item(),
                         (t:float() - want_bf:float()):abs():max():item())
  end)
  T.eq(res[1], "emu:0 2 0 0")
  T.eq(res[2], "emu:1 2 0 0")
end)

T.case("run_emu errors name the rank", function()
  T.raises(function() sfwb.dist.run_emu(2, function(rank) if rank == 1 then error("boom") end end) end, "rank 1 failed")
  T.raises(function() sfwb.dist.run_emu(3, function() end) end, "SFWB_EMU_DEVICES")
end)

T.case("run_emu: a rank that fails does not leave the others hanging", function()
  local t0 = sfwb.time()
  local ok, err = pcall(sfwb.dist.run_emu, 2, function(rank)
    if rank == 1 then error("boom") end
    sfwb.dist.all_reduce(sfwb.ones({4}, {device = "emu:0"}))
  end)
  T.eq(ok, false)
  T.check(tostring(err):find("rank 1 left the communicator", 1, true) or tostring(err):find("rank 1 has left", 1, true), tostring(err))
  T.check(sfwb.time() - t0 < 30, "failed at once, not at the timeout")
end)

T.done()
