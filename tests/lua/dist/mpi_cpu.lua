-- mpi_cpu.lua — run by `mpirun -np 2 build/sfwb tests/lua/dist/mpi_cpu.lua` (tests/cmake/cuda.cmake):
-- sfwb.dist collectives of CPU tensors over MPI give exact, identical results on every rank.
local T = require "sfwb.testing"
local dist = sfwb.dist
local rank, world = dist.init()

T.case("world from the launcher", function()
  T.eq(world, 2)
  T.eq(dist.world_size(), 2)
  T.eq(dist.rank(), rank)
  T.eq(dist.using_mpi(), true)
end)

-- rank-dependent integers in floats: every sum is exact
local function data(dtype)
  return (sfwb.arange(0, 12, 1, {dtype = "f32"}):view({3, 4}) * (rank + 1) + 100 * rank):to(dtype)
end
local function expected(dtype) -- sum over ranks r of (i * (r+1) + 100 r)
  local s = sfwb.arange(0, 12, 1, {dtype = "f32"}):view({3, 4})
  return (s * 1 + s * 2 + 100):to(dtype)
end

for _, dt in ipairs({"f32", "bf16", "f16", "i64", "i32", "f64"}) do
  T.case("all_reduce sum " .. dt, function()
    local t = data(dt)
    dist.all_reduce(t)
    T.eq(t:dtype(), dt)
    T.eq((t:float() - expected(dt):float()):abs():max():item(), 0)
  end)
end

T.case("all_reduce max / avg / strided", function()
  local t = data("f32")
  dist.all_reduce(t, "max")
  T.eq(t[3][4], 11 * 2 + 100)
  local a = data("f32"):t() -- non-contiguous
  dist.all_reduce(a, "avg")
  T.eq((a - expected("f32"):t() / 2):abs():max():item(), 0)
end)

T.case("broadcast / all_gather / reduce_scatter", function()
  local t = sfwb.full({4}, rank + 7)
  dist.broadcast(t, 1)
  T.eq(t:sum():item(), 4 * 8)
  local g = dist.all_gather(sfwb.full({2, 3}, rank))
  T.eq(g:size(1), 4)
  T.eq(g:sum():item(), 6) -- rank 0's six zeros, rank 1's six ones
  T.eq(g[3][1], 1)
  local rs = dist.reduce_scatter(sfwb.arange(0, 4, 1):view({4, 1}) + rank)
  T.eq(rs:size(1), 2)
  T.eq(rs:sum():item(), rank == 0 and (0 + 1) * 2 + 1 * 2 or (2 + 3) * 2 + 1 * 2)
  dist.barrier()
end)

T.case("errors", function()
  T.raises(function() dist.all_reduce(sfwb.zeros({2}), "median") end, "unknown reduction")
  T.raises(function() dist.broadcast(sfwb.zeros({2}), 5) end, "root 5")
  T.raises(function() dist.all_reduce(sfwb.zeros({2}, {dtype = "i64"}), "avg") end, "avg needs a float")
end)

T.done()
