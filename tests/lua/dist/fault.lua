-- fault.lua — `mpirun -np N build/sfwb tests/lua/dist/fault.lua <case> [device]` (tests/cmake/dist.cmake):
-- a collective that cannot complete ends with an error naming the op and the ranks within the timeout.
--   mismatch: rank 0 all_reduces, the last rank broadcasts -> both are told, with every rank's call
--   hang:     the last rank stops (SIGSTOP) before the all_reduce -> the others time out naming it
--   die:      the last rank is killed (SIGKILL) -> the others end (their timeout or the launcher's abort)
-- The surviving ranks print "FAULT-OK <message>" and exit; the job then aborts (a broken world cannot
-- finalize), so the test passes on the printed line (PASS_REGULAR_EXPRESSION), not the exit status.
local dist = sfwb.dist
local case, dev = arg[1], arg[2] or "cpu"
local rank, world = dist.init()
dist.timeout(tonumber(os.getenv("SFWB_FAULT_TIMEOUT") or "3"))
local last = world - 1
local t = sfwb.ones({64}, {device = dev})
dist.all_reduce(t) -- a healthy first call: the world works before the fault
assert(t:to("cpu")[1] == world)

local t0 = sfwb.time()
local ok, err
if case == "mismatch" then
  if rank == last then ok, err = pcall(dist.broadcast, t, 0) else ok, err = pcall(dist.all_reduce, t) end
elseif case == "hang" or case == "die" then
  if rank == last then dist.simulate_failure(case) end
  ok, err = pcall(dist.all_reduce, t)
else
  error("fault.lua: unknown case " .. tostring(case))
end
local el = sfwb.time() - t0
if ok then print(("FAULT-BAD rank %d: the collective returned"):format(rank)); os.exit(1) end
-- a clear error: the op, the call and the culprit's rank
local msg = tostring(err)
local named = msg:find("all_reduce", 1, true) and (case == "mismatch" and msg:find("rank " .. last .. ": call #2 broadcast", 1, true)
  or case ~= "mismatch" and msg:find("rank(s) " .. last .. " never joined", 1, true))
local in_time = el < dist.timeout() + 5
print(("%s rank %d after %.1f s: %s"):format(named and in_time and "FAULT-OK" or "FAULT-BAD", rank, el, msg))
io.stdout:flush()
-- later collectives refuse at once instead of hanging on the out-of-step world
local ok2, err2 = pcall(dist.barrier)
print(("%s rank %d: %s"):format(not ok2 and tostring(err2):find("out of step") and "FAULT-OK2" or "FAULT-BAD2", rank, tostring(err2)))
io.stdout:flush()
