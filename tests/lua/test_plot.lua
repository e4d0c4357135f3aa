-- test_plot.lua — sfwb.plot from Lua: every figure kind writes a PNG of the reported size, known cells
-- read back in the colormap's colour, NaN cells grey, shared vs per-panel scales, bad input raises.
local sfwb = require "sfwb"
local T = require "sfwb.testing"

local dir = T.tmpdir("plot")

local function cell_rgb(info, panel, r, c)
  local p = info.panels[panel]
  local cw, ch = p.w // p.cols, p.h // p.rows
  return sfwb.plot.pixel(info.path, p.x + c * cw + cw // 2, p.y + r * ch + ch // 2)
end

local function expect_colour(info, panel, r, c, cmap, v)
  local p = info.panels[panel]
  local u = (v - p.vmin) / (p.vmax - p.vmin)
  local er, eg, eb = sfwb.plot.colormap(cmap, u)
  local gr, gg, gb = cell_rgb(info, panel, r, c)
  T.check(er == gr and eg == gg and eb == gb, string.format("cell (%d,%d)=%g: got %d,%d,%d want %d,%d,%d",
          r, c, v, gr, gg, gb, er, eg, eb), 2)
end

T.case("heatmap: size, colours, NaN cell", function()
  local t = sfwb.tensor({{0, 1, 2}, {3, 0 / 0, 5}, {6, 7, 8}})
  local info = sfwb.plot.heatmap(t, {path = dir .. "/h.png", title = "heat", xlabel = "key frame", ylabel = "query frame"})
  local w, h = sfwb.plot.size(info.path)
  T.eq(w, info.width); T.eq(h, info.height)
  T.eq(info.panels[1].vmin, 0); T.eq(info.panels[1].vmax, 8)
  expect_colour(info, 1, 0, 0, "viridis", 0)
  expect_colour(info, 1, 2, 2, "viridis", 8)
  expect_colour(info, 1, 1, 2, "viridis", 5)
  local r, g, b = cell_rgb(info, 1, 1, 1)
  T.check(r == g and g == b, "NaN cell is grey")
end)

T.case("heatmap options: cmap, vmin/vmax, bf16 input", function()
  local t = sfwb.tensor({{-1, 0}, {0.5, 1}}):bf16()
  local info = sfwb.plot.heatmap(t, {path = dir .. "/h2.png", cmap = "RdBu_r", vmin = -2, vmax = 2, colorbar = false})
  T.eq(info.panels[1].vmin, -2)
  expect_colour(info, 1, 0, 0, "RdBu_r", -1)
  expect_colour(info, 1, 1, 1, "RdBu_r", 1)
  T.raises(function() sfwb.plot.heatmap(t, {path = dir .. "/x.png", cmap = "nope"}) end, "nope")
  T.raises(function() sfwb.plot.heatmap(sfwb.zeros({2, 2, 2}), {path = dir .. "/x.png"}) end, "2-D")
  -- without path= the figure comes back as PNG bytes (shown inline by the notebook kernel), no file left
  local fig = sfwb.plot.heatmap(t)
  T.eq(fig.png:sub(1, 8), "\137PNG\r\n\26\n", "PNG bytes")
  T.eq(fig.path, nil)
  T.check(fig.width > 0 and #fig.panels == 1, "figure info")
  T.check(tostring(fig):match("^<figure %d+x%d+>$"), "figure text form")
  T.eq(getmetatable(fig).__png(fig), fig.png)
  T.raises(function() sfwb.plot.heatmap(t, {path = "/nonexistent-dir/x.png"}) end, "x.png")
end)

T.case("head_grid: shared and per-panel scale", function()
  local A = sfwb.arange(0, 12, 1):reshape({3, 2, 2}) -- heads 0..2 with values 0..3, 4..7, 8..11
  local info = sfwb.plot.head_grid(A, {path = dir .. "/g.png", title = "layer 0"})
  T.eq(#info.panels, 3)
  T.eq(info.panels[2].vmin, 0); T.eq(info.panels[2].vmax, 11)
  expect_colour(info, 2, 1, 1, "viridis", 7)
  local info2 = sfwb.plot.head_grid(A, {path = dir .. "/g2.png", scale = "panel", cols = 2})
  T.eq(info2.panels[3].vmin, 8); T.eq(info2.panels[3].vmax, 11)
  expect_colour(info2, 3, 0, 0, "viridis", 8)
  T.check(info2.panels[3].y > info2.panels[1].y, "third head on a second row")
end)

T.case("mosaic of matrices and an image", function()
  local img = sfwb.zeros({3, 8, 8}) -- [-1,1] image: black top, white bottom
  img:narrow(2, 5, 4):fill_(1)
  img:narrow(2, 1, 4):fill_(-1)
  local items = {sfwb.ones({4, 4}), {sfwb.zeros({4, 4}), title = "zeros"}, {img, title = "frame"}}
  local info = sfwb.plot.mosaic(items, {path = dir .. "/m.png", title = "mosaic"})
  T.eq(#info.panels, 3)
  local p = info.panels[3]
  local r, g, b = sfwb.plot.pixel(info.path, p.x + 2, p.y + 2)
  T.eq(r + g + b, 0, "top of the image black")
  r, g, b = sfwb.plot.pixel(info.path, p.x + 2, p.y + p.h - 3)
  T.eq(r + g + b, 765, "bottom white")
end)

T.case("lines and compare", function()
  local prof = sfwb.tensor({{1, 2, 3, 4}, {4, 3, 2, 1}})
  local info = sfwb.plot.lines(prof, {path = dir .. "/l.png", labels = {"a", "b"}, title = "profiles"})
  local w, h = sfwb.plot.size(info.path)
  T.eq(w, 640); T.eq(h, 400)
  sfwb.plot.lines({{y = {1, 0 / 0, 3}, band = {0.1, 0.1, 0.1}, label = "nan gap"}, {x = {0, 2}, y = {2, 2}}},
                  {path = dir .. "/l2.png", markers = true})
  local va = sfwb.zeros({5, 3, 8, 8})
  local vb = sfwb.zeros({5, 3, 8, 8})
  vb:select(1, 5):fill_(0.5)
  local c = sfwb.plot.compare({va, vb}, {path = dir .. "/c.png", labels = {"raw", "ema"}, frames = {0, 4}})
  T.eq(#c.panels, 6, "2 frames x (A, B, |A-B|)")
  local p = c.panels[3] -- |A-B| of frame 0: black
  local r, g, b = sfwb.plot.pixel(c.path, p.x + 3, p.y + 3)
  T.eq(r + g + b, 0)
  p = c.panels[6] -- frame 4 differs
  r = sfwb.plot.pixel(c.path, p.x + 3, p.y + 3)
  T.check(r > 0, "difference visible")
  local c2 = sfwb.plot.compare(va, vb, {path = dir .. "/c2.png", frames = {4}})
  T.eq(#c2.panels, 3, "compare(A, B, opts) form")
  T.eq(sfwb.plot.compare(va, vb).png:sub(2, 4), "PNG", "no path: PNG bytes")
end)

T.done()
