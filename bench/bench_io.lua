-- bench_io.lua — checkpoint I/O: a Wan-1.3B-shaped state dict scaled to SIZE_MB (825 tensors, the real
-- key set with dims divided to fit), saved and loaded as safetensors and .pt. Prints "name seconds GB/s".
local sfwb = require "sfwb"
local dir, mb = arg[1], tonumber(arg[2] or "512")
local D, F, L = 1536, 8960, 30
-- scale the hidden sizes so the f32 total is about mb megabytes (the 1.3B model is 5676 MB)
local s = math.sqrt(mb / 5676)
local d, f = math.max(8, math.floor(D * s)), math.max(8, math.floor(F * s))
local t = {}
local function p(name, shape) t[name] = sfwb.zeros(shape) end
p("patch_embedding.weight", {d, 16, 1, 2, 2}); p("patch_embedding.bias", {d})
p("text_embedding.0.weight", {d, math.floor(4096 * s)}); p("text_embedding.0.bias", {d})
p("text_embedding.2.weight", {d, d}); p("text_embedding.2.bias", {d})
p("time_embedding.0.weight", {d, 256}); p("time_embedding.0.bias", {d})
p("time_embedding.2.weight", {d, d}); p("time_embedding.2.bias", {d})
p("time_projection.1.weight", {6 * d, d}); p("time_projection.1.bias", {6 * d})
p("head.modulation", {1, 2, d}); p("head.head.weight", {64, d}); p("head.head.bias", {64})
for i = 0, L - 1 do
  local b = "blocks." .. i .. "."
  p(b .. "modulation", {1, 6, d})
  for _, a in ipairs({"self_attn", "cross_attn"}) do
    for _, q in ipairs({"q", "k", "v", "o"}) do p(b .. a .. "." .. q .. ".weight", {d, d}); p(b .. a .. "." .. q .. ".bias", {d}) end
    p(b .. a .. ".norm_q.weight", {d}); p(b .. a .. ".norm_k.weight", {d})
  end
  p(b .. "norm3.weight", {d}); p(b .. "norm3.bias", {d})
  p(b .. "ffn.0.weight", {f, d}); p(b .. "ffn.0.bias", {f}); p(b .. "ffn.2.weight", {d, f}); p(b .. "ffn.2.bias", {d})
end
local n, bytes = 0, 0
for _, v in pairs(t) do n = n + 1; bytes = bytes + v:numel() * 4 end
local gb = bytes / 1e9
print(string.format("# %d tensors, %.3f GB f32", n, gb))
local function time(name, fn, size)
  os.execute("sync")
  local t0 = sfwb.time()
  fn()
  local dt = sfwb.time() - t0
  print(string.format("%-28s %8.3f s %8.2f GB/s", name, dt, size and size / dt or 0))
end
local st, pt = dir .. "/bench.safetensors", dir .. "/bench.pt"
time("safetensors save", function() sfwb.save(st, t) end, gb)
time("safetensors open lazy", function() sfwb.load(st, {lazy = true}) end)
local loaded
time("safetensors load (mmap)", function() loaded = sfwb.load(st) end)
time("safetensors copy every tensor", function()
  for _, v in pairs(loaded) do v:clone() end
end, gb)
loaded = nil
collectgarbage()
time("pt save (torch.save layout)", function() sfwb.save(pt, {generator = t, step = 1}) end, gb)
time("pt open lazy", function() sfwb.load(pt, {lazy = true}) end)
time("pt load (mmap)", function() loaded = sfwb.load(pt) end)
time("pt copy every tensor", function()
  for _, v in pairs(loaded) do if type(v) ~= "number" then v:clone() end end
end, gb)
