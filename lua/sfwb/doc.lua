-- sfwb/doc.lua — a doc line for a name, for the notebook's Shift-Tab (inspect_request) and the REPL:
-- sfwb.doc.lookup("sfwb.plot.heatmap") / sfwb.doc("sfwb.pipeline"). Where it comes from:
--   a Lua function: the comment block right above its definition, and the definition line itself;
--   a module (a table that package.loaded holds): the comment lines that open its file, and its names;
--   a C function: the lines of docs/*.md that show it being called (the docs are its reference);
--   anything else: its type and text form.
local M = {}

local function src_root()
  local src = debug.getinfo(1, "S").source
  return src:sub(1, 1) == "@" and src:sub(2):match("^(.*)/lua/sfwb/doc%.lua$") or nil
end

local function read_lines(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local t = {}
  for l in f:lines() do t[#t + 1] = l end
  f:close()
  return t
end

-- resolves "a.b.c" / "a.b:c" from the globals without side effects beyond __index
local function resolve(name)
  local v = _G
  for sep, part in ("." .. name):gmatch("([.:])([%w_]+)") do
    if type(v) ~= "table" and type(v) ~= "userdata" then return nil end
    local ok, r = pcall(function() return v[part] end)
    if not ok or r == nil then return nil end
    v = r
  end
  return v
end

local function lua_function_doc(fn)
  local info = debug.getinfo(fn, "S")
  if info.what ~= "Lua" or info.source:sub(1, 1) ~= "@" then return nil end
  local lines = read_lines(info.source:sub(2))
  if not lines or not lines[info.linedefined] then return nil end
  local out, i = {}, info.linedefined - 1
  while i >= 1 and lines[i]:match("^%s*%-%-") do
    table.insert(out, 1, (lines[i]:gsub("^%s*%-%-+ ?", "")))
    i = i - 1
  end
  table.insert(out, 1, (lines[info.linedefined]:gsub("^%s+", "")))
  out[#out + 1] = string.format("(%s:%d)", info.short_src, info.linedefined)
  return table.concat(out, "\n")
end

local function module_doc(v)
  for modname, mod in pairs(package.loaded) do
    if mod == v and type(modname) == "string" then
      local file = package.searchpath(modname, package.path)
      local lines = file and read_lines(file) or {}
      local out = {}
      for _, l in ipairs(lines) do
        if not l:match("^%-%-") then break end
        out[#out + 1] = (l:gsub("^%-%-+ ?", ""))
      end
      if #out == 0 then out[1] = "module " .. modname end
      return table.concat(out, "\n"), modname
    end
  end
  return nil
end

local function docs_lines(name, max)
  local root = src_root()
  if not root then return nil end
  local out = {}
  local short = name:gsub("^sfwb%.", "")
  for _, f in ipairs({"API.md", "pipelines.md", "tensors.md", "training.md", "notebooks.md", "formats.md",
                      "encoders.md", "wan.md", "autograd.md", "cuda.md"}) do
    local lines = read_lines(root .. "/docs/" .. f)
    for _, l in ipairs(lines or {}) do
      if #out >= max then break end
      if l:find(name .. "(", 1, true) or l:find(name .. "{", 1, true) or
         (short ~= name and l:find("sfwb." .. short .. "(", 1, true)) then
        out[#out + 1] = (l:gsub("^%s+", ""))
      end
    end
  end
  return #out > 0 and table.concat(out, "\n") or nil
end

local function names_of(t, max)
  local ks = {}
  for k in pairs(t) do if type(k) == "string" and not k:match("^_") then ks[#ks + 1] = k end end
  table.sort(ks)
  local n = #ks
  if n > max then ks = {table.unpack(ks, 1, max)}; ks[#ks + 1] = string.format("... (%d more)", n - max) end
  return table.concat(ks, ", ")
end

-- the doc text for a name (nil when the name does not resolve); detail > 0 adds more
function M.lookup(name, detail)
  local v = resolve(name)
  if v == nil then return nil end
  local tv = type(v)
  local head = name .. " : " .. tv
  if tv == "function" then
    local d = lua_function_doc(v) or docs_lines(name, detail and detail > 0 and 12 or 3)
    return head .. (d and ("\n" .. d) or (debug.getinfo(v, "S").what == "C" and "\n(built-in C function)" or ""))
  elseif tv == "table" then
    local mt = getmetatable(v)
    local d, modname = module_doc(v)
    if d then return head .. " (module " .. modname .. ")\n" .. d .. "\nnames: " .. names_of(v, 60) end
    if mt and type(mt.__call) == "function" then
      local c = lua_function_doc(mt.__call)
      if c then return head .. " (callable)\n" .. c end
    end
    local ok, show = pcall(require, "sfwb.show")
    return head .. "\n" .. (ok and show(v) or tostring(v))
  end
  local ok, s = pcall(tostring, v)
  return head .. "\n" .. (ok and s or "?")
end

return setmetatable(M, {__call = function(_, name) local d = M.lookup(name, 1); print(d or ("no such name: " .. name)) end})
