-- sfwb/init.lua — the `sfwb` table: the C core (sfwb.core) plus Lua modules loaded on first use
-- (sfwb.pipeline -> lua/sfwb/pipeline.lua or lua/sfwb/pipeline/init.lua, ...).
local sfwb = require "sfwb.core"

setmetatable(sfwb, {
  __index = function(t, k)
    if type(k) ~= "string" or k:sub(1, 1) == "_" then return nil end
    local ok, mod = pcall(require, "sfwb." .. k)
    if ok then
      rawset(t, k, mod)
      return mod
    end
    -- a module that exists but fails to load must say why; an absent one is just nil
    if not tostring(mod):find("module 'sfwb." .. k .. "' not found", 1, true) then error(mod, 2) end
    return nil
  end,
})

return sfwb
