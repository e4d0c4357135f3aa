-- recipes/toy_world_validate.lua — a toy-world run's models on the 12 validation prompts (presets are chosen on these,
-- the evaluation prompts stay held out). Run: sfwb recipes/toy_world_validate.lua DIR --help. Logic: lua/sfwb/recipes/toy_world_validate.lua
local ok, code = xpcall(require("sfwb.recipes.toy_world_validate").main, function(e)
  if type(e) == "string" and not e:find("\n") and not e:find("%.lua:%d+:") then return e end
  return debug.traceback(e, 2)
end, arg)
if not ok then
  io.stderr:write("toy_world_validate: " .. tostring(code) .. "\n")
  os.exit(1)
end
os.exit(code or 0)
