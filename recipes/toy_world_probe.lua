-- recipes/toy_world_probe.lua — what a toy-world teacher has learnt, by noise level (SDEdit, whole video vs each
-- frame, words swapped). Run: sfwb recipes/toy_world_probe.lua DIR --help. Logic: lua/sfwb/recipes/toy_world_probe.lua
local ok, code = xpcall(require("sfwb.recipes.toy_world_probe").main, function(e)
  if type(e) == "string" and not e:find("\n") and not e:find("%.lua:%d+:") then return e end
  return debug.traceback(e, 2)
end, arg)
if not ok then
  io.stderr:write("toy_world_probe: " .. tostring(code) .. "\n")
  os.exit(1)
end
os.exit(code or 0)
