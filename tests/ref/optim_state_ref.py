# optim_state_ref.py IN.pt OPT.pt OUTDIR — loads the AdamW state written by sfwb (OPT.pt) into a
# torch.optim.AdamW over parameters of the same shapes (values from IN.pt), checks that every parameter got
# its state (int keys mapped to the parameters) with sfwb's moments and step, takes one more step with the
# gradients in IN.pt, and writes the parameters (torch_params.pt) and torch's own state dict (torch_opt.pt).
import sys

import torch

inp, sd, out = torch.load(sys.argv[1]), torch.load(sys.argv[2]), sys.argv[3]
n = int(inp["n"])
assert all(type(k) is int for k in sd["state"]), "state keys must be ints: %r" % list(sd["state"])
g = sd["param_groups"][0]
assert g["params"] == list(range(n)), g["params"]
params = [torch.nn.Parameter(inp["p%d" % i].clone()) for i in range(n)]
opt = torch.optim.AdamW(params, lr=0.5, betas=(0.1, 0.2), weight_decay=0.0)  # the loaded group wins
opt.load_state_dict(sd)
for i, p in enumerate(params):
    if ("m%d" % i) not in inp:
        assert p not in opt.state or not opt.state[p], "parameter %d should have no state" % i
        continue
    st = opt.state[p]  # keyed by the parameter object only when the int key was mapped
    assert torch.equal(st["exp_avg"], inp["m%d" % i]), i
    assert torch.equal(st["exp_avg_sq"], inp["v%d" % i]), i
    assert float(st["step"]) == float(inp["step%d" % i]), (float(st["step"]), float(inp["step%d" % i]))
for i, p in enumerate(params):
    p.grad = inp["g%d" % i].clone()
opt.step()
torch.save({"p%d" % i: p.detach().clone() for i, p in enumerate(params)}, out + "/torch_params.pt")
torch.save(opt.state_dict(), out + "/torch_opt.pt")
print("torch loaded sfwb's AdamW state: %d parameters, lr %g, betas %s" % (n, opt.param_groups[0]["lr"], opt.param_groups[0]["betas"]))
