-- timing.lua — device timing for gpu_check: CUDA events around a repeated call (emulated on emu, where
-- the stream runs in issue order), the caching allocator's peak per stage, and a wall-clock budget.
local M = {}

-- mean milliseconds of fn() over `reps` calls after `warm` untimed ones, bracketed by device events
function M.ms(dev, fn, reps, warm)
  for _ = 1, warm or 1 do fn() end
  local a, b = sfwb.cuda.event(dev), sfwb.cuda.event(dev)
  a:record()
  for _ = 1, reps do fn() end
  b:record()
  local ms = a:elapsed_ms(b) / reps
  collectgarbage()
  return ms
end

-- runs fn() with the allocator's peak reset first; returns fn's results and the peak in GB
function M.with_peak(dev, fn)
  collectgarbage()
  collectgarbage()
  sfwb.cuda.synchronize(dev)
  sfwb.cuda.reset_peak_memory_stats(dev)
  local r = fn()
  sfwb.cuda.synchronize(dev)
  return r, sfwb.cuda.memory(dev).peak / 2 ^ 30
end

function M.budget(seconds)
  local t0 = sfwb.time()
  return {
    used = function() return sfwb.time() - t0 end,
    left = function() return seconds - (sfwb.time() - t0) end,
  }
end

return M
