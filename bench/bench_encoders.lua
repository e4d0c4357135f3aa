-- bench_encoders.lua — the sfwb side of bench_encoders.sh: VAE decode and a T5 block stack on the weights
-- bench_encoders.py generated. Usage: sfwb bench_encoders.lua vae|vae1|t5 DIR (vae1: run with one thread)
-- Prints "key seconds peak_MB max_rel_err_vs_torch".
local sfwb = require "sfwb"
local what, dir = arg[1], arg[2]

local function peak_mb()
  local b = require("sfwb.procmem").status("VmHWM")
  return b and b / 2 ^ 20 or -1
end

local function relerr(a, b)
  return (a - b):abs():max():item() / math.max(b:abs():max():item(), 1e-30)
end

if what == "vae" or what == "vae1" then
  local vae = sfwb.vae.load(dir .. "/vae.pth")
  local z = sfwb.load(dir .. "/vae_in.pt").z
  local t0 = sfwb.time()
  local out = vae:decode(z)
  local dt = sfwb.time() - t0
  local ref = sfwb.load(dir .. "/vae_out.pt").out
  print(string.format("%s %.3f %.0f %.2g", what == "vae" and "vae_decode" or "vae_decode_1t", dt, peak_mb(), relerr(out, ref)))
else
  local t5 = sfwb.t5.load(dir .. "/t5.pth")
  local inp = sfwb.load(dir .. "/t5_in.pt")
  local t0 = sfwb.time()
  local out = t5:run_blocks(inp.x, inp.mask)
  local dt = sfwb.time() - t0
  local ref = sfwb.load(dir .. "/t5_out.pt").out
  print(string.format("t5_blocks %.3f %.0f %.2g", dt, peak_mb(), relerr(out, ref)))
end
