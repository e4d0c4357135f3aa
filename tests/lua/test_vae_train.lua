-- test_vae_train.lua — the trainable Wan VAE (lua/sfwb/vae_train.lua): whole-sequence encode/decode in
-- autograd ops equal sfwb.vae's chunked, cached C path (itself checked against PyTorch in test_vae) on a
-- tiny random VAE with both temporal stages, its gradients reach every parameter, and AdamW steps on it
-- lower the reconstruction error.
local sfwb = require "sfwb"
local T = require "sfwb.testing"

local cfg = {dim = 4, z_dim = 16, dim_mult = {1, 2, 4, 4}, num_res_blocks = 1}
sfwb.manual_seed(1)
local sd = sfwb.tiny.vae_state_dict(cfg)

T.case("encode and decode equal sfwb.vae (chunked, cached) on 9 frames", function()
  local V = sfwb.vae_train.new(sd)
  local ref = sfwb.vae.load(sd)
  local x = sfwb.rand({2, 3, 9, 32, 24}) * 2 - 1
  local mu = V:encode(x)
  T.eq(table.concat(mu:shape(), ","), "2,3,16,4,3")
  T.close(mu, ref:encode(x), 1e-5, "encode")
  local lat = sfwb.randn({1, 3, 16, 4, 3})
  local d = V:decode(lat)
  T.eq(table.concat(d:shape(), ","), "1,9,3,32,24")
  T.close(d:clamp(-1, 1), ref:decode(lat), 1e-5, "decode")
  -- other mean/std: the same normalisation as sfwb.vae.load's options
  local m, s = {}, {}
  for i = 1, 16 do m[i], s[i] = 0.1 * i, 0.5 + 0.05 * i end
  local V2, ref2 = sfwb.vae_train.new(sd, {mean = m, std = s}), sfwb.vae.load(sd, {mean = m, std = s})
  T.close(V2:encode(x), ref2:encode(x), 1e-5, "encode, own mean/std")
  T.raises(function() V:encode(sfwb.zeros({1, 4, 5, 32, 32})) end, "[B, 3, T, H, W]")
end)

T.case("gradients reach every parameter; AdamW lowers the reconstruction error", function()
  local V = sfwb.vae_train.new(sd)
  local x = sfwb.rand({1, 3, 5, 16, 16}) * 2 - 1
  local target = x:permute({1, 3, 2, 4, 5})
  local opt = sfwb.optim.adamw(V, {lr = 3e-3, weight_decay = 0})
  local first, last
  for step = 1, 6 do
    opt:zero_grad()
    local loss = ((V:decode(V:encode(x)) - target) ^ 2):mean()
    loss:backward()
    if step == 1 then
      for name, p in pairs(V:parameters()) do
        T.check(p.grad ~= nil, name .. " got no gradient")
      end
      first = loss:item()
    end
    last = loss:item()
    opt:step()
  end
  T.check(last < 0.9 * first, string.format("loss %.4f -> %.4f", first, last))
  -- the trained weights load back into sfwb.vae
  local vae = sfwb.vae.load(V:state_dict())
  T.close(vae:encode(x), V:encode(x), 1e-5, "state_dict round trip")
end)

T.done()
