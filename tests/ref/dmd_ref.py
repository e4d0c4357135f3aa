# dmd_ref.py — our PyTorch transcription of Self-Forcing's DMD generator loss and critic (fake score)
# flow loss (training_spec.md §1.1-1.4, §2.2, §2.3) on tiny random Wan networks, for the sfwb trainer's
# parity test. Given fixed x, noise and score timesteps (the random draws are inputs here) it writes
# the losses, dLoss/dx of the DMD loss and the critic's parameter gradients.
#
#   /usr/bin/python3 tests/ref/dmd_ref.py OUTDIR
#
# OUTDIR/real, OUTDIR/fake: Wan folders (config.json + safetensors); OUTDIR/data.safetensors: inputs
# and results; OUTDIR/manifest.lua: scalars.
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wan_ref  # noqa: E402
from luaout import write_lua  # noqa: E402
from scheduler_ref import grid, nearest  # noqa: E402

torch.set_grad_enabled(True)

TINY = dict(model_type="t2v", dim=32, ffn_dim=48, num_heads=2, num_layers=1, in_dim=16, out_dim=16,
            text_dim=8, text_len=4, freq_dim=16, eps=1e-6)


def write_model(path, P):
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(dict(TINY, _class_name="WanModel"), f)
    wan_ref.save_safetensors(os.path.join(path, "diffusion_pytorch_model.safetensors"), {k: v.detach() for k, v in P.items()})


def main(out):
    gen = torch.Generator().manual_seed(11)
    c = wan_ref.Cfg(TINY)
    PR, PF = wan_ref.make_params(c, gen), wan_ref.make_params(c, gen)
    write_model(os.path.join(out, "real"), PR)
    write_model(os.path.join(out, "fake"), PF)
    R, Fk = wan_ref.Wan(c, PR), wan_ref.Wan(c, PF)
    B, F, H, W = 2, 3, 2, 4
    rnd = lambda *s: torch.randn(*s, generator=gen)
    x = rnd(B, F, 16, H, W)
    n = rnd(B, F, 16, H, W)
    ctx, neg = rnd(B, 4, 8), rnd(B, 4, 8)
    t_int = torch.tensor([310.0, 905.0])                       # the integer draws of randint(0, 1000)
    shift = 5.0
    tv = shift * (t_int / 1000) / (1 + (shift - 1) * t_int / 1000) * 1000
    tv = tv.clamp(20, 980)
    t = tv.reshape(B, 1).expand(B, F).contiguous()              # one timestep per sample, all frames
    s5, T5, _ = grid(5.0)
    s8, T8, _ = grid(8.0)

    def add_noise(x0, noise, tt):                               # generator grid, nearest point per element
        sig = s5[nearest(T5, tt.reshape(-1))].reshape(B, F, 1, 1, 1)
        return ((1 - sig) * x0 + sig * noise).type_as(noise)

    def score_x0(model, xt, tt, cond):                          # score wrapper: shift-8 grid, float64
        flow = model.forward(xt.permute(0, 2, 1, 3, 4), tt[:, 0], cond).permute(0, 2, 1, 3, 4)
        sd = s8.double()[nearest(T8.double(), tt.reshape(-1).double())].reshape(B, F, 1, 1, 1)
        return (xt.double() - sd * flow.double()).float()

    # ---- generator DMD loss (x is the rollout output; gradient only through x)
    xg = x.clone().requires_grad_(True)
    with torch.no_grad():
        xt = add_noise(x, n, t)
        x0_fake = score_x0(Fk, xt, t, ctx)
        x0_c, x0_u = score_x0(R, xt, t, ctx), score_x0(R, xt, t, neg)
        x0_real = x0_c + 3.0 * (x0_c - x0_u)
        g = x0_fake - x0_real
        norm = (x - x0_real).abs().mean(dim=[1, 2, 3, 4], keepdim=True)
        g = torch.nan_to_num(g / norm)
    loss = 0.5 * torch.nn.functional.mse_loss(xg.double(), (xg.double() - g.double()).detach(), reduction="mean")
    loss.backward()

    # ---- critic flow loss on the (detached) generated video
    for p in PF.values():
        p.requires_grad_(True)
    xt_c = add_noise(x, n, t)
    x0_p = score_x0(Fk, xt_c, t, ctx)
    sig5 = s5.double()[nearest(T5.double(), t.reshape(-1).double())].reshape(B, F, 1, 1, 1)
    v_p = ((xt_c.double() - x0_p.double()) / sig5).float()
    closs = torch.mean((v_p - (n - x)) ** 2)
    closs.backward()

    data = {"x": x, "noise": n, "ctx": ctx, "neg": neg, "t": t, "dmd_grad_x": xg.grad,
            "g": g, "critic_grad_head": PF["head.head.weight"].grad,
            "critic_grad_ffn": PF["blocks.0.ffn.0.weight"].grad,
            "critic_grad_patch": PF["patch_embedding.weight"].grad}
    wan_ref.save_safetensors(os.path.join(out, "data.safetensors"), {k: v.detach().float() for k, v in data.items()})
    write_lua(os.path.join(out, "manifest.lua"), {"dmd_loss": loss.item(), "critic_loss": closs.item(),
                                                 "dmd_gradient_norm": g.abs().mean().item(),
                                                 "t_int": t_int.tolist()})


if __name__ == "__main__":
    main(sys.argv[1])
