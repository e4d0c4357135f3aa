-- recipes/compare.lua — A/B of two weight sets on identical noise and prompts. Run: sfwb recipes/compare.lua --help
-- The logic lives in lua/sfwb/recipes/compare.lua so the demo and notebooks can call it in-process.
local ok, code = xpcall(require("sfwb.recipes.compare").main, function(e)
  if type(e) == "string" and not e:find("\n") and not e:find("%.lua:%d+:") then return e end
  return debug.traceback(e, 2)
end, arg)
if not ok then
  io.stderr:write("compare: " .. tostring(code) .. "\n")
  os.exit(1)
end
os.exit(code or 0)
