-- test_io_integrity.lua — corrupt files that used to load: a .pt whose storage has a flipped bit (the zip
-- CRC-32 is now checked when a storage is read), and safetensors whose offsets overlap (two names aliasing
-- one byte range), leave a gap, or leave trailing bytes (the format indexes the whole buffer, in order).
local T = require "sfwb.testing"
local dir = T.tmpdir("integrity")

local function read(p) local f = assert(io.open(p, "rb")) local s = f:read("a") f:close() return s end
local function write(p, s) local f = assert(io.open(p, "wb")) f:write(s) f:close() end

T.case(".pt: a flipped bit in a storage is an error naming the member", function()
  local p = dir .. "/w.pt"
  sfwb.save(p, {a = sfwb.full({64}, 1.25), b = sfwb.full({8}, -3.5)})
  T.eq(sfwb.load(p).a:sum():item(), 80, "intact file loads")
  local s = read(p)
  local one25 = string.pack("<f", 1.25):rep(4)
  local at = s:find(one25, 1, true)
  T.check(at, "storage bytes found")
  local bad = s:sub(1, at + 9) .. string.char(s:byte(at + 10) ~ 0x10) .. s:sub(at + 11)
  write(dir .. "/bad.pt", bad)
  T.raises(function() sfwb.load(dir .. "/bad.pt") end, "CRC-32")
  T.raises(function() sfwb.load(dir .. "/bad.pt") end, "is corrupt")
end)

-- a safetensors file from a header table and raw data
local function st(path, header, data)
  local json = require "sfwb.json"
  local h = json.encode(header, {compact = true}):gsub("\n%s*", "")
  write(path, string.pack("<I8", #h) .. h .. data)
end

T.case("safetensors: overlapping, gapped or short offsets are refused", function()
  local data = string.pack("<ffff", 1, 2, 3, 4)
  st(dir .. "/ok.safetensors", {a = {dtype = "F32", shape = {2}, data_offsets = {0, 8}},
                                b = {dtype = "F32", shape = {2}, data_offsets = {8, 16}}}, data)
  local ok = sfwb.load(dir .. "/ok.safetensors")
  T.eq(ok.b:sum():item(), 7, "a valid file loads")
  st(dir .. "/alias.safetensors", {a = {dtype = "F32", shape = {2}, data_offsets = {0, 8}},
                                   b = {dtype = "F32", shape = {2}, data_offsets = {0, 8}}}, data:sub(1, 8))
  T.raises(function() sfwb.load(dir .. "/alias.safetensors") end, "overlap")
  st(dir .. "/part.safetensors", {a = {dtype = "F32", shape = {3}, data_offsets = {0, 12}},
                                  b = {dtype = "F32", shape = {2}, data_offsets = {8, 16}}}, data)
  T.raises(function() sfwb.load(dir .. "/part.safetensors") end, "overlap")
  st(dir .. "/gap.safetensors", {a = {dtype = "F32", shape = {1}, data_offsets = {0, 4}},
                                 b = {dtype = "F32", shape = {2}, data_offsets = {8, 16}}}, data)
  T.raises(function() sfwb.load(dir .. "/gap.safetensors") end, "no gaps")
  st(dir .. "/tail.safetensors", {a = {dtype = "F32", shape = {2}, data_offsets = {0, 8}}}, data)
  T.raises(function() sfwb.load(dir .. "/tail.safetensors") end, "trailing bytes")
  -- out of order in the header is fine: the format orders by offsets, not by name
  st(dir .. "/order.safetensors", {z = {dtype = "F32", shape = {2}, data_offsets = {0, 8}},
                                   a = {dtype = "F32", shape = {2}, data_offsets = {8, 16}}}, data)
  T.eq(sfwb.load(dir .. "/order.safetensors").z:sum():item(), 3)
end)

T.done()
