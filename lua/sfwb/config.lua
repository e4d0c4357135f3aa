-- sfwb/config.lua — YAML configs merged as OmegaConf.merge does (later sources win, maps merge key by
-- key, lists replace), CLI-style "a.b=value" overrides, ${...} interpolation, Wan config.json.
--
-- YAML typing follows OmegaConf's loader: YAML 1.1 (yes/no/on/off are booleans, 0x/0o/0b ints,
-- underscores in numbers), floats also without a dot ("2e-6"), no timestamps.
--
-- null: while merging, YAML null is the sentinel `config.null`, so a later `key: null` overrides an
-- earlier value as in OmegaConf. In the returned table null keys are ABSENT (cfg.key == nil, as
-- OmegaConf gives None), so `if cfg.generator_ckpt then` works. Pass {keep_null=true} to keep the
-- sentinel instead. Inside lists a null stays `config.null` (a nil would end the list).
local sfwb = require "sfwb"

local M = {}
M.null = sfwb._null

local function is_null(v) return rawequal(v, M.null) end

-- a Lua sequence 1..n with n > 0 (an empty table counts as a map: OmegaConf's {} and [] merge alike here)
local function is_list(t)
  if type(t) ~= "table" or is_null(t) then return false end
  local n = #t
  if n == 0 then return false end
  local count = 0
  for k in pairs(t) do
    if math.type(k) ~= "integer" or k < 1 or k > n then return false end
    count = count + 1
  end
  return count == n
end
local function is_map(t) return type(t) == "table" and not is_null(t) and getmetatable(t) == nil and not is_list(t) end

local function deepcopy(v)
  if type(v) ~= "table" or is_null(v) or getmetatable(v) ~= nil then return v end
  local r = {}
  for k, x in pairs(v) do r[k] = deepcopy(x) end
  return r
end
M.deepcopy = deepcopy

-- merge src into dst in place (OmegaConf.merge semantics); returns dst
local function merge_into(dst, src)
  for k, v in pairs(src) do
    if is_map(v) and is_map(dst[k]) then
      merge_into(dst[k], v)
    else
      dst[k] = deepcopy(v)
    end
  end
  return dst
end

-- config.merge(a, b, ...) -> a new table; later arguments win
function M.merge(...)
  local out = {}
  for i = 1, select("#", ...) do
    local src = select(i, ...)
    if src ~= nil then
      if not is_map(src) then error("config.merge: argument " .. i .. " is not a mapping", 2) end
      merge_into(out, src)
    end
  end
  return out
end

-- YAML text -> Lua value (nulls as config.null)
function M.parse(text, name) return sfwb._yaml.parse(text, name) end

-- one YAML file -> table (nulls as config.null); an empty file is an empty mapping
function M.read(path)
  local v = sfwb._yaml.load_file(path)
  if is_null(v) then return {} end
  if not is_map(v) then error(path .. ": the top level of a config must be a mapping", 2) end
  return v
end

-- set cfg[a][b][c] = value for "a.b.c" (creating maps; numeric segments index lists, 0-based as OmegaConf)
local function set_path(cfg, key, value, what)
  local node, parts = cfg, {}
  for p in key:gmatch("[^%.]+") do parts[#parts + 1] = p end
  if #parts == 0 then error(what .. ": empty key", 3) end
  for i = 1, #parts - 1 do
    local p = parts[i]
    if is_list(node) and tonumber(p) then p = math.tointeger(tonumber(p)) + 1 end
    if type(node[p]) ~= "table" or is_null(node[p]) then node[p] = {} end
    node = node[p]
  end
  local last = parts[#parts]
  if is_list(node) and tonumber(last) then last = math.tointeger(tonumber(last)) + 1 end
  if is_map(value) and is_map(node[last]) then merge_into(node[last], value) else node[last] = value end
end

-- overrides: a table (merged), a "key.sub=value" string, or a list of such strings / tables.
-- Values of strings are typed by the YAML parser, as OmegaConf.from_dotlist does.
local function apply_overrides(cfg, ov)
  if ov == nil then return end
  if type(ov) == "string" then ov = {ov} end
  if type(ov) ~= "table" then error("config overrides must be a table or strings", 3) end
  if is_list(ov) then
    for _, item in ipairs(ov) do
      if type(item) == "string" then
        local k, v = item:match("^%+?([^=]+)=(.*)$")
        if not k then error("override '" .. item .. "' is not of the form key.sub=value", 3) end
        set_path(cfg, k, M.parse(v, "override " .. k), "override '" .. item .. "'")
      elseif type(item) == "table" then
        merge_into(cfg, item)
      else
        error("override entries must be strings or tables", 3)
      end
    end
  else
    -- a table of overrides: dotted keys set paths, nested tables merge
    for k, v in pairs(ov) do
      if type(k) == "string" and k:find(".", 1, true) then set_path(cfg, k, deepcopy(v), "override") 
      elseif is_map(v) and is_map(cfg[k]) then merge_into(cfg[k], v)
      else cfg[k] = deepcopy(v) end
    end
  end
end

local function lookup(root, path)
  local node = root
  for p in path:gmatch("[^%.]+") do
    if type(node) ~= "table" or is_null(node) then return nil end
    local v = node[p]
    if v == nil and is_list(node) and tonumber(p) then v = node[math.tointeger(tonumber(p)) + 1] end
    node = v
  end
  return node
end

-- ${a.b} (whole string keeps the value's type), "x ${a.b} y" (text), ${oc.env:VAR} / ${env:VAR}
local function resolve(root)
  local function res_str(s, depth)
    if depth > 32 then error("config: interpolation loop in '" .. s .. "'", 0) end
    local function one(expr)
      local env = expr:match("^oc%.env:(.*)$") or expr:match("^env:(.*)$")
      if env then
        local name, default = env:match("^([^,]+),(.*)$")
        return os.getenv(name or env) or (default and default:gsub("^%s+", "")) or M.null
      end
      local v = lookup(root, expr)
      if v == nil then error("config: interpolation ${" .. expr .. "} refers to a missing key", 0) end
      if type(v) == "string" then v = res_str(v, depth + 1) end
      return v
    end
    local whole = s:match("^%${([^{}]+)}$")
    if whole then return one(whole) end
    return (s:gsub("%${([^{}]+)}", function(e)
      local v = one(e)
      return is_null(v) and "None" or tostring(v)
    end))
  end
  local function walk(t)
    for k, v in pairs(t) do
      if type(v) == "string" and v:find("${", 1, true) then t[k] = res_str(v, 0)
      elseif type(v) == "table" and not is_null(v) and getmetatable(v) == nil then walk(v) end
    end
  end
  walk(root)
end

local function strip_nulls(t)
  if is_list(t) then
    for _, v in ipairs(t) do if type(v) == "table" then strip_nulls(v) end end
    return
  end
  for k, v in pairs(t) do
    if is_null(v) then t[k] = nil
    elseif type(v) == "table" and getmetatable(v) == nil then strip_nulls(v) end
  end
end

local function source(s, what)
  if type(s) == "string" then return M.read(s) end
  if type(s) == "table" then return deepcopy(s) end
  error("config." .. what .. ": expected a path or a table", 3)
end

-- config.load(path_or_table, {defaults=path|table|{...}, overrides=..., keep_null=false, resolve=true})
-- the file a loaded config came from (messages name it); weak keys, the table itself stays plain
M.source_of = setmetatable({}, {__mode = "k"})

function M.load(path, opts)
  opts = opts or {}
  local cfg = {}
  local d = opts.defaults
  if type(d) == "table" and is_list(d) then
    for _, x in ipairs(d) do merge_into(cfg, source(x, "load defaults")) end
  elseif d ~= nil then
    merge_into(cfg, source(d, "load defaults"))
  end
  if path ~= nil then merge_into(cfg, source(path, "load")) end
  apply_overrides(cfg, opts.overrides)
  if opts.resolve ~= false then resolve(cfg) end
  if not opts.keep_null then strip_nulls(cfg) end
  if type(path) == "string" then M.source_of[cfg] = path end
  return cfg
end

-- a Wan model folder's config.json (or the file itself) -> table; JSON null becomes nil
function M.json(path)
  local f = io.open(path .. "/config.json", "r")
  if f then
    f:close()
    path = path .. "/config.json"
  end
  local v = sfwb._json.load_file(path)
  if type(v) == "table" then strip_nulls(v) end
  return v
end

-- YAML text for a config table (keys sorted; for logs and checkpoint folders)
function M.to_yaml(t, indent)
  indent = indent or ""
  local out = {}
  local function scalar(v)
    if is_null(v) or v == nil then return "null" end
    if type(v) == "string" then
      if v == "" or v:match("^[%s]") or v:match("[%s]$") or v:match("[:#%[%]{},&%*!|>'\"%%@`]") or
         M.parse(v) ~= v then
        return "'" .. v:gsub("'", "''") .. "'"
      end
      return v
    end
    if math.type(v) == "float" then
      if v ~= v then return ".nan" end
      if v == math.huge then return ".inf" elseif v == -math.huge then return "-.inf" end
      local s = string.format("%.17g", v)
      if tonumber(string.format("%.15g", v)) == v then s = string.format("%.15g", v) end
      if not s:find("[%.eEn]") then s = s .. ".0" end
      return s
    end
    return tostring(v)
  end
  if is_list(t) then
    for _, v in ipairs(t) do
      if type(v) == "table" and not is_null(v) then
        out[#out + 1] = indent .. "-\n" .. M.to_yaml(v, indent .. "  ")
      else
        out[#out + 1] = indent .. "- " .. scalar(v)
      end
    end
    return table.concat(out, "\n")
  end
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  for _, k in ipairs(keys) do
    local v = t[k]
    if type(v) == "table" and not is_null(v) and next(v) ~= nil then
      out[#out + 1] = indent .. tostring(k) .. ":\n" .. M.to_yaml(v, indent .. "  ")
    elseif type(v) == "table" and not is_null(v) then
      out[#out + 1] = indent .. tostring(k) .. ": {}"
    else
      out[#out + 1] = indent .. tostring(k) .. ": " .. scalar(v)
    end
  end
  return table.concat(out, "\n")
end

-- config.resolve_paths(cfg, keys, folder): a relative path under one of keys that names something in
-- folder (the config file's own folder) becomes folder/path, so a config and its files travel together;
-- one that does not is kept as written (relative to the working directory, as the originals read it)
function M.resolve_paths(cfg, keys, folder)
  for _, k in ipairs(keys) do
    local v = cfg[k]
    if type(v) == "string" and v ~= "" and v:sub(1, 1) ~= "/" and folder and folder ~= "." then
      local cand = folder .. "/" .. v
      if sfwb.fs.stat(cand) then cfg[k] = cand end
    end
  end
  return cfg
end

-- config.check(cfg, schema, {file=}): names every mistake (see sfwb/config_check.lua)
function M.check(cfg, schema, opts) return require("sfwb.config_check").check(cfg, schema, opts) end

return M
