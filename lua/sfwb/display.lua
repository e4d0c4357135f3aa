-- sfwb/display.lua — rich display of values in a Jupyter notebook (the sfwb kernel, `sfwb --kernel`):
-- each value becomes a MIME bundle {["text/plain"]=, ["image/png"]=, ["text/html"]=, ...}.
--   sfwb.display(v [, {id=, update=true}])   show v now (id: a display that a later call can update)
--   sfwb.display.clear([wait])               clear the cell's output (wait: when the next output comes)
--   sfwb.display.video(frames, {fps=16})     an HTML5 <video> of [F, 3, H, W] in [-1, 1] (or u8 [F, H, W, 3])
--   sfwb.display.table(rows, {columns=, index=, digits=4})   rows of numbers/strings with headers
--   sfwb.display.html(s), .png(bytes), .image(path)   wrap raw content
-- What shows how: a metatable with __png (-> PNG bytes) or __html (-> an HTML string) — the hook for your
-- own types; figures of sfwb.plot.* called without `path`; a pipeline result (a table with a 5-D `video`)
-- as its video; a Tensor as its summary and excerpt; a table of numbers (a list, a list of rows, or a
-- record of name -> number) as an HTML table. Outside a notebook, display prints the text form.
local M = {}

local function kernel() return package.loaded["sfwb.kernel"] end
M.active = function() return kernel() ~= nil end

-- values shown by the cell that is running (plots display themselves; the cell's result skips them)
local shown = setmetatable({}, {__mode = "k"})
function M.cell_begin() shown = setmetatable({}, {__mode = "k"}) end

local function is_tensor(v)
  local ok, r = pcall(function() return type(v) == "userdata" and v.shape ~= nil and v.dtype ~= nil end)
  return ok and r
end

local function esc(s)
  return (tostring(s):gsub("[&<>\"]", {["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;"}))
end

local function fmt_num(x)
  if math.type(x) == "integer" then return tostring(x) end
  if x ~= x then return "nan" end
  return string.format("%.6g", x)
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
function M.base64(s)
  local out, n = {}, #s
  for i = 1, n, 3 do
    local a, b, c = s:byte(i, i + 2)
    local v = a * 65536 + (b or 0) * 256 + (c or 0)
    local q = {}
    for k = 3, 0, -1 do
      local idx = (v >> (6 * k)) & 63
      q[#q + 1] = B64:sub(idx + 1, idx + 1)
    end
    if not b then q[3], q[4] = "=", "=" elseif not c then q[4] = "=" end
    out[#out + 1] = table.concat(q)
  end
  return table.concat(out)
end

local function read_bytes(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- ---- wrappers -------------------------------------------------------------------------------------
local Raw = {}
Raw.__index = Raw
Raw.__png = function(r) return r.png_bytes end
Raw.__tostring = function(r) return r.text or "<display>" end

function M.html(s) return setmetatable({html_text = s, text = "<html>"}, {__html = function(r) return r.html_text end,
                                                                         __tostring = Raw.__tostring}) end
function M.png(bytes) return setmetatable({png_bytes = bytes, text = "<png image>"}, Raw) end
function M.image(path)
  local s = read_bytes(path)
  if not s then error("display.image: cannot read " .. tostring(path), 2) end
  return setmetatable({png_bytes = s, text = "<image " .. path .. ">"}, Raw)
end

-- a table of numbers with column (and row) names: display.table(rows, {columns = {...}, index = {...}, digits = 4})
local Table = {__name = "sfwb.table"}
Table.__tostring = function(t)
  local lines = {table.concat(t.columns or {}, "\t")}
  for i, r in ipairs(t.rows) do
    local cells = {t.index and tostring(t.index[i]) or nil}
    for j = 1, #r do cells[#cells + 1] = type(r[j]) == "number" and t.fmt(r[j]) or tostring(r[j]) end
    lines[#lines + 1] = table.concat(cells, "\t")
  end
  return table.concat(lines, "\n")
end
Table.__html = function(t)
  local out = {'<table class="sfwb-table"><tr>'}
  if t.index then out[#out + 1] = "<th></th>" end
  for _, c in ipairs(t.columns or {}) do out[#out + 1] = "<th>" .. esc(c) .. "</th>" end
  out[#out + 1] = "</tr>"
  for i, r in ipairs(t.rows) do
    out[#out + 1] = "<tr>" .. (t.index and ("<th>" .. esc(t.index[i]) .. "</th>") or "")
    for j = 1, #r do
      out[#out + 1] = "<td>" .. esc(type(r[j]) == "number" and t.fmt(r[j]) or tostring(r[j])) .. "</td>"
    end
    out[#out + 1] = "</tr>"
  end
  out[#out + 1] = "</table>"
  return table.concat(out)
end
function M.table(rows, opts)
  opts = opts or {}
  if type(rows) ~= "table" then error("display.table: expected a list of rows, got " .. type(rows), 2) end
  local digits = opts.digits or 4
  local fmt = function(x)
    if math.type(x) == "integer" then return tostring(x) end
    return string.format("%." .. digits .. "g", x)
  end
  return setmetatable({rows = rows, columns = opts.columns, index = opts.index, fmt = fmt}, Table)
end

-- a figure from sfwb.plot.* without `path`: {width, height, panels, png = bytes}
local Figure = {__name = "sfwb.figure"}
Figure.__png = function(f) return f.png end
Figure.__tostring = function(f) return string.format("<figure %dx%d>", f.width or 0, f.height or 0) end
function M.figure(info, show)
  setmetatable(info, Figure)
  if show ~= false and kernel() then
    shown[info] = true
    kernel().publish(M.bundle(info))
  end
  return info
end

-- an HTML5 video (H.264 MP4 through ffmpeg, embedded as base64)
local Video = {__name = "sfwb.video"}
Video.__tostring = function(v) return string.format("<video %d frames, %d fps>", v.frames, v.fps) end
Video.__html = function(v)
  if not v.mp4 then
    local tmp = os.tmpname()
    local path = tmp .. ".mp4"
    local ok, err = pcall(function()
      local _, kind = require("sfwb").video.write(path, v.tensor, {fps = v.fps})
      if kind ~= "mp4" then error("display.video: ffmpeg is needed for an inline video") end
    end)
    if ok then v.mp4 = read_bytes(path) end
    os.remove(path)
    os.remove(tmp)
    if not ok then error(err, 0) end
  end
  return string.format('<video controls loop autoplay muted playsinline width="%d" src="data:video/mp4;base64,%s"></video>',
                       v.width, M.base64(v.mp4))
end
function M.video(frames, opts)
  opts = opts or {}
  if not is_tensor(frames) then error("display.video: expected a Tensor of frames, got " .. type(frames), 2) end
  local s = frames:shape()
  if #s == 5 then frames, s = frames[1], {s[2], s[3], s[4], s[5]} end -- [B, F, 3, H, W]: the first sample
  if #s ~= 4 then error("display.video: frames must be [F, 3, H, W] (or [B, F, 3, H, W]), got [" ..
                        table.concat(s, ", ") .. "]", 2) end
  local w = frames:dtype() == "u8" and s[3] or s[4]
  return setmetatable({tensor = frames, fps = opts.fps or 16, frames = s[1], width = opts.width or math.max(w, 256)}, Video)
end

-- ---- bundles ----------------------------------------------------------------------------------------
local function numbers_table(v)
  -- a list of numbers, a list of equal-length lists of numbers, or a record name -> number
  local n = rawlen(v)
  if n > 0 then
    local first = rawget(v, 1)
    if type(first) == "number" then
      for i = 1, n do if type(rawget(v, i)) ~= "number" then return nil end end
      local cnt = 0
      for _ in pairs(v) do cnt = cnt + 1 end
      if cnt ~= n then return nil end
      local rows = {"<tr><th></th>"}
      for i = 1, n do rows[#rows + 1] = "<th>" .. i .. "</th>" end
      rows[#rows + 1] = "</tr><tr><th></th>"
      for i = 1, n do rows[#rows + 1] = "<td>" .. fmt_num(v[i]) .. "</td>" end
      rows[#rows + 1] = "</tr>"
      return table.concat(rows)
    elseif type(first) == "table" and getmetatable(first) == nil then
      local m = rawlen(first)
      if m == 0 then return nil end
      local out = {"<tr><th></th>"}
      for j = 1, m do out[#out + 1] = "<th>" .. j .. "</th>" end
      out[#out + 1] = "</tr>"
      for i = 1, n do
        local r = rawget(v, i)
        if type(r) ~= "table" or rawlen(r) ~= m then return nil end
        out[#out + 1] = "<tr><th>" .. i .. "</th>"
        for j = 1, m do
          if type(r[j]) ~= "number" then return nil end
          out[#out + 1] = "<td>" .. fmt_num(r[j]) .. "</td>"
        end
        out[#out + 1] = "</tr>"
      end
      return table.concat(out)
    end
    return nil
  end
  local keys = {}
  for k, x in pairs(v) do
    if type(k) ~= "string" or type(x) ~= "number" then return nil end
    keys[#keys + 1] = k
  end
  if #keys == 0 then return nil end
  table.sort(keys)
  local out = {"<tr><th>name</th><th>value</th></tr>"}
  for _, k in ipairs(keys) do out[#out + 1] = "<tr><td>" .. esc(k) .. "</td><td>" .. fmt_num(v[k]) .. "</td></tr>" end
  return table.concat(out)
end

local function tensor_html(t)
  local s = t:shape()
  local head = string.format("<b>Tensor</b> %s [%s] %s", t:dtype(), table.concat(s, ", "), t:device())
  local ok, stats = pcall(function()
    if t:numel() == 0 or t:dtype() == "bool" then return "" end
    local f = t:float()
    return string.format(" &nbsp; min %s &nbsp; max %s &nbsp; mean %s", fmt_num(f:min():item()),
                         fmt_num(f:max():item()), fmt_num(f:mean():item()))
  end)
  return head .. (ok and stats or "") .. "<pre>" .. esc(tostring(t)) .. "</pre>"
end

-- the rich part of v's bundle (nil when v has only a text form)
local function rich(v)
  local mt = getmetatable(v)
  if type(mt) == "table" then
    local b = {}
    if rawget(mt, "__png") then b["image/png"] = mt.__png(v) end
    if rawget(mt, "__html") then b["text/html"] = mt.__html(v) end
    if rawget(mt, "__svg") then b["image/svg+xml"] = mt.__svg(v) end
    if next(b) then return b end
  end
  if is_tensor(v) then return {["text/html"] = tensor_html(v)} end
  if type(v) == "table" and mt == nil then
    local video = rawget(v, "video")
    if is_tensor(video) and #video:shape() == 5 then
      local vid = M.video(video, {fps = rawget(v, "fps")})
      return {["text/html"] = Video.__html(vid)}
    end
    local rows = numbers_table(v)
    if rows then return {["text/html"] = '<table class="sfwb-table">' .. rows .. "</table>"} end
  end
  return nil
end

local function text(v)
  if type(v) == "table" and getmetatable(v) == nil then
    local ok, show = pcall(require, "sfwb.show")
    if ok then return show(v) end
  end
  return tostring(v)
end

function M.bundle(v)
  local b = rich(v) or {}
  b["text/plain"] = b["text/plain"] or text(v)
  return b
end

-- for the kernel: the bundle of a cell's result, false when the cell already showed it (a figure)
function M.result_bundle(v)
  if (type(v) == "table" or type(v) == "userdata") and shown[v] then return false end
  return rich(v)
end

function M.display(v, opts)
  local k = kernel()
  if k then
    k.publish(M.bundle(v), opts)
  else
    print(text(v))
  end
  return nil
end

function M.clear(wait)
  local k = kernel()
  if k then k.clear_output(wait and true or false) end
end

return setmetatable(M, {__call = function(_, v, opts) return M.display(v, opts) end})
