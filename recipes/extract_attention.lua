-- recipes/extract_attention.lua — attention maps of many layers from ONE rollout, with provenance and figures. Run: sfwb recipes/extract_attention.lua --help
-- The logic lives in lua/sfwb/recipes/extract_attention.lua so the demo and notebooks can call it in-process.
local ok, code = xpcall(require("sfwb.recipes.extract_attention").main, function(e)
  if type(e) == "string" and not e:find("\n") and not e:find("%.lua:%d+:") then return e end
  return debug.traceback(e, 2)
end, arg)
if not ok then
  io.stderr:write("extract_attention: " .. tostring(code) .. "\n")
  os.exit(1)
end
os.exit(code or 0)
