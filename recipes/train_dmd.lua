-- recipes/train_dmd.lua — Self-Forcing DMD training (train.py's job). Run: sfwb recipes/train_dmd.lua --help
-- The logic lives in lua/sfwb/recipes/train_dmd.lua so the demo and notebooks can call it in-process.
local ok, code = xpcall(require("sfwb.recipes.train_dmd").main, function(e)
  if type(e) == "string" and not e:find("\n") and not e:find("%.lua:%d+:") then return e end
  return debug.traceback(e, 2)
end, arg)
if not ok then
  io.stderr:write("train_dmd: " .. tostring(code) .. "\n")
  os.exit(1)
end
os.exit(code or 0)
