-- recipes/demo.lua — `make demo`: generate -> extract_attention -> compare on the CPU on the trained toy world
-- (assets/toy_world; --tiny: a tiny random model set built once in ~/.cache/sfwb/demo or $SFWB_CACHE).
-- SFWB_WAN_DIR / SFWB_CKPT point the same run at real weights. The logic lives in lua/sfwb/demo.lua.
local ok, code = xpcall(require("sfwb.demo").main, function(e)
  if type(e) == "string" and not e:find("\n") and not e:find("%.lua:%d+:") then return e end
  return debug.traceback(e, 2)
end, arg)
if not ok then
  io.stderr:write("demo: " .. tostring(code) .. "\n")
  os.exit(1)
end
os.exit(code or 0)
