-- sfwb/show.lua — one-line rendering of Lua values for the REPL: tables as {2, 3} or {a = 1, b = "x"},
-- Tensors inside tables as Tensor[2, 3] f32 cpu; limited in depth and length so big tables stay readable.
local MAX_ITEMS, MAX_DEPTH = 24, 3

local function is_ident(s) return type(s) == "string" and s:match("^[%a_][%w_]*$") ~= nil end

local function quote(s)
  return (string.format("%q", s):gsub("\\\n", "\\n"))
end

local function short_tensor(t)
  return string.format("Tensor[%s] %s %s", table.concat(t:shape(), ", "), t:dtype(), t:device())
end

local function key_order(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then return ta < tb end
  if ta == "string" or ta == "number" then return a < b end
  return tostring(a) < tostring(b)
end

local show

local function show_table(v, depth, seen)
  local mt = getmetatable(v)
  if type(mt) == "table" and rawget(mt, "__tostring") then return tostring(v) end
  if depth >= MAX_DEPTH then return "{...}" end
  if seen[v] then return "{<cycle>}" end
  seen[v] = true
  local parts, n = {}, rawlen(v)
  for i = 1, math.min(n, MAX_ITEMS) do parts[#parts + 1] = show(rawget(v, i), depth + 1, seen) end
  local keys = {}
  for k in next, v do
    if not (math.type(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end
  end
  table.sort(keys, key_order)
  local total = math.min(n, MAX_ITEMS) + #keys
  for _, k in ipairs(keys) do
    if #parts >= MAX_ITEMS then break end
    local ks = is_ident(k) and k or ("[" .. show(k, MAX_DEPTH - 1, seen) .. "]")
    parts[#parts + 1] = ks .. " = " .. show(rawget(v, k), depth + 1, seen)
  end
  local more = n + #keys - #parts
  if more > 0 then parts[#parts + 1] = string.format("... (%d more)", more) end
  seen[v] = nil
  return "{" .. table.concat(parts, ", ") .. "}", total
end

function show(v, depth, seen)
  local tv = type(v)
  if tv == "string" then return quote(v) end
  if tv == "table" then return (show_table(v, depth or 0, seen or {})) end
  if tv == "userdata" and sfwb and sfwb.is_tensor and sfwb.is_tensor(v) then
    local ok, s = pcall(short_tensor, v)
    return ok and s or tostring(v)
  end
  return tostring(v)
end

-- show(value) -> string
return function(v) return show(v, 0, {}) end
