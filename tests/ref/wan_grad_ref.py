# wan_grad_ref.py — parameter gradients of a tiny Wan DiT under torch autograd, for
# tests/lua/test_autograd_wan.lua. The model is the team's PyTorch transcription of the spec
# (tests/ref/wan_ref.py), run here with autograd on: loss = sum(out * R) for a fixed random R.
#
#   /usr/bin/python3 tests/ref/wan_grad_ref.py {bidir|causal} OUTDIR
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wan_ref as W  # noqa: E402

torch.set_grad_enabled(True)
torch.set_num_threads(1)

CFG = dict(W.TINY, dim=32, ffn_dim=64, num_heads=2, num_layers=2, in_dim=4, out_dim=4, text_dim=16, text_len=8,
           freq_dim=32)


def main(case, out):
    gen = torch.Generator().manual_seed(17)
    rnd = lambda *s: torch.randn(*s, generator=gen)
    c = W.Cfg(CFG)
    P = W.make_params(c, gen)
    for p in P.values():
        p.requires_grad_(True)
    model = W.Wan(c, P)
    B, F, H, Wd = 1, 3, 4, 4
    S = (H // 2) * (Wd // 2)
    x, ctx = rnd(B, c.in_dim, F, H, Wd), rnd(B, 5, c.text_dim)
    meta = dict(case=case, B=B, F=F)
    if case == "bidir":
        t = torch.tensor([700.0])
        o = model.forward(x, t, ctx)
    else:
        t = torch.tensor([[1000.0, 500.0, 250.0]])
        mask = W.block_causal_mask(F, S, 1, False, -1)
        q_frames = [n // S for n in range(F * S)]
        o = model.forward(x, t, ctx, kv_attend=lambda i, k, v: (k, v, mask, q_frames))
        meta["causal"] = dict(num_frame_per_block=1, independent_first_frame=False, local_attn_size=-1, sink_size=0)
    R = rnd(*o.shape)
    (o * R).sum().backward()
    data = dict(x=x, t=t, context=ctx, R=R, out=o.detach())
    for k, p in P.items():
        data["g." + k] = p.grad
    os.makedirs(out, exist_ok=True)
    conf = {k: v for k, v in CFG.items() if k != "clip_dim"}
    conf["_class_name"] = "WanModel"
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(conf, f)
    W.save_safetensors(os.path.join(out, "diffusion_pytorch_model.safetensors"), {k: v.detach() for k, v in P.items()})
    W.save_safetensors(os.path.join(out, "data.safetensors"), {k: v.detach().float() for k, v in data.items()})
    with open(os.path.join(out, "manifest.lua"), "w") as f:
        f.write("return " + W.to_lua(meta) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
