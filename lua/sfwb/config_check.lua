-- sfwb/config_check.lua — sfwb.config.check(cfg, schema, {file=, what=}): every config mistake named.
--   unknown key      -> a warning (once per file and key) naming the key, the file and the nearest known key
--   wrong type       -> an error naming the key, the file, the expected type and the value given
--   unsupported value-> an error with a sentence (a key whose value selects behaviour sfwb lacks)
--   ignored key      -> accepted silently (read by the original for things sfwb does otherwise: wandb, FSDP)
-- A schema maps key -> spec; a spec is a type name ("number", "integer", "string", "boolean", "list",
-- "numbers" (a list of numbers), "integers", "map", "any", "ignored") or a table
--   {type = <name>, values = {allowed, ...}, refuse = {[value] = "sentence"}, keys = <schema of a map>}.
-- Numbers written as integers pass as "number"; "integer" also takes 3.0.
local M = {}
local warned = {}

-- Levenshtein distance (small strings: config keys)
local function distance(a, b)
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = {[0] = i}
    for j = 1, #b do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end
M.distance = distance

local function nearest(key, schema)
  local best, bd = nil, math.huge
  local names = {}
  for k in pairs(schema) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do
    local d = distance(key, k)
    if d < bd then best, bd = k, d end
  end
  return best, bd
end

local function show(v)
  if type(v) == "string" then return string.format("%q", v) end
  if type(v) == "table" then
    local n = #v
    return n > 0 and string.format("a list of %d", n) or "a mapping"
  end
  return tostring(v)
end

local function is_list(v)
  if type(v) ~= "table" then return false end
  local n = 0
  for k in pairs(v) do
    if math.type(k) ~= "integer" then return false end
    n = n + 1
  end
  return n == #v
end

local function integral(v) return type(v) == "number" and v == math.floor(v) and v == v end

local kinds = {
  number = {function(v) return type(v) == "number" end, "a number"},
  integer = {integral, "a whole number"},
  string = {function(v) return type(v) == "string" end, "a string"},
  boolean = {function(v) return type(v) == "boolean" end, "true or false"},
  map = {function(v) return type(v) == "table" and not (is_list(v) and #v > 0) end, "a mapping"},
  list = {function(v) return is_list(v) end, "a list"},
  numbers = {function(v)
    if not is_list(v) then return false end
    for _, x in ipairs(v) do if type(x) ~= "number" then return false end end
    return true
  end, "a list of numbers"},
  integers = {function(v)
    if not is_list(v) then return false end
    for _, x in ipairs(v) do if not integral(x) then return false end end
    return true
  end, "a list of whole numbers"},
  any = {function() return true end, "anything"},
  ignored = {function() return true end, "anything"},
}

local function check_map(cfg, schema, file, prefix, warn)
  local keys = {}
  for k in pairs(cfg) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  for _, key in ipairs(keys) do
    local v = cfg[key]
    local spec = schema[key]
    local name = prefix .. key
    if spec == nil then
      local id = file .. "\0" .. name
      if not warned[id] then
        warned[id] = true
        local near, d = nearest(key, schema)
        local hint = (near and d <= math.max(2, #key // 3)) and string.format(" (did you mean '%s%s'?)", prefix, near) or ""
        warn(string.format("config %s: unknown key '%s'%s; it is not used", file, name, hint))
      end
    else
      if type(spec) == "string" then spec = {type = spec} end
      local kind = kinds[spec.type or "any"]
      if not kind then error("config.check: unknown type '" .. tostring(spec.type) .. "' for " .. name, 3) end
      if not kind[1](v) then
        error(string.format("config %s: '%s' must be %s, got %s", file, name, kind[2], show(v)), 0)
      end
      if spec.refuse and spec.refuse[v] ~= nil then
        error(string.format("config %s: %s: %s is not supported: %s", file, name, show(v), spec.refuse[v]), 0)
      end
      if spec.values then
        local ok = false
        for _, a in ipairs(spec.values) do if a == v then ok = true end end
        if not ok then
          local alts = {}
          for i, a in ipairs(spec.values) do alts[i] = show(a) end
          error(string.format("config %s: '%s' is %s; sfwb knows %s%s", file, name, show(v), table.concat(alts, ", "),
            spec.why and (" (" .. spec.why .. ")") or ""), 0)
        end
      end
      if spec.keys and type(v) == "table" then check_map(v, spec.keys, file, name .. ".", warn) end
    end
  end
end

function M.check(cfg, schema, opts)
  opts = opts or {}
  local cfgmod = package.loaded["sfwb.config"]
  local file = opts.file or (cfgmod and cfgmod.source_of and cfgmod.source_of[cfg]) or "(table)"
  local warn = opts.warn or function(msg) io.stderr:write(msg, "\n") end
  check_map(cfg, schema, file, "", warn)
  return cfg
end

-- forget the warnings given (tests)
function M.reset() warned = {} end

return M
