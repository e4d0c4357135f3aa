-- test_image.lua — PNG read/write (8/16-bit, gray, alpha, palette), [-1, 1] float conversion as
-- torchvision/Self-Forcing compute it, grid tiling, and video export checked with ffprobe.
local sfwb = require "sfwb"
local T = require "sfwb.testing"

local dir = T.tmpdir("image")
local have_py = os.execute(T.python .. " tests/ref/io_make_png.py " .. dir) == true

local function lines()
  local out = {}
  for line in io.lines(dir .. "/expected.txt") do
    local name, h, w, rest = line:match("^(%S+) (%d+) (%d+) (.*)$")
    local vals = {}
    for v in rest:gmatch("%S+") do vals[#vals + 1] = tonumber(v) end
    out[name] = {h = tonumber(h), w = tonumber(w), v = vals}
  end
  return out
end

if have_py then
  T.case("PNG read: 8/16-bit, gray, gray+alpha, RGBA, palette", function()
    local exp = lines()
    for _, name in ipairs({"rgb8.png", "rgb16.png", "gray8.png", "gray16.png", "graya8.png", "rgba8.png", "pal8.png"}) do
      local e = exp[name]
      local img = sfwb.image.read(dir .. "/" .. name)
      T.eq(img:dtype(), "u8", name)
      local s = img:shape()
      T.eq(s[1], e.h, name)
      T.eq(s[2], e.w, name)
      T.eq(s[3], 3, name)
      local got = img:view({e.h * e.w * 3}):totable()
      for i = 1, #e.v do
        if got[i] ~= e.v[i] then error(string.format("%s: value %d is %d, expected %d", name, i, got[i], e.v[i])) end
      end
    end
  end)
  T.case("float read equals to_tensor(x).sub_(0.5).div_(0.5) bit for bit", function()
    local e = lines()["float"]
    local f = sfwb.image.read(dir .. "/rgb8.png", {float = true})
    T.eq(f:dtype(), "f32")
    local s = f:shape()
    T.eq(s[1], 3)
    T.eq(s[2], e.h)
    T.eq(s[3], e.w)
    local got = f:contiguous():view({3 * e.h * e.w}):totable()
    for i = 1, #e.v do T.eq(got[i], e.v[i], "float " .. i) end
  end)
  T.case("float [3,H,W] write matches Self-Forcing's uint8 conversion", function()
    sfwb.manual_seed(3)
    local x = sfwb.randn({3, 9, 11}) * 0.7
    sfwb.save(dir .. "/x.pt", {x = x})
    sfwb.image.write(dir .. "/x.png", x)
    T.eq(os.execute(T.python .. " tests/ref/io_check_png.py " .. dir .. "/x.png " .. dir .. "/x.pt"), true)
  end)
end

T.case("u8 write/read round trip; gray and RGBA write", function()
  local img = (sfwb.arange(0, 4 * 6 * 3, 1, {dtype = "i64"}) * 3):to("u8"):view({4, 6, 3})
  sfwb.image.write(dir .. "/u.png", img)
  local back = sfwb.image.read(dir .. "/u.png")
  T.close(back:float(), img:float(), 0)
  local gray = sfwb.full({4, 5}, 200, {dtype = "u8"})
  sfwb.image.write(dir .. "/g.png", gray)
  T.close(sfwb.image.read(dir .. "/g.png"):float(), sfwb.full({4, 5, 3}, 200), 0)
end)

T.case("grid tiles frames row by row", function()
  local a, b, c = sfwb.full({3, 2, 4}, -1), sfwb.full({3, 2, 4}, 0), sfwb.full({3, 2, 4}, 1)
  local g = sfwb.image.grid({a, b, c}, {cols = 2})
  local s = g:shape()
  T.eq(s[1], 3)
  T.eq(s[2], 4)
  T.eq(s[3], 8)
  T.eq(g[1][1][5], 0)
  T.eq(g[1][3][1], 1)
  T.eq(g[1][3][5], -1) -- the empty cell is black
  local gp = sfwb.image.grid({a, b}, {cols = 1, pad = 2})
  T.eq(gp:size(2), 2 * 2 + 3 * 2)
  local u = sfwb.image.grid({sfwb.zeros({2, 3, 3}, {dtype = "u8"}), sfwb.full({2, 3, 3}, 9, {dtype = "u8"})})
  T.eq(u:size(2), 6)
  T.eq(u[1][4][1], 9)
end)

T.case("bad images give clear errors", function()
  local f = io.open(dir .. "/bad.png", "wb")
  f:write("\137PNG\r\n\26\n\0\0\0\13IHDRjunk")
  f:close()
  T.raises(function() sfwb.image.read(dir .. "/bad.png") end, "bad.png")
  T.raises(function() sfwb.image.read(dir .. "/nope.png") end, "nope.png")
  T.raises(function() sfwb.image.write(dir .. "/w.png", sfwb.zeros({2, 3, 4, 5})) end, "w.png")
end)

local function ffprobe(path)
  local p = io.popen("ffprobe -v error -count_frames -select_streams v:0 -show_entries " ..
    "stream=codec_name,width,height,nb_read_frames,r_frame_rate -of default=nw=1 '" .. path .. "'")
  local out = p:read("a")
  p:close()
  local r = {}
  for k, v in out:gmatch("(%S+)=(%S+)") do r[k] = v end
  return r
end

T.case("video: H.264 mp4 through ffmpeg (frame count, size, fps), PNG fallback", function()
  sfwb.manual_seed(1)
  local frames = sfwb.rand({7, 3, 48, 64}) * 2 - 1
  if sfwb.video.have_ffmpeg() then
    local path, kind = sfwb.video.write(dir .. "/v.mp4", frames, {fps = 16})
    T.eq(kind, "mp4")
    local info = ffprobe(path)
    T.eq(info.codec_name, "h264")
    T.eq(tonumber(info.width), 64)
    T.eq(tonumber(info.height), 48)
    T.eq(tonumber(info.nb_read_frames), 7)
    T.eq(info.r_frame_rate, "16/1")
    -- odd sizes are padded to even for yuv420p
    local odd = sfwb.video.write(dir .. "/odd.mp4", sfwb.zeros({2, 3, 15, 17}))
    T.eq(tonumber(ffprobe(odd).nb_read_frames), 2)
  else
    print("     (ffmpeg not installed: mp4 path skipped)")
  end
  local pdir, kind = sfwb.video.write(dir .. "/p.mp4", frames, {png = true})
  T.eq(kind, "png")
  for i = 0, 6 do
    local img = sfwb.image.read(string.format("%s/%05d.png", pdir, i))
    T.eq(img:size(1), 48)
    T.eq(img:size(2), 64)
  end
  T.raises(function() sfwb.video.write(dir .. "/x.mp4", sfwb.zeros({3, 4, 5})) end, "x.mp4")
end)

os.execute("rm -rf '" .. dir .. "'")
T.done()
