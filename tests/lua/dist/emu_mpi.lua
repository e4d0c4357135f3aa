-- emu_mpi.lua — run by `mpirun -np N build/sfwb tests/lua/dist/emu_mpi.lua` (tests/cmake/dist.cmake):
-- emu:0 in each of N processes, as one GPU per process; collectives of emu tensors are exact and the
-- results stay on the device.
local T = require "sfwb.testing"
local dist = sfwb.dist
local rank, world = dist.init()
local dev = "emu:0"

T.case("world from the launcher", function()
  T.check(world >= 2, "run under mpirun -np >= 2")
  T.eq(dist.using_mpi(), true)
end)

-- sum over ranks r of (i * (r+1) + 10 r) = i * W(W+1)/2 + 10 W(W-1)/2: integers below 256, exact in bf16
local function data(dtype)
  return (sfwb.arange(0, 12, 1, {device = dev}):view({3, 4}) * (rank + 1) + 10 * rank):to(dtype)
end
local function expected()
  local s = sfwb.arange(0, 12, 1):view({3, 4})
  return s * (world * (world + 1) / 2) + 10 * world * (world - 1) / 2
end

for _, dt in ipairs({"f32", "bf16", "i64"}) do
  T.case("all_reduce sum " .. dt, function()
    local t = data(dt)
    dist.all_reduce(t)
    T.eq(t:device(), dev)
    T.eq(t:dtype(), dt)
    T.eq((t:float():to("cpu") - expected()):abs():max():item(), 0)
  end)
end

T.case("all_reduce avg / max on emu", function()
  local t = data("f32")
  dist.all_reduce(t, "avg")
  T.eq((t:to("cpu") - expected() / world):abs():max():item(), 0)
  local m = data("f32")
  dist.all_reduce(m, "max")
  T.eq(m:to("cpu")[3][4], 11 * world + 10 * (world - 1))
end)

T.case("broadcast / all_gather / reduce_scatter on emu", function()
  local b = sfwb.full({5}, rank + 7, {device = dev})
  dist.broadcast(b, world - 1)
  T.eq(b:to("cpu"):sum():item(), 5 * (world - 1 + 7))
  local g = dist.all_gather(sfwb.full({2, 3}, rank, {device = dev}))
  T.eq(g:device(), dev)
  T.eq(g:size(1), 2 * world)
  for r = 0, world - 1 do T.eq(g:to("cpu")[2 * r + 1][1], r) end
  -- rank r's input: arange(0, 2W) + r; its output rows 2r, 2r+1 summed over ranks
  local rs = dist.reduce_scatter(sfwb.arange(0, 2 * world, 1, {device = dev}):view({2 * world, 1}) + rank)
  T.eq(rs:device(), dev)
  local want = (2 * rank) * world + world * (world - 1) / 2
  T.eq(rs:to("cpu")[1][1], want)
  T.eq(rs:to("cpu")[2][1], want + world)
  dist.barrier()
end)

T.done()
