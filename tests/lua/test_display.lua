-- test_display.lua — lua/sfwb/display.lua outside a notebook: the MIME bundles the Jupyter kernel sends
-- (figures, __png/__html metatables, tensors, number tables, pipeline videos) and the text fallback.
local sfwb = require "sfwb"
local T = require "sfwb.testing"
local D = require "sfwb.display"

T.case("figures and user types", function()
  local fig = sfwb.plot.lines({{y = {1, 3, 2}, label = "a"}}, {title = "t"})
  local b = D.bundle(fig)
  T.eq(b["image/png"]:sub(2, 4), "PNG")
  T.check(b["text/plain"]:match("^<figure %d+x%d+>$"), "figure text")
  local mine = setmetatable({}, {__html = function() return "<i>x</i>" end, __png = function() return "\137PNGfake" end})
  b = D.bundle(mine)
  T.eq(b["text/html"], "<i>x</i>")
  T.eq(b["image/png"], "\137PNGfake")
  T.eq(D.result_bundle(fig)["image/png"], fig.png, "not shown yet: a result shows it")
end)

T.case("tensors, number tables, plain values", function()
  local b = D.bundle(sfwb.ones({2, 2}) * 3)
  T.check(b["text/html"]:find("<b>Tensor</b> f32 [2, 2] cpu", 1, true), b["text/html"])
  T.check(b["text/html"]:find("min 3", 1, true) and b["text/html"]:find("mean 3", 1, true), "stats")
  T.check(b["text/plain"]:find("[sfwb.Tensor f32 [2, 2] cpu]", 1, true), "text is tostring")
  T.check(D.bundle({1, 2.5})["text/html"]:find("<td>2.5</td>", 1, true), "list")
  T.check(D.bundle({{1, 2}, {3, 4}})["text/html"]:find("<th>2</th><td>3</td><td>4</td>", 1, true), "rows")
  T.check(D.bundle({x = 1})["text/html"]:find("<td>x</td><td>1</td>", 1, true), "record")
  T.eq(D.bundle({1, "a"})["text/html"], nil, "mixed: text only")
  T.eq(D.bundle({{1, 2}, {3}})["text/html"], nil, "ragged: text only")
  T.eq(D.bundle({1, 2})["text/plain"], "{1, 2}")
  local t = D.table({{0, 1 / 3}}, {columns = {"layer", "v"}, digits = 3})
  T.eq(tostring(t), "layer\tv\n0\t0.333")
  T.check(D.bundle(t)["text/html"]:find("<th>layer</th><th>v</th>", 1, true), "headers")
end)

T.case("videos", function()
  local frames = sfwb.zeros({4, 3, 16, 16})
  local v = D.video(frames, {fps = 8})
  T.eq(tostring(v), "<video 4 frames, 8 fps>")
  if sfwb.video.have_ffmpeg() then
    local html = D.bundle(v)["text/html"]
    T.check(html:find('<video controls', 1, true) and html:find("data:video/mp4;base64,", 1, true), "html5 video")
    -- a pipeline result: a table with a [B, F, 3, H, W] video
    T.check(D.bundle({video = frames:unsqueeze(1)})["text/html"]:find("<video", 1, true), "pipeline result")
  end
  T.raises(function() D.video(sfwb.zeros({3, 4})) end, "frames must be")
end)

T.case("base64 and the text fallback", function()
  T.eq(D.base64(""), "")
  T.eq(D.base64("f"), "Zg==")
  T.eq(D.base64("fo"), "Zm8=")
  T.eq(D.base64("foobar"), "Zm9vYmFy")
  T.eq(D.active(), false)
end)

T.done()
