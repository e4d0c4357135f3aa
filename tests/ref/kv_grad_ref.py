# kv_grad_ref.py — PyTorch's gradient through Self-Forcing's KV cache written in place, with a local
# window, sink frames and evictions made both with and without grad mode (causal_model.py's bookkeeping,
# wan_ref.KVCache): a sequence of KV-path forwards of a tiny causal Wan, some under no_grad (their writes
# change values, not the graph), the loss on the grad-mode outputs; every parameter gradient.
#
#   /usr/bin/python3 tests/ref/kv_grad_ref.py OUTDIR
# OUTDIR/wan: the model; OUTDIR/data.safetensors: inputs and gradients; OUTDIR/manifest.lua: loss, calls.
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wan_ref  # noqa: E402
from luaout import write_lua  # noqa: E402

torch.set_grad_enabled(True)  # wan_ref turns it off

CFG = dict(model_type="t2v", dim=32, ffn_dim=48, num_heads=2, num_layers=2, in_dim=16, out_dim=16,
           text_dim=8, text_len=4, freq_dim=16, eps=1e-6)
LOCAL, SINK = 3, 1
# (start frame, grad mode): exit-step-like grad writes, no-grad re-runs at the same position, evictions
# under grad (frames 3, 5) and under no_grad (frame 4)
CALLS = [(0, True), (0, False), (1, True), (1, False), (2, True), (3, True), (3, False), (4, False), (5, True)]


class InPlaceKV(wan_ref.KVCache):
    """wan_ref.KVCache (writes and evictions in place, recorded by autograd under grad mode), reading a copy
    of the visible range: the attention keeps the values of this moment, as flash-attn's input copy"""

    def attend(self, i, k, v):
        kk, vv, mask, fid = super().attend(i, k, v)
        return kk.clone(), vv.clone(), mask, fid


def main(out):
    g = torch.Generator().manual_seed(17)
    c = wan_ref.Cfg(CFG)
    P = wan_ref.make_params(c, g)
    os.makedirs(os.path.join(out, "wan"), exist_ok=True)
    with open(os.path.join(out, "wan", "config.json"), "w") as f:
        json.dump(dict(CFG, _class_name="WanModel"), f)
    wan_ref.save_safetensors(os.path.join(out, "wan", "diffusion_pytorch_model.safetensors"), P)
    for p in P.values():
        p.requires_grad_(True)
    m = wan_ref.Wan(c, P)
    ctx = torch.randn(1, 4, 8, generator=g)
    S = 2  # tokens per frame (2 x 4 latent -> 1 x 2 patches)
    kv = InPlaceKV(c, 1, S, 6, LOCAL, SINK)
    data = {"ctx": ctx}
    loss = 0
    for j, (f0, grad) in enumerate(CALLS):
        x = torch.randn(1, 16, 1, 2, 4, generator=g)
        t = torch.tensor([[float(100 + 97 * j)]])
        data["x_%d" % (j + 1)] = x
        data["t_%d" % (j + 1)] = t
        kv.start = f0 * S
        with torch.set_grad_enabled(grad):
            o = m.forward(x, t, ctx, kv_attend=kv.attend, f0=f0)
        if grad:
            loss = loss + (o * o).mean() * (j + 1)
    loss.backward()
    for k, p in P.items():
        data["grad." + k] = p.grad if p.grad is not None else torch.zeros_like(p)
    wan_ref.save_safetensors(os.path.join(out, "data.safetensors"), {k: v.detach().float() for k, v in data.items()})
    write_lua(os.path.join(out, "manifest.lua"), {"loss": loss.item(), "calls": [[f, gr] for f, gr in CALLS],
                                                 "local_attn_size": LOCAL, "sink_size": SINK})


if __name__ == "__main__":
    main(sys.argv[1])
