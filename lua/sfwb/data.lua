-- sfwb/data.lua — the Self-Forcing datasets (utils/dataset.py of Self-Forcing / Self-Forcing-Plus),
-- the LMDB layout writer, and a loader with torch DistributedSampler + DataLoader semantics.
--
--   ds = sfwb.data.text_file(path [, extended_path])   -- one prompt a line (rstrip), as TextDataset
--   ds = sfwb.data.text_folder(dir [, max_count])        -- every *.txt, read().strip(), as TextFolderDataset
--   ds = sfwb.data.two_text(path, switch_path)           -- LongLive's TwoTextDataset {prompts, switch_prompts}
--   ds = sfwb.data.lmdb(path [, {max_pair=}])             -- single env (ODE pairs) or a folder of shards
--   #ds, ds[i] (1-based i) -> {prompts=, idx=, ode_latent=?, img=?, extended_prompts=?}
--     idx is the ORIGINAL 0-based index (i - 1), so file names and logs match the Python tools.
--
-- Order of text_folder: the Python original uses os.listdir (file-system order, not reproducible);
-- sfwb sorts the names by bytes (strcmp order) so every run and machine sees the same order.
-- LMDB: ode_latent is the f16 row turned into f32 with a leading step axis added to 4-D rows, as
-- the original; img is the u8 480x832x3 row as f32 [3, 480, 832] in [-1, 1] (to_tensor, then
-- (x - 0.5) / 0.5). Shards are the sorted entries of the folder that are LMDB folders.
local sfwb = require "sfwb"
local C = sfwb._data

local M = {}

-- ---------------------------------------------------------------- Dataset object
local Dataset = {}
Dataset.__index = function(self, k)
  if math.type(k) == "integer" then
    local n = self._len
    if k < 1 or k > n then error(string.format("%s: index %d out of range 1..%d", self.name, k, n), 2) end
    return self._get(k)
  end
  return Dataset[k]
end
Dataset.__len = function(self) return self._len end
Dataset.__tostring = function(self) return string.format("sfwb.data.%s (%d items)", self.name, self._len) end

local function dataset(name, len, get)
  return setmetatable({name = name, _len = len, _get = get}, Dataset)
end

-- ---------------------------------------------------------------- text
-- Python's str.isspace() set, as UTF-8 byte sequences (for rstrip/strip parity)
local ws_multi = {"\194\133", "\194\160", "\225\154\128", "\226\128\168", "\226\128\169", "\226\128\175",
  "\226\129\159", "\227\128\128"}
for c = 0x80, 0x8a do ws_multi[#ws_multi + 1] = "\226\128" .. string.char(c) end

-- the whitespace sequence s ends with (from_end) or starts with, or nil
local function ws_at(s, from_end)
  local b = s:byte(from_end and -1 or 1)
  if b == nil then return nil end
  if b == 32 or (b >= 9 and b <= 13) or (b >= 28 and b <= 31) then return 1 end
  for _, w in ipairs(ws_multi) do
    if #s >= #w and (from_end and s:sub(-#w) or s:sub(1, #w)) == w then return #w end
  end
end

local function rstrip(s)
  local n = ws_at(s, true)
  while n do
    s = s:sub(1, -n - 1)
    n = ws_at(s, true)
  end
  return s
end

local function lstrip(s)
  local n = ws_at(s, false)
  while n do
    s = s:sub(n + 1)
    n = ws_at(s, false)
  end
  return s
end
M._rstrip, M._strip = rstrip, function(s) return lstrip(rstrip(s)) end

local function read_all(path)
  local f, err = io.open(path, "rb")
  if not f then error(err, 3) end
  local s = f:read("a")
  f:close()
  return s
end

-- Python text mode: universal newlines (\r\n and \r become \n)
local function universal(s) return (s:gsub("\r\n", "\n"):gsub("\r", "\n")) end

-- lines as `for line in f` yields them (a final line without newline counts; no extra empty line)
local function py_lines(path)
  local s = universal(read_all(path))
  local out = {}
  local pos = 1
  while pos <= #s do
    local nl = s:find("\n", pos, true)
    if not nl then
      out[#out + 1] = s:sub(pos)
      break
    end
    out[#out + 1] = s:sub(pos, nl - 1)
    pos = nl + 1
  end
  for i, l in ipairs(out) do out[i] = rstrip(l) end
  return out
end

function M.text_file(path, extended_path)
  local prompts = py_lines(path)
  local ext
  if extended_path then
    ext = py_lines(extended_path)
    if #ext ~= #prompts then
      error(string.format("%s has %d lines but %s has %d; they must match", extended_path, #ext, path, #prompts), 2)
    end
  end
  return dataset("text_file", #prompts, function(i)
    return {prompts = prompts[i], idx = i - 1, extended_prompts = ext and ext[i] or nil}
  end)
end

-- LongLive's TwoTextDataset: line-aligned prompt files for prompt-switch training
function M.two_text(path, switch_path)
  local a, b = py_lines(path), py_lines(switch_path)
  if #a ~= #b then
    error(string.format("%s has %d lines but %s has %d; they must match", switch_path, #b, path, #a), 2)
  end
  return dataset("two_text", #a, function(i) return {prompts = a[i], switch_prompts = b[i], idx = i - 1} end)
end

function M.text_folder(dir, max_count)
  local texts = {}
  for _, name in ipairs(C.listdir(dir)) do
    if max_count and #texts >= max_count then break end
    if name:sub(-4) == ".txt" then texts[#texts + 1] = M._strip(universal(read_all(dir .. "/" .. name))) end
  end
  return dataset("text_folder", #texts, function(i) return {prompts = texts[i], idx = i - 1} end)
end

-- ---------------------------------------------------------------- LMDB
local function shape_of(env, name)
  local s = env:get(name .. "_shape")
  if not s then error(env:path() .. ": no '" .. name .. "_shape' key (not a Self-Forcing LMDB?)", 3) end
  local shape = {}
  for d in s:gmatch("%S+") do
    local v = math.tointeger(tonumber(d))
    if not v then error(env:path() .. ": '" .. name .. "_shape' is not a list of integers: " .. s, 3) end
    shape[#shape + 1] = v
  end
  return shape
end

local IMG_H, IMG_W = 480, 832 -- hard-coded in the original reader

local function lmdb_row(env, latent_shape, i)
  local row = {table.unpack(latent_shape, 2)}
  local key = "latents_" .. i .. "_data"
  local lat = env:tensor(key, "f16", row)
  if not lat then error(env:path() .. ": row '" .. key .. "' is missing", 3) end
  lat = lat:float()
  if #row == 4 then lat = lat:unsqueeze(1) end
  local p = env:get("prompts_" .. i .. "_data")
  if not p then error(env:path() .. ": row 'prompts_" .. i .. "_data' is missing", 3) end
  local item = {prompts = p, ode_latent = lat}
  local img = env:tensor("img_" .. i .. "_data", "u8", {IMG_H, IMG_W, 3})
  if img then item.img = C.u8_to_float(img) end
  return item
end

local function is_lmdb_dir(p)
  local f = io.open(p .. "/data.mdb", "rb")
  if f then f:close() return true end
  return false
end

function M.lmdb(path, opts)
  opts = opts or {}
  local max_pair = opts.max_pair or math.tointeger(1e8)
  if is_lmdb_dir(path) then
    local env = C.lmdb_open(path)
    local shape = shape_of(env, "latents")
    local n = math.min(shape[1], max_pair)
    return dataset("lmdb", n, function(i)
      local item = lmdb_row(env, shape, i - 1)
      item.idx = i - 1
      return item
    end)
  end
  if not C.isdir(path) then error(path .. ": not an LMDB folder or a folder of LMDB shards", 2) end
  local envs, shapes, index = {}, {}, {}
  for _, name in ipairs(C.listdir(path)) do
    local p = path .. "/" .. name
    if C.isdir(p) and is_lmdb_dir(p) then
      local env = C.lmdb_open(p)
      envs[#envs + 1] = env
      shapes[#envs] = shape_of(env, "latents")
      for r = 0, shapes[#envs][1] - 1 do index[#index + 1] = {#envs, r} end
    end
  end
  if #envs == 0 then error(path .. ": no LMDB shards (folders with data.mdb) inside", 2) end
  return dataset("lmdb", #index, function(i)
    local s, r = index[i][1], index[i][2]
    local item = lmdb_row(envs[s], shapes[s], r)
    item.idx = i - 1
    return item
  end)
end

-- ---------------------------------------------------------------- LMDB writer
-- w = sfwb.data.lmdb_writer(path, {shards=nil|k, map_size=2^40, dtype="f16"})
-- w:add{prompts="...", latents=tensor [, img=u8 [480, 832, 3]]}  -- one row; any named arrays
-- w:close()  -- writes "<name>_shape" = "<rows> <row dims...>" per array (strings: "<rows>")
-- Rows are "<name>_<i>_data": tensor bytes (C order, little-endian; float tensors cast to dtype,
-- f16 by default as the original scripts store latents), strings as UTF-8. With shards = k the rows
-- go to path/shard_<j> round-robin (row r to shard r % k), numbered per shard, as the 14B scripts.
function M.lmdb_writer(path, opts)
  opts = opts or {}
  local nshards = opts.shards
  local dtype = opts.dtype or "f16"
  local w = {envs = {}, counts = {}, shapes = {}, total = 0}
  if nshards then
    sfwb.fs.mkdir(path)
    for k = 0, nshards - 1 do
      w.envs[k + 1] = C.lmdb_open(path .. "/shard_" .. k, {write = true, map_size = opts.map_size})
      w.counts[k + 1] = 0
    end
  else
    w.envs[1] = C.lmdb_open(path, {write = true, map_size = opts.map_size})
    w.counts[1] = 0
  end
  function w:add(row)
    local s = (self.total % #self.envs) + 1
    local i = self.counts[s]
    for name, v in pairs(row) do
      local shape
      if type(v) == "string" then
        shape = {}
      else
        if v:dtype() ~= "u8" and v:dtype() ~= "bool" and v:dtype() ~= "i64" and v:dtype() ~= "i32" then v = v:to(dtype) end
        shape = v:shape()
      end
      local known = self.shapes[name]
      if known then
        if #known ~= #shape then error("lmdb_writer: '" .. name .. "' rows change rank", 2) end
        for d = 1, #shape do
          if known[d] ~= shape[d] then error("lmdb_writer: '" .. name .. "' rows change shape", 2) end
        end
      else
        self.shapes[name] = shape
      end
      self.envs[s]:put(name .. "_" .. i .. "_data", v)
    end
    self.counts[s] = i + 1
    self.total = self.total + 1
  end
  function w:close()
    for s, env in ipairs(self.envs) do
      for name, shape in pairs(self.shapes) do
        local parts = {tostring(self.counts[s])}
        for _, d in ipairs(shape) do parts[#parts + 1] = tostring(d) end
        env:put(name .. "_shape", table.concat(parts, " "))
      end
      env:close()
    end
  end
  return w
end

-- ---------------------------------------------------------------- loader
-- DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=, seed=, drop_last=) feeding a
-- DataLoader(batch_size=batch) (its drop_last=false: the last short batch is kept). The permutation
-- is torch.randperm(n, generator seeded with seed + epoch); Self-Forcing never calls set_epoch, so
-- every epoch repeats the same order unless loader:set_epoch(e) is called.
local Loader = {}
Loader.__index = Loader

function M.loader(ds, opts)
  opts = opts or {}
  local l = setmetatable({ds = ds, batch = opts.batch or 1, shuffle = opts.shuffle ~= false, seed = opts.seed or 0,
    rank = opts.rank or 0, world = opts.world or 1, drop_last = opts.drop_last ~= false, epoch = 0}, Loader)
  if l.rank < 0 or l.rank >= l.world then error("loader: rank must be in 0..world-1", 2) end
  if l.batch < 1 then error("loader: batch must be >= 1", 2) end
  return l
end

function Loader:set_epoch(e) self.epoch = e end

-- this rank's 1-based dataset indices for the current epoch
function Loader:indices()
  local n, world = #self.ds, self.world
  local perm
  if self.shuffle then
    perm = C.randperm(n, self.seed + self.epoch)
  else
    perm = {}
    for i = 1, n do perm[i] = i - 1 end
  end
  local num
  if self.drop_last and n % world ~= 0 then num = math.ceil((n - world) / world) else num = math.ceil(n / world) end
  local total = num * world
  if not self.drop_last then
    local k = 1
    while #perm < total do
      perm[#perm + 1] = perm[k]
      k = k + 1
    end
  end
  local out = {}
  for j = self.rank + 1, total, world do out[#out + 1] = perm[j] + 1 end
  return out
end

function Loader:__len() return math.ceil(#self:indices() / self.batch) end

-- default_collate: strings -> list, numbers -> i64 tensor, tensors -> stacked
local function collate(items)
  local out = {}
  for k, v in pairs(items[1]) do
    local col = {}
    for i, it in ipairs(items) do col[i] = it[k] end
    if type(v) == "string" then out[k] = col
    elseif math.type(v) == "integer" then out[k] = sfwb.tensor(col, {dtype = "i64"})
    elseif type(v) == "number" then out[k] = sfwb.tensor(col)
    elseif type(v) == "userdata" then out[k] = sfwb.stack(col, 1)
    else out[k] = col end
  end
  return out
end
M.collate = collate

-- for batch in loader:iter() do ... end   (one epoch); start skips that many batches (0-based) unread
function Loader:iter(start)
  local idx = self:indices()
  local pos = 1 + (start or 0) * self.batch
  return function()
    if pos > #idx then return nil end
    local items = {}
    for j = pos, math.min(pos + self.batch - 1, #idx) do items[#items + 1] = self.ds[idx[j]] end
    pos = pos + self.batch
    return collate(items)
  end
end

-- an endless iterator over epochs, as Self-Forcing's `cycle(dataloader)`: c() -> batch. It counts the
-- batches drawn (c.drawn) so a resumed run continues where it stopped: c:seek(n) positions it as if n
-- batches had been drawn, without reading them (every epoch repeats one order, as the original's).
local Cycle = {}
Cycle.__index = Cycle
Cycle.__call = function(self)
  local b = self.it and self.it()
  if b == nil then
    self.it = self.loader:iter()
    b = self.it()
    if b == nil then error("cycle: the loader yields no batches (empty dataset for this rank?)", 2) end
  end
  self.drawn = self.drawn + 1
  return b
end

function Cycle:seek(n)
  if math.type(n) ~= "integer" or n < 0 then error("cycle:seek: a count >= 0 expected, got " .. tostring(n), 2) end
  self.drawn = n
  self.it = nil
  if n == 0 then return self end
  local per_epoch = #self.loader
  if per_epoch == 0 then error("cycle: the loader yields no batches (empty dataset for this rank?)", 2) end
  local pos = n % per_epoch
  -- a finished epoch leaves an exhausted iterator: the next draw starts a new one, as after n draws
  if pos ~= 0 then self.it = self.loader:iter(pos) end
  return self
end

function M.cycle(loader)
  return setmetatable({loader = loader, drawn = 0}, Cycle)
end
function Loader:cycle() return M.cycle(self) end

return M
