-- recipes/toy_world.lua — the toy world: the whole Self-Forcing recipe on bouncing balls. Run: sfwb recipes/toy_world.lua --help
-- The logic lives in lua/sfwb/recipes/toy_world.lua (the test runs it in-process).
local ok, code = xpcall(require("sfwb.recipes.toy_world").main, function(e)
  if type(e) == "string" and not e:find("\n") and not e:find("%.lua:%d+:") then return e end
  return debug.traceback(e, 2)
end, arg)
if not ok then
  io.stderr:write("toy_world: " .. tostring(code) .. "\n")
  os.exit(1)
end
os.exit(code or 0)
