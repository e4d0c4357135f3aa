# optim_ref.py — the reference for tests/lua/test_train.lua: torch.optim.AdamW + clip_grad_norm_ over the
# gradients sfwb wrote (in.pt), results into out.pt as a flat dict. bf16 parameters are trained as
# sfwb does: AdamW on an f32 master copy, the bf16 parameter is the rounded master.
import sys

import torch

d = torch.load(sys.argv[1])
n, steps = int(d["n"]), int(d["steps"])
lr, b1, b2, eps, wd, max_norm = (float(d[k]) for k in ("lr", "beta1", "beta2", "eps", "wd", "max_norm"))
params = [d["p%d" % i] for i in range(n)]
master = [p.detach().float().clone().requires_grad_(True) for p in params]
opt = torch.optim.AdamW(master, lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd, foreach=False)
out = {}
for s in range(steps):
    opt.zero_grad()
    for i in range(n):
        g = d.get("g%d_%d" % (s, i))
        master[i].grad = None if g is None else g.float().clone()
    norm = torch.nn.utils.clip_grad_norm_(master, max_norm)
    out["norm%d" % s] = float(norm)
    opt.step()
for i in range(n):
    out["p%d" % i] = master[i].detach().to(params[i].dtype)
    st = opt.state[master[i]]
    out["m%d" % i] = st["exp_avg"]
    out["v%d" % i] = st["exp_avg_sq"]
torch.save(out, sys.argv[2])
