-- recipes/train.lua — train.py's job: the objective the config names. Run: sfwb recipes/train.lua --help
-- The logic lives in lua/sfwb/recipes/train.lua so the demo and notebooks can call it in-process.
local ok, code = xpcall(require("sfwb.recipes.train").main, function(e)
  if type(e) == "string" and not e:find("\n") and not e:find("%.lua:%d+:") then return e end
  return debug.traceback(e, 2)
end, arg)
if not ok then
  io.stderr:write("train: " .. tostring(code) .. "\n")
  os.exit(1)
end
os.exit(code or 0)
