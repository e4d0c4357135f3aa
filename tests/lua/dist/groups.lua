-- groups.lua — `mpirun -np 4 build/sfwb tests/lua/dist/groups.lua [device]` (tests/cmake/dist.cmake):
-- sfwb.dist.split (process groups as MPI_Comm_split / torch's new_group): collectives within a group
-- reach only its ranks, the guard counts each group's calls apart from the world's, and a group whose
-- member never makes the call fails within the timeout naming that member's world rank.
local T = require "sfwb.testing"
local dist = sfwb.dist
local rank, world = dist.init()
local dev = arg[1] or "cpu"
assert(world == 4, "run with 4 ranks")

-- 2 "nodes" of 2 ranks: node = rank // 2, local rank = rank % 2
local node, lr = rank // 2, rank % 2
local intra = dist.split(node, lr)
local inter = dist.split(lr, node)

T.case("split: ranks and sizes", function()
  T.eq(intra:size(), 2)
  T.eq(intra:rank(), lr)
  T.eq(inter:rank(), node)
  T.eq(intra:world_rank(0), node * 2)
  T.eq(inter:world_rank(1), 2 + lr)
  T.raises(function() intra:world_rank(2) end, "outside")
end)

T.case("collectives within a group", function()
  local x = sfwb.tensor({rank + 1.0}, {device = dev})
  dist.all_reduce(x, "sum", intra)
  T.eq(x:item(), node == 0 and 3 or 7, "intra-node sum")
  local y = sfwb.tensor({rank + 1.0}, {device = dev})
  dist.all_reduce(y, "avg", inter)
  T.eq(y:item(), lr == 0 and 2 or 3, "inter-node average over 2 ranks")
  local g = dist.all_gather(sfwb.tensor({{rank * 10.0}}, {device = dev}), intra)
  T.eq(g:shape()[1], 2)
  T.eq(g:cpu():totable()[1][1], node * 20.0)
  T.eq(g:cpu():totable()[2][1], node * 20.0 + 10)
  local rs = dist.reduce_scatter(sfwb.tensor({{1.0 + rank}, {100.0 + rank}}, {device = dev}), "sum", intra)
  T.eq(rs:item(), lr == 0 and 4 * node + 3 or 200 + 4 * node + 1, "reduce-scatter within the node")
  -- the world's own collectives are counted apart from the groups' (no false mismatch)
  local w = sfwb.tensor({1.0}, {device = dev})
  dist.all_reduce(w)
  T.eq(w:item(), 4)
  T.raises(function() dist.reduce_scatter(sfwb.zeros({3}, {device = dev}), "sum", intra) end, "multiple of the number of ranks 2")
end)

-- last (it leaves the world broken, so the job aborts at exit: ctest looks for GROUP-FAULT-OK): world
-- rank 3 never makes the inter-node call; its partner, world rank 1, fails within the timeout naming it
T.case("a group member that never calls: an error naming its world rank", function()
  dist.barrier()
  if lr == 1 then
    if rank == 1 then
      dist.timeout(2)
      local ok, err = pcall(dist.all_reduce, sfwb.tensor({1.0}, {device = dev}), "sum", inter)
      T.check(not ok, "the call failed")
      T.check(tostring(err):find("rank%(s%) 3 never joined"), tostring(err))
      print("GROUP-FAULT-OK " .. tostring(err))
    end
  end
end)

io.stdout:flush()
T.done()
