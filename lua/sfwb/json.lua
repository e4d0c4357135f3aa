-- sfwb/json.lua — JSON encode (sorted keys, readable indentation) and decode for recipe outputs,
-- config.json files and safetensors headers. Non-finite numbers encode as null; decoding is cJSON's.
local M = {}

local function esc(s)
  return (s:gsub('[%c"\\]', function(c)
    local m = {['"'] = '\\"', ['\\'] = '\\\\', ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t'}
    return m[c] or string.format("\\u%04x", c:byte())
  end))
end

local function is_array(t)
  local n = #t
  if n == 0 then return next(t) == nil end
  for k in pairs(t) do
    if type(k) ~= "number" or k < 1 or k > n or k % 1 ~= 0 then return false end
  end
  return true
end

local function num(v)
  if v ~= v or v == math.huge or v == -math.huge then return "null" end
  if math.type(v) == "integer" then return tostring(v) end
  if v == math.floor(v) and math.abs(v) < 1e15 then return string.format("%.1f", v) end
  return string.format("%.17g", v)
end

local function enc(v, ind, cur, out)
  local t = type(v)
  if t == "nil" then out[#out + 1] = "null"
  elseif t == "boolean" then out[#out + 1] = tostring(v)
  elseif t == "number" then out[#out + 1] = num(v)
  elseif t == "string" then out[#out + 1] = '"' .. esc(v) .. '"'
  elseif t == "table" then
    local nl = ind and ("\n" .. cur .. ind) or ""
    local close = ind and ("\n" .. cur) or ""
    local sep = ind and ": " or ":"
    if is_array(v) then
      if #v == 0 then out[#out + 1] = "[]" return end
      -- short arrays of numbers stay on one line
      local flat = true
      for _, x in ipairs(v) do if type(x) == "table" then flat = false break end end
      out[#out + 1] = "["
      for i, x in ipairs(v) do
        if i > 1 then out[#out + 1] = "," end
        if not flat then out[#out + 1] = nl elseif ind and i > 1 then out[#out + 1] = " " end
        enc(x, ind, cur .. (ind or ""), out)
      end
      out[#out + 1] = (flat and "" or close) .. "]"
    else
      local keys = {}
      for k in pairs(v) do keys[#keys + 1] = tostring(k) end
      table.sort(keys)
      out[#out + 1] = "{"
      for i, k in ipairs(keys) do
        if i > 1 then out[#out + 1] = "," end
        out[#out + 1] = nl .. '"' .. esc(k) .. '"' .. sep
        local x = v[k]
        if x == nil then x = v[tonumber(k)] end
        enc(x, ind, cur .. (ind or ""), out)
      end
      out[#out + 1] = close .. "}"
    end
  elseif t == "userdata" and v.totable then enc(v:totable(), ind, cur, out)
  else error("json: cannot encode a " .. t, 3) end
end

-- encode(v, {indent="  "}) -> string
function M.encode(v, o)
  local out = {}
  enc(v, o and o.indent, "", out)
  return table.concat(out)
end

-- JSON null -> nil: a key with null is absent; in an array a hole keeps the other elements' positions
local function drop_nulls(v)
  if type(v) ~= "table" then return v end
  if rawequal(v, sfwb._null) then return nil end
  for k, x in pairs(v) do v[k] = drop_nulls(x) end
  return v
end

-- decode(s [, name]) -> Lua value. The reader is cJSON's (src/lua/lua_config.c: integers exact to 64 bits),
-- the one JSON parser of sfwb; errors name `name` and the byte.
function M.decode(s, name)
  return drop_nulls(sfwb._json.parse(s, name))
end

function M.write(path, v)
  local tmp = path .. ".tmp"
  local f = assert(io.open(tmp, "w"))
  f:write(M.encode(v, {indent = "  "}), "\n")
  f:close()
  assert(os.rename(tmp, path))
end

function M.read(path)
  return drop_nulls(sfwb._json.load_file(path))
end

return M
