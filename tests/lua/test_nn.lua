-- test_nn.lua — sfwb.nn (the fused model ops) against torch on small inputs: LayerNorm, RMSNorm, adaLN
-- modulation, gated residual, Wan 3-D RoPE, attention with block-causal visible ranges (+ log-sum-exp),
-- on cpu and, when present, emu.
local T = require "sfwb.testing"
local dir = T.tmpdir("nn")
sfwb.manual_seed(11)
local I = {
  x = sfwb.randn({2, 6, 8}), w = sfwb.randn({8}), b = sfwb.randn({8}),
  shift = sfwb.randn({2, 2, 8}), scale = sfwb.randn({2, 2, 8}), y = sfwb.randn({2, 6, 8}),
  r = sfwb.randn({1, 12, 2, 12}),
  q = sfwb.randn({1, 12, 2, 8}), k = sfwb.randn({1, 12, 2, 8}), v = sfwb.randn({1, 12, 2, 8}),
}
sfwb.save(dir .. "/in.pt", I)
local py = [[
import sys, math, torch
sys.path.insert(0, "tests/ref")
import wan_ref
d = sys.argv[1]
I = torch.load(d + "/in.pt")
x, w, b = I["x"], I["w"], I["b"]
O = {}
O["ln"] = torch.nn.functional.layer_norm(x, (8,), w, b, 1e-5)
O["ln0"] = torch.nn.functional.layer_norm(x, (8,), None, None, 1e-6)
O["rms"] = wan_ref.rms_norm(x, w, 1e-6)
xf = x.reshape(2, 2, 3, 8)
O["mod"] = (xf * (1 + I["scale"][:, :, None]) + I["shift"][:, :, None]).reshape(2, 6, 8)
O["gate"] = (xf + I["y"].reshape(2, 2, 3, 8) * I["scale"][:, :, None]).reshape(2, 6, 8)
O["rope"] = wan_ref.rope(I["r"], wan_ref.rope_angles(12, [5, 6], 2, 3))
mask = wan_ref.block_causal_mask(3, 4, 1, False, -1)
O["attn"] = wan_ref.attention(I["q"], I["k"], I["v"], mask)
s = torch.einsum("bqnd,bknd->bnqk", I["q"], I["k"]) / math.sqrt(8)
O["lse"] = torch.logsumexp(s.masked_fill(~mask, float("-inf")), dim=-1)
wan_ref.save_safetensors(d + "/out.safetensors", O)
]]
local f = io.open(dir .. "/ref.py", "w"); f:write(py); f:close()
assert(os.execute(string.format("%s '%s/ref.py' '%s'", T.python, dir, dir)), "torch reference failed")
local R = sfwb.load(dir .. "/out.safetensors")

local devices = {"cpu"}
for _, dv in ipairs(sfwb.devices()) do if dv:match("^emu") then devices[#devices + 1] = dv end end
for _, dev in ipairs(devices) do
  local J = {}
  for k, v in pairs(I) do J[k] = v:to(dev) end
  T.case(dev .. ": layer_norm with and without affine", function()
    T.close(sfwb.nn.layer_norm(J.x, J.w, J.b, 1e-5), R.ln, 1e-5)
    T.close(sfwb.nn.layer_norm(J.x, nil, nil, 1e-6), R.ln0, 1e-5)
  end)
  T.case(dev .. ": rms_norm", function() T.close(sfwb.nn.rms_norm(J.x, J.w, 1e-6), R.rms, 1e-5) end)
  T.case(dev .. ": modulate and gated_add per frame", function()
    T.close(sfwb.nn.modulate(J.x, J.shift, J.scale), R.mod, 1e-6)
    T.close(sfwb.nn.gated_add(J.x, J.y, J.scale), R.gate, 1e-6)
  end)
  T.case(dev .. ": rope3d at absolute frames 5, 6", function() T.close(sfwb.nn.rope3d(J.r, {2, 2, 3}, 5), R.rope, 1e-6) end)
  T.case(dev .. ": attention, block-causal ranges, log-sum-exp", function()
    local o, lse = sfwb.nn.attention(J.q, J.k, J.v, {q_group = 4, visible = {{0, 4}, {0, 8}, {0, 12}}})
    T.close(o, R.attn, 1e-5)
    T.close(lse, R.lse, 1e-5)
    T.raises(function() sfwb.nn.attention(J.q, J.k, J.v, {q_group = 4, visible = {{0, 4}}}) end, "query groups")
    T.raises(function() sfwb.nn.attention(J.q, J.k, J.v, {q_group = 4, visible = {{0, 4}, {0, 8}, {0, 13}}}) end, "outside")
  end)
end
os.execute("rm -rf '" .. dir .. "'")
T.done()
