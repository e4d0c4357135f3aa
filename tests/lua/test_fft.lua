-- test_fft.lua — sfwb.fft (FFTW) against torch.fft (tests/ref/fft_ref.py): fft/ifft/rfft/irfft along
-- each dim, n= padding and truncation, the three norms, complex inputs, frequencies, the attention
-- spectrum of the FFT notebook, and clear errors for bad input.
local sfwb = require "sfwb"
local T = require "sfwb.testing"

if not T.have_torch then
  print("skip: python3-torch is not importable")
  return
end
local dir = T.tmpdir("fft")
local fix = dir .. "/fft.lua"
assert(os.execute(string.format("cd tests/ref && %s fft_ref.py '%s'", T.python, fix)), "reference script failed")
local R = dofile(fix)
local function t64(v) return sfwb.tensor(v, {dtype = "f64"}) end

T.case("against torch.fft (f64)", function()
  for i, c in ipairs(R.cases) do
    local got = sfwb.fft[c.fn](t64(R[c.input]), c.opts)
    local ref = t64(c.ref)
    local what = string.format("case %d %s %s", i, c.fn, require("sfwb.show")(c.opts))
    T.eq(table.concat(got:shape(), ","), table.concat(ref:shape(), ","), what .. " shape")
    T.eq(got:dtype(), "f64", what)
    T.close(got, ref, 1e-12, what)
  end
end)

T.case("f32 in, f32 out within round-off", function()
  local x = t64(R.x):float()
  local got = sfwb.fft.rfft(x, {dim = 2})
  T.eq(got:dtype(), "f32")
  local ref
  for _, c in ipairs(R.cases) do if c.fn == "rfft" and c.opts.dim == 2 then ref = c.ref end end
  T.close(got, t64(ref), 1e-6, "rfft dim 2")
end)

T.case("roundtrip and the notebook's attention spectrum", function()
  local x = t64(R.x)
  T.close(sfwb.fft.irfft(sfwb.fft.rfft(x, {dim = 2}), {dim = 2, n = 5}), x, 1e-13, "irfft(rfft(x))")
  local a = t64(R.a)
  local last = a:narrow(2, 21, 1):squeeze(2):narrow(2, 1, 18)    -- [12, 18]: last query row, keys 0..17
  local X = sfwb.fft.rfft(last)                                   -- [12, 10, 2]
  local mag = (X:narrow(3, 1, 1):pow(2) + X:narrow(3, 2, 1):pow(2)):sqrt():squeeze(3)
  T.close(mag, t64(R.spectrum), 1e-12, "spectrum")
end)

T.case("frequencies", function()
  T.close(sfwb.fft.fftfreq(7, 0.5), t64(R.fftfreq):float(), 1e-7, "fftfreq")
  T.close(sfwb.fft.rfftfreq(8), t64(R.rfftfreq):float(), 1e-7, "rfftfreq")
end)

T.case("bad input says what is wrong", function()
  local x = sfwb.zeros({2, 3})
  T.raises(function() sfwb.fft.rfft(x, {dim = 3}) end, "dim 3 is out of range")
  T.raises(function() sfwb.fft.rfft(x, {norm = "nope"}) end, "norm must be")
  T.raises(function() sfwb.fft.ifft(x) end, "trailing dim of 2")
  T.raises(function() sfwb.fft.rfft(x, {n = 0}) end, "invalid signal length")
  T.raises(function() sfwb.fft.rfft(sfwb.zeros({3}, {dtype = "i64"})) end, "float tensor")
  T.raises(function() sfwb.fft.rfftfreq(0) end, "n must be")
end)

T.done()
