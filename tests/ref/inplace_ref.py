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
    B = torch.randn(2, 3, generator=g)
    data = {"A": A, "W": W, "W5": W5, "BUF": BUF, "B": B}

    C = torch.randn(3, generator=g)
    W45 = torch.randn(4, 5, generator=g)
    W3 = torch.randn(3, generator=g)
    data.update({"C": C, "W45": W45, "W3": W3})

    def leaf(x=A):
        return x.clone().requires_grad_(True)

    # every row: (loss, [leaves]) built the way its Lua twin in tests/lua/test_autograd_inplace.lua builds it
    def view_copy():  # pad[:, 1:4] = a: CopySlices into a buffer outside the graph
        a = leaf()
        pad = torch.zeros(2, 5)
        pad[:, 1:4] = a
        return (pad * W5).sum(), [a]

    def view_add():  # buf[0].add_(a[0])
        a = leaf()
        buf = torch.zeros(2, 3)
        buf[0].add_(a[0])
        return (buf * W).sum(), [a]

    def fill_view_nonleaf():  # a region of a non-leaf zeroed: no gradient there
        a = leaf()
        y = a * 2
        y[:, 1:3].fill_(0)
        return (y * W).sum(), [a]

    def mul_scalar_view_nonleaf():
        a = leaf()
        y = a * 2
        y[0].mul_(3)
        return (y * W).sum(), [a]

    def mul_tensor_view_nonleaf():  # mul_ saves the old values (a copy of them)
        a, b = leaf(), leaf(B)
        y = a * 1.5
        y[:, 1].mul_(b[:, 1])
        return (y * y * W).sum(), [a, b]

    def div_view_nonleaf():
        a, b = leaf(), leaf(B)
        y = a.exp()
        z = y + 1
        z[1].div_(b[1].exp())
        return (z * W).sum(), [a, b]

    def ops_nonleaf():  # in place on a non-leaf that is not a view: add_, mul_, sub_, div_ by a scalar
        a, b = leaf(), leaf(B)
        y = a * 2
        y.add_(b)
        y.mul_(3)
        y.sub_(a)
        y.div_(4)
        return (y * y * W).sum(), [a, b]

    def add_alpha_broadcast():  # y[:, 1:3].add_(c, alpha=2) with c broadcast over rows
        a, c = leaf(), leaf(C)
        y = a * 1
        y[:, 1:3].add_(c[:2], alpha=2)
        return (y * W).sum(), [a, c]

    def chain_of_views():  # a view of a view of a transposed buffer
        a = leaf()
        buf = torch.zeros(5, 4)
        w = buf.t()[1:3][:, 2:5]
        w.copy_(a)
        return (buf * W45.t()).sum(), [a]

    def write_read_other_view():  # written through one view, read through another made before the write
        a = leaf()
        buf = torch.zeros(2, 5)
        v1 = buf[:, 1:4]
        v2 = buf[:, 2:5]
        v1.copy_(a)
        return (v2 * W).sum(), [a]

    def base_written_view_read():  # the base written in place; a view made before reads the new history
        a = leaf()
        y = a * 2
        v = y[0]
        y.mul_(3)
        return (v * W3).sum(), [a]

    def index_assign():  # buf[1] = a[0]; buf[0, 1:3] = b[1, 0:2]; y[1] = 5 (index/range assignment)
        a, b = leaf(), leaf(B)
        buf = torch.zeros(2, 3)
        buf[1] = a[0]
        buf[0, 1:3] = b[1, 0:2]
        y = b * 2
        y[1] = 5
        return (buf * W).sum() + (y * W).sum(), [a, b]

    def overwrite_twice():  # a grad source written into a no-grad buffer, then partly overwritten by another
        a, b = leaf(), leaf(B)
        buf = torch.zeros(2, 3)
        buf.copy_(a * 2)
        buf[0].copy_(b[0])
        return (buf * buf * W).sum(), [a, b]

    def fill_nonleaf_whole():  # the whole non-leaf filled: only the later use of a carries gradient
        a = leaf()
        y = a * 2
        y.fill_(1)
        return (y * W + a * a).sum(), [a]

    def self_alias():  # y.add_(y[...]) : the source is a view of the destination
        a = leaf()
        y = a * 1
        y[:, 0:2].add_(y[:, 1:3])
        return (y * W).sum(), [a]

    def saved_other():  # mul saves w; w written in place
        a, w = leaf(), W.clone()
        c = a * w
        w.mul_(2)
        return c.sum(), [a]

    def saved_output():  # exp saves its output; written through a detached view
        a = leaf()
        b = a.exp()
        b.detach()[0].fill_(0)
        return b.sum(), [a]

    def saved_output_recorded():  # exp saves its output; written through a view, recorded
        a = leaf()
        b = a.exp()
        b[0].mul_(2)
        return b.sum(), [a]

    def saved_view_sibling():  # a view is saved; another, disjoint view of the same storage is written
        a, buf = leaf(), BUF.clone()
        c = a * buf[1:3]
        buf[0].fill_(5)
        return c.sum(), [a]

    def unsaved_ok():  # add saves nothing: writing w afterwards is fine
        a, w = leaf(), W.clone()
        c = a + w
        w.mul_(2)
        return (c * c).sum(), [a]

    def leaf_inplace():  # refused: a leaf that requires grad
        a = leaf()
        a.add_(1)
        return a.sum(), [a]

    def leaf_view_inplace():  # refused: a view of a leaf that requires grad
        a = leaf()
        a[0].fill_(0)
        return a.sum(), [a]

    ROWS = [view_copy, view_add, fill_view_nonleaf, mul_scalar_view_nonleaf, mul_tensor_view_nonleaf,
            div_view_nonleaf, ops_nonleaf, add_alpha_broadcast, chain_of_views, write_read_other_view,
            base_written_view_read, index_assign, overwrite_twice, fill_nonleaf_whole, self_alias, saved_other,
            saved_output, saved_output_recorded, saved_view_sibling, unsaved_ok, leaf_inplace, leaf_view_inplace]
    rows = {}
    for fn in ROWS:
        name = fn.__name__
        try:
            loss, leaves = fn()
            loss.backward()
            for i, x in enumerate(leaves):
                data["grad_%s_%d" % (name, i + 1)] = x.grad if x.grad is not None else torch.zeros_like(x)
            data["loss_" + name] = loss.detach().reshape(1)
            rows[name] = "ok"
        except RuntimeError as e:
            msg = str(e)
            if "modified by an inplace operation" in msg:
                rows[name] = "version"
            elif "a view of a leaf Variable that requires grad" in msg:
                rows[name] = "leaf_view"
            elif "a leaf Variable that requires grad" in msg:
                rows[name] = "leaf"
            else:
                rows[name] = "error: " + msg

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
    write_lua(os.path.join(out, "manifest.lua"), {"rows": rows, "order": [fn.__name__ for fn in ROWS]})


if __name__ == "__main__":
    main(sys.argv[1])
