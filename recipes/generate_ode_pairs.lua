-- recipes/generate_ode_pairs.lua — scripts/generate_ode_pairs.py + create_lmdb_iterative.py. Run: sfwb recipes/generate_ode_pairs.lua --help
-- The logic lives in lua/sfwb/recipes/generate_ode_pairs.lua so the demo and notebooks can call it in-process.
local ok, code = xpcall(require("sfwb.recipes.generate_ode_pairs").main, function(e)
  if type(e) == "string" and not e:find("\n") and not e:find("%.lua:%d+:") then return e end
  return debug.traceback(e, 2)
end, arg)
if not ok then
  io.stderr:write("generate_ode_pairs: " .. tostring(code) .. "\n")
  os.exit(1)
end
os.exit(code or 0)
