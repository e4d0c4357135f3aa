-- recipes/generate.lua — generate videos with the causal Self-Forcing pipeline (inference.py's job). Run: sfwb recipes/generate.lua --help
-- The logic lives in lua/sfwb/recipes/generate.lua so the demo and notebooks can call it in-process.
local ok, code = xpcall(require("sfwb.recipes.generate").main, function(e)
  if type(e) == "string" and not e:find("\n") and not e:find("%.lua:%d+:") then return e end
  return debug.traceback(e, 2)
end, arg)
if not ok then
  io.stderr:write("generate: " .. tostring(code) .. "\n")
  os.exit(1)
end
os.exit(code or 0)
