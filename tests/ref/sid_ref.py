# sid_ref.py — our PyTorch transcription of Self-Forcing's SiD generator loss (model/sid.py
# compute_distribution_matching_loss) on tiny random Wan score networks: for a fixed generated x (a leaf with
# gradient), noise and score timesteps it writes the loss, dLoss/dx and the fake score's parameter gradients
# (the original's generator loss backpropagates through both score networks).
#
#   /usr/bin/python3 tests/ref/sid_ref.py OUTDIR [ALPHA]
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wan_ref  # noqa: E402
from luaout import write_lua  # noqa: E402
from scheduler_ref import grid, nearest  # noqa: E402

torch.set_grad_enabled(True)
torch.set_num_threads(1)

TINY = dict(model_type="t2v", dim=32, ffn_dim=48, num_heads=2, num_layers=1, in_dim=16, out_dim=16,
            text_dim=8, text_len=4, freq_dim=16, eps=1e-6)


def write_model(path, P):
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(dict(TINY, _class_name="WanModel"), f)
    wan_ref.save_safetensors(os.path.join(path, "diffusion_pytorch_model.safetensors"),
                             {k: v.detach() for k, v in P.items()})


def main(out, alpha):
    gen = torch.Generator().manual_seed(31)
    c = wan_ref.Cfg(TINY)
    PR, PF = wan_ref.make_params(c, gen), wan_ref.make_params(c, gen)
    write_model(os.path.join(out, "real"), PR)
    write_model(os.path.join(out, "fake"), PF)
    for p in PF.values():
        p.requires_grad_(True)
    R, Fk = wan_ref.Wan(c, PR), wan_ref.Wan(c, PF)
    B, F, H, W = 2, 3, 2, 4
    rnd = lambda *s: torch.randn(*s, generator=gen)
    x = rnd(B, F, 16, H, W).requires_grad_(True)
    n = rnd(B, F, 16, H, W)
    ctx, neg = rnd(B, 4, 8), rnd(B, 4, 8)
    t = torch.tensor([[420.0] * F, [777.0] * F])
    s5, T5, _ = grid(5.0)
    s8, T8, _ = grid(8.0)
    sig = s5[nearest(T5, t.reshape(-1))].reshape(B, F, 1, 1, 1)
    xt = (1 - sig) * x + sig * n

    def score_x0(model, xt, cond):
        flow = model.forward(xt.permute(0, 2, 1, 3, 4), t[:, 0], cond).permute(0, 2, 1, 3, 4)
        sd = s8.double()[nearest(T8.double(), t.reshape(-1).double())].reshape(B, F, 1, 1, 1)
        return (xt.double() - sd * flow.double()).float()

    x0_fake = score_x0(Fk, xt, ctx)
    x0_c, x0_u = score_x0(R, xt, ctx), score_x0(R, xt, neg)
    x0_real = x0_c + (x0_c - x0_u) * 3.0
    loss = (x0_real.double() - x0_fake.double()) * ((x0_real.double() - x.double())
                                                   - alpha * (x0_real.double() - x0_fake.double()))
    with torch.no_grad():
        norm = torch.abs(x - x0_real).mean(dim=[1, 2, 3, 4], keepdim=True)
    loss = torch.nan_to_num(loss / norm).mean()
    loss.backward()
    data = {"x": x.detach(), "noise": n, "ctx": ctx, "neg": neg, "t": t, "grad_x": x.grad}
    for k, p in PF.items():
        data["g." + k] = p.grad
    wan_ref.save_safetensors(os.path.join(out, "data.safetensors"), {k: v.detach().float() for k, v in data.items()})
    write_lua(os.path.join(out, "manifest.lua"), {"loss": loss.item(), "alpha": alpha})


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 1.0)
