# inplace_ref.py — PyTorch's behaviour for the rows of tests/lua/test_autograd_inplace.lua: in-place writes
# into views (recorded by torch; gradients), writes to tensors saved for backward (torch's version-counter
# error), in-place ops on views without autograd (values), and the gradient of a Wan forward's text context
# (padded to text_len by an in-place copy into a zero tensor, which torch records).
#
#   /usr/bin/python3 tests/ref/inplace_ref.py OUTDIR
# OUTDIR/data.safetensors: inputs and results; OUTDIR/manifest.lua: per row "ok" or the error kind;
# OUTDIR/wan: the tiny Wan folder of the context-gradient case.
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wan_ref  # noqa: E402
from luaout import write_lua  # noqa: E402

torch.set_grad_enabled(True)  # wan_ref turns it off


def main(out):
    g = torch.Generator().manual_seed(3)
    A = torch.randn(2, 3, generator=g)
    W = torch.randn(2, 3, generator=g)
    W5 = torch.randn(2, 5, generator=g)
    BUF = torch.randn(4, 3, generator=g)
    data = {"A": A, "W": W, "W5": W5, "BUF": BUF}

    def leaf():
        return A.clone().requires_grad_(True)

    def view_copy():  # pad[:, 1:4] = a: CopySlices
        a = leaf()
        pad = torch.zeros(2, 5)
        pad[:, 1:4] = a
        (pad * W5).sum().backward()
        return a.grad

    def view_add():  # buf[0].add_(a[0])
        a = leaf()
        buf = torch.zeros(2, 3)
        buf[0].add_(a[0])
        (buf * W).sum().backward()
        return a.grad

    def saved_other():  # mul saves w; w written in place
        a, w = leaf(), W.clone()
        c = a * w
        w.mul_(2)
        c.sum().backward()
        return a.grad

    def saved_output():  # exp saves its output; written through a detached view
        a = leaf()
        b = a.exp()
        b.detach()[0].fill_(0)
        b.sum().backward()
        return a.grad

    def saved_view_sibling():  # a view is saved; another, disjoint view of the same storage is written
        a, buf = leaf(), BUF.clone()
        c = a * buf[1:3]
        buf[0].fill_(5)
        c.sum().backward()
        return a.grad

    def unsaved_ok():  # add saves nothing: writing w afterwards is fine
        a, w = leaf(), W.clone()
        c = a + w
        w.mul_(2)
        (c * c).sum().backward()
        return a.grad

    rows = {}
    for name, fn in [("view_copy", view_copy), ("view_add", view_add), ("saved_other", saved_other),
                     ("saved_output", saved_output), ("saved_view_sibling", saved_view_sibling),
                     ("unsaved_ok", unsaved_ok)]:
        try:
            data["grad_" + name] = fn()
            rows[name] = "ok"
        except RuntimeError as e:
            rows[name] = "version" if "modified by an inplace operation" in str(e) else "error: " + str(e)

    # in-place ops on views, no autograd: values
    v = torch.arange(12.0).reshape(3, 4)
    v[1].mul_(3)
    v[:, 2].add_(1)
    v[0, 1:3].fill_(-1)
    v[2].copy_(W5[0, :4])
    v[:, 0].sub_(v[:, 3])
    data["views_result"] = v

    # the Wan forward's context gradient (context shorter than text_len: padded)
    cfg = dict(model_type="t2v", dim=32, ffn_dim=48, num_heads=2, num_layers=1, in_dim=16, out_dim=16,
               text_dim=8, text_len=6, freq_dim=16, eps=1e-6)
    c = wan_ref.Cfg(cfg)
    P = wan_ref.make_params(c, g)
    os.makedirs(os.path.join(out, "wan"), exist_ok=True)
    with open(os.path.join(out, "wan", "config.json"), "w") as f:
        json.dump(dict(cfg, _class_name="WanModel"), f)
    wan_ref.save_safetensors(os.path.join(out, "wan", "diffusion_pytorch_model.safetensors"), P)
    x = torch.randn(1, 16, 2, 2, 4, generator=g)
    ctx = torch.randn(1, 4, 8, generator=g).requires_grad_(True)
    t = torch.tensor([500.0])
    o = wan_ref.Wan(c, P).forward(x, t, ctx)
    (o * o).mean().backward()
    data.update({"wan_x": x, "wan_ctx": ctx.detach(), "wan_t": t, "wan_ctx_grad": ctx.grad})

    wan_ref.save_safetensors(os.path.join(out, "data.safetensors"), {k: v.detach().float() for k, v in data.items()})
    write_lua(os.path.join(out, "manifest.lua"), {"rows": rows})


if __name__ == "__main__":
    main(sys.argv[1])
