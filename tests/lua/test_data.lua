-- test_data.lua — text datasets, LMDB datasets (fixtures written by python3-lmdb in Self-Forcing's
-- layout, items compared with what the original readers return), the LMDB writer, and the loader's
-- DistributedSampler order compared with torch.
local sfwb = require "sfwb"
local T = require "sfwb.testing"
local data = sfwb.data

local dir = T.tmpdir("data")
local have_py = os.execute(T.python .. " tests/ref/data_make_lmdb.py " .. dir) == true

local function write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

T.case("text_file: rstrip per line, empty lines kept, universal newlines, extended prompts", function()
  write(dir .. "/p.txt", "a cat  \r\n\nsecond\t\rthird \194\160\nlast")
  write(dir .. "/e.txt", "A\nB\nC\nD\nE")
  local ds = data.text_file(dir .. "/p.txt", dir .. "/e.txt")
  T.eq(#ds, 5)
  T.eq(ds[1].prompts, "a cat")
  T.eq(ds[2].prompts, "")
  T.eq(ds[3].prompts, "second")
  T.eq(ds[4].prompts, "third")
  T.eq(ds[5].prompts, "last")
  T.eq(ds[5].idx, 4)
  T.eq(ds[5].extended_prompts, "E")
  T.raises(function() return ds[6] end, "out of range")
  write(dir .. "/q.txt", "x\ny\n")
  T.eq(#data.text_file(dir .. "/q.txt"), 2)
  T.raises(function() data.text_file(dir .. "/q.txt", dir .. "/e.txt") end, "must match")
end)

T.case("two_text: line-aligned prompt pairs (LongLive)", function()
  write(dir .. "/a.txt", "first a\nsecond a \n")
  write(dir .. "/b.txt", "first b\nsecond b\n")
  local ds = data.two_text(dir .. "/a.txt", dir .. "/b.txt")
  T.eq(#ds, 2)
  T.eq(ds[2].prompts, "second a")
  T.eq(ds[2].switch_prompts, "second b")
  T.eq(ds[2].idx, 1)
  write(dir .. "/c.txt", "only one\n")
  T.raises(function() data.two_text(dir .. "/a.txt", dir .. "/c.txt") end, "must match")
end)

T.case("text_folder: *.txt only, strip, sorted order, max_count", function()
  os.execute("mkdir -p '" .. dir .. "/tf'")
  write(dir .. "/tf/b.txt", "  second prompt\n\n")
  write(dir .. "/tf/a.txt", "first\r\nline two\n")
  write(dir .. "/tf/c.md", "not a prompt")
  write(dir .. "/tf/d.txt", "third")
  local ds = data.text_folder(dir .. "/tf")
  T.eq(#ds, 3)
  T.eq(ds[1].prompts, "first\nline two")
  T.eq(ds[2].prompts, "second prompt")
  T.eq(ds[3].prompts, "third")
  T.eq(#data.text_folder(dir .. "/tf", 2), 2)
end)

if have_py then
  local exp = sfwb.load(dir .. "/expected.pt")
  local ej = sfwb._json.load_file(dir .. "/expected.json")

  T.case("single LMDB of ODE pairs: items as the original reader returns them", function()
    local ds = data.lmdb(dir .. "/ode")
    T.eq(#ds, 4)
    for i = 1, 4 do
      local it = ds[i]
      T.eq(it.prompts, ej.prompts["ode." .. (i - 1) .. ".prompts"])
      T.eq(it.ode_latent:dtype(), "f32")
      T.close(it.ode_latent, exp["ode." .. (i - 1) .. ".ode_latent"], 0)
      T.eq(it.idx, i - 1)
    end
    T.eq(#data.lmdb(dir .. "/ode", {max_pair = 2}), 2)
  end)

  T.case("sharded LMDB with I2V images", function()
    local ds = data.lmdb(dir .. "/shards")
    T.eq(#ds, 5)
    for i = 1, 5 do
      local it = ds[i]
      local k = "shards." .. (i - 1)
      T.eq(it.prompts, ej.prompts[k .. ".prompts"])
      local s = it.ode_latent:shape()
      T.eq(#s, 5)
      T.eq(s[1], 1)
      T.close(it.ode_latent, exp[k .. ".ode_latent"], 0)
      T.eq(it.img:size(1), 3)
      T.eq(it.img:size(2), 480)
      T.eq(it.img:size(3), 832)
      T.close(it.img, exp[k .. ".img"], 0)
    end
  end)

  T.case("loader order equals torch DistributedSampler", function()
    for _, s in ipairs(ej.samplers) do
      local ds = setmetatable({}, {__len = function() return s.n end, __index = function(_, i) return {idx = i - 1} end})
      local l = data.loader(ds, {batch = 1, shuffle = s.shuffle, seed = s.seed, rank = s.rank, world = s.world,
        drop_last = s.drop_last})
      local got = l:indices()
      T.eq(#got, #s.indices, "count n=" .. s.n .. " world=" .. s.world)
      for j = 1, #got do T.eq(got[j] - 1, s.indices[j], string.format("n=%d world=%d rank=%d j=%d", s.n, s.world, s.rank, j)) end
    end
  end)

  T.case("loader batches collate; cycle is endless and repeats the epoch order", function()
    local ds = data.lmdb(dir .. "/ode")
    local l = data.loader(ds, {batch = 3, seed = 0})
    local it = l:iter()
    local b1 = it()
    T.eq(#b1.prompts, 3)
    T.eq(b1.ode_latent:size(1), 3)
    T.eq(b1.idx:dtype(), "i64")
    local b2 = it()
    T.eq(#b2.prompts, 1) -- the short last batch is kept
    T.eq(it(), nil)
    local c = data.cycle(l)
    local first = c().prompts[1]
    c()
    T.eq(c().prompts[1], first)
    -- ranks see disjoint shards covering the data
    local seen = {}
    for rank = 0, 1 do
      for _, i in ipairs(data.loader(ds, {rank = rank, world = 2}):indices()) do
        T.check(not seen[i], "index seen twice")
        seen[i] = true
      end
    end
  end)
end

T.case("lmdb_writer round trip (single and sharded) through the readers", function()
  local w = data.lmdb_writer(dir .. "/mine")
  sfwb.manual_seed(0)
  local lat = {}
  for i = 1, 3 do
    lat[i] = sfwb.randn({2, 3, 4, 5, 6})
    w:add{prompts = "p" .. i, latents = lat[i]}
  end
  w:close()
  local ds = data.lmdb(dir .. "/mine")
  T.eq(#ds, 3)
  T.eq(ds[2].prompts, "p2")
  T.close(ds[3].ode_latent, lat[3]:half():float(), 0)
  local ws = data.lmdb_writer(dir .. "/mineshards", {shards = 2})
  for i = 1, 5 do
    ws:add{prompts = "s" .. i, latents = sfwb.full({3, 2, 2, 2}, i * 1.0), img = sfwb.full({480, 832, 3}, i * 10, {dtype = "u8"})}
  end
  ws:close()
  local dss = data.lmdb(dir .. "/mineshards")
  T.eq(#dss, 5)
  -- shard_0 holds rows 1, 3, 5; shard_1 rows 2, 4
  local want = {"s1", "s3", "s5", "s2", "s4"}
  for i = 1, 5 do T.eq(dss[i].prompts, want[i]) end
  T.eq(dss[4].ode_latent:size(1), 1)
  T.near(dss[4].img[1][1][1], 20 / 255 * 2 - 1, 1e-6)
  if have_py then
    T.eq(os.execute(T.python .. " -c \"import lmdb; e=lmdb.open('" .. dir .. "/mineshards/shard_1', readonly=True, lock=False); " ..
      "t=e.begin(); assert t.get(b'latents_shape')==b'2 3 2 2 2', t.get(b'latents_shape'); assert t.get(b'prompts_1_data')==b's4'\""), true)
  end
end)

T.case("bad datasets give clear errors", function()
  T.raises(function() data.lmdb(dir .. "/nothing") end, "nothing")
  os.execute("mkdir -p '" .. dir .. "/empty'")
  T.raises(function() data.lmdb(dir .. "/empty") end, "no LMDB shards")
  local w = data.lmdb_writer(dir .. "/noshape")
  w.envs[1]:put("x", "y")
  w.envs[1]:close()
  T.raises(function() data.lmdb(dir .. "/noshape") end, "latents_shape")
  T.raises(function() data.text_file(dir .. "/missing.txt") end, "missing.txt")
end)

os.execute("rm -rf '" .. dir .. "'")
T.done()
