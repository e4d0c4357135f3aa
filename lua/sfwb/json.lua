-- sfwb/json.lua — JSON encode (sorted keys, readable indentation) and decode for recipe outputs,
-- config.json files and safetensors headers. Non-finite numbers encode as null.
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

function M.decode(s)
  local pos = 1
  local function ws() pos = s:find("[^ \t\r\n]", pos) or #s + 1 end
  local function fail(msg) error(string.format("json: %s at byte %d", msg, pos), 0) end
  local val
  local function str()
    local out = {}
    pos = pos + 1
    while true do
      local c = s:sub(pos, pos)
      if c == "" then fail("unterminated string") end
      if c == '"' then pos = pos + 1 break end
      if c == "\\" then
        local e = s:sub(pos + 1, pos + 1)
        local m = {b = "\b", f = "\f", n = "\n", r = "\r", t = "\t", ['"'] = '"', ["\\"] = "\\", ["/"] = "/"}
        if e == "u" then
          local cp = tonumber(s:sub(pos + 2, pos + 5), 16) or fail("bad \\u escape")
          out[#out + 1] = utf8.char(cp)
          pos = pos + 6
        else
          out[#out + 1] = m[e] or fail("bad escape")
          pos = pos + 2
        end
      else
        out[#out + 1] = c
        pos = pos + 1
      end
    end
    return table.concat(out)
  end
  function val()
    ws()
    local c = s:sub(pos, pos)
    if c == "{" then
      local t = {}
      pos = pos + 1
      ws()
      if s:sub(pos, pos) == "}" then pos = pos + 1 return t end
      while true do
        ws()
        if s:sub(pos, pos) ~= '"' then fail("expected a key") end
        local k = str()
        ws()
        if s:sub(pos, pos) ~= ":" then fail("expected ':'") end
        pos = pos + 1
        t[k] = val()
        ws()
        local d = s:sub(pos, pos)
        pos = pos + 1
        if d == "}" then return t end
        if d ~= "," then fail("expected ',' or '}'") end
      end
    elseif c == "[" then
      local t = {}
      pos = pos + 1
      ws()
      if s:sub(pos, pos) == "]" then pos = pos + 1 return t end
      while true do
        t[#t + 1] = val()
        ws()
        local d = s:sub(pos, pos)
        pos = pos + 1
        if d == "]" then return t end
        if d ~= "," then fail("expected ',' or ']'") end
      end
    elseif c == '"' then return str()
    elseif s:sub(pos, pos + 3) == "true" then pos = pos + 4 return true
    elseif s:sub(pos, pos + 4) == "false" then pos = pos + 5 return false
    elseif s:sub(pos, pos + 3) == "null" then pos = pos + 4 return nil
    else
      local n = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
      if not n or n == "" then fail("unexpected '" .. c .. "'") end
      pos = pos + #n
      return math.tointeger(tonumber(n)) or tonumber(n)
    end
  end
  local v = val()
  ws()
  if pos <= #s then fail("trailing characters") end
  return v
end

function M.write(path, v)
  local tmp = path .. ".tmp"
  local f = assert(io.open(tmp, "w"))
  f:write(M.encode(v, {indent = "  "}), "\n")
  f:close()
  assert(os.rename(tmp, path))
end

function M.read(path)
  local f = assert(io.open(path, "r"))
  local s = f:read("a")
  f:close()
  return M.decode(s)
end

return M
