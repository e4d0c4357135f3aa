-- sfwb/train/events.lua — TensorBoard event files, written without TensorFlow: TFRecord framing
-- (length, masked CRC-32C of the length, an Event protobuf, masked CRC-32C of it) holding Events with
-- scalar Summaries, the format SummaryWriter.add_scalar writes, so TensorBoard reads sfwb's runs.
--   w = Events.open(dir)  w:scalars(step, {name = number, ...})  w:close()
local M = {}

local CRC = {}
for i = 0, 255 do -- CRC-32C (Castagnoli), reflected polynomial
  local c = i
  for _ = 1, 8 do
    if c & 1 == 1 then c = (c >> 1) ~ 0x82F63B78 else c = c >> 1 end
  end
  CRC[i] = c
end

local function crc32c(s)
  local c = 0xFFFFFFFF
  for i = 1, #s do c = CRC[(c ~ s:byte(i)) & 0xFF] ~ (c >> 8) end
  return c ~ 0xFFFFFFFF
end
M.crc32c = crc32c

local function masked(c) return ((((c >> 15) | (c << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF end

local function varint(n)
  local out = {}
  repeat
    local b = n & 0x7F
    n = n >> 7
    out[#out + 1] = string.char(n ~= 0 and (b | 0x80) or b)
  until n == 0
  return table.concat(out)
end

local function bytes_field(num, s) return varint(num << 3 | 2) .. varint(#s) .. s end

local function event(wall, step, body)
  return "\9" .. string.pack("<d", wall) .. "\16" .. varint(step) .. body
end

local function record(data)
  local len = string.pack("<I8", #data)
  return len .. string.pack("<I4", masked(crc32c(len))) .. data .. string.pack("<I4", masked(crc32c(data)))
end
M.record = record

local W = {}
W.__index = W

local function hostname()
  local f = io.open("/etc/hostname", "r")
  local h = f and f:read("l")
  if f then f:close() end
  return (h and h ~= "") and h or "localhost"
end

function M.open(dir)
  local path = string.format("%s/events.out.tfevents.%d.%s", dir, os.time(), hostname())
  local f, err = io.open(path, "ab")
  if not f then error("cannot write " .. path .. ": " .. tostring(err), 0) end
  local w = setmetatable({f = f, path = path}, W)
  f:write(record(event(os.time(), 0, bytes_field(3, "brain.Event:2"))))
  f:flush()
  return w
end

-- one Event per step holding one simple_value per scalar (names sorted)
function W:scalars(step, values)
  local names = {}
  for k in pairs(values) do names[#names + 1] = k end
  table.sort(names)
  local vals = {}
  for _, k in ipairs(names) do
    vals[#vals + 1] = bytes_field(1, bytes_field(1, k) .. "\21" .. string.pack("<f", values[k]))
  end
  self.f:write(record(event(os.time(), step, bytes_field(5, table.concat(vals)))))
  self.f:flush()
end

function W:close() if self.f then self.f:close() self.f = nil end end

return M
