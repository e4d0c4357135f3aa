-- recipes/interactive.lua — long videos with prompt switches and KV recache (LongLive's interactive_inference.py).
-- Run: sfwb recipes/interactive.lua --help. The logic lives in lua/sfwb/recipes/interactive.lua.
local ok, code = xpcall(require("sfwb.recipes.interactive").main, function(e)
  if type(e) == "string" and not e:find("\n") and not e:find("%.lua:%d+:") then return e end
  return debug.traceback(e, 2)
end, arg)
if not ok then
  io.stderr:write("interactive: " .. tostring(code) .. "\n")
  os.exit(1)
end
os.exit(code or 0)
