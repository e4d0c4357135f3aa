-- sfwb/procmem.lua — this process's memory as Linux reports it (/proc/self): resident set and its
-- high-water mark, and resetting that mark, so benchmarks measure the peak of one phase.
local M = {}

-- bytes of a /proc/self/status field such as "VmRSS" or "VmHWM" (nil when unavailable)
function M.status(key)
  local f = io.open("/proc/self/status")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  local kb = s:match(key .. ":%s+(%d+)")
  return kb and tonumber(kb) * 1024 or nil
end

-- restart the VmHWM high-water mark at the current RSS
function M.reset_peak()
  local f = io.open("/proc/self/clear_refs", "w")
  if f then f:write("5"); f:close() end
end

return M
