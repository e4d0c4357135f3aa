# conv_ref.py — torch.nn.functional.conv3d/conv2d cases (strides, padding, 1x1, temporal taps, bias or not)
# for the conv op table, and their gradients (input, weight, bias) for an upstream gradient gy. Usage: conv_ref.py OUTDIR -> OUTDIR/conv.pt
import sys

import torch
import torch.nn.functional as F

CASES3 = [  # (N, Cin, T, H, W, Cout, kt, kh, kw, stride, pad, bias)
    (2, 3, 5, 9, 7, 4, 3, 3, 3, (1, 1, 1), (1, 1, 1), True),
    (1, 5, 6, 8, 8, 6, 3, 1, 1, (2, 1, 1), (0, 0, 0), True),
    (1, 4, 4, 10, 6, 3, 2, 3, 2, (1, 2, 3), (2, 0, 1), False),
    (1, 6, 3, 5, 5, 7, 1, 1, 1, (1, 1, 1), (0, 0, 0), True),
]
CASES2 = [  # (N, Cin, H, W, Cout, kh, kw, stride, pad, bias)
    (2, 3, 28, 28, 8, 14, 14, (14, 14), (0, 0), False),
    (1, 4, 9, 11, 5, 3, 3, (2, 2), (1, 1), True),
]


def R(t):
    return t.bfloat16().float()


def main(out):
    g = torch.Generator().manual_seed(5)
    fx = {}
    gg = torch.Generator().manual_seed(6)  # the upstream gradients: a stream of their own

    def grads(key, fn, x, wt, b):
        x, wt = x.clone().requires_grad_(), wt.clone().requires_grad_()
        b = b.clone().requires_grad_() if b is not None else None
        y = fn(x, wt, b)
        gy = torch.randn(y.shape, generator=gg)
        y.backward(gy)
        fx[key + "gy"], fx[key + "gx"], fx[key + "gw"] = gy, x.grad, wt.grad
        if b is not None:
            fx[key + "gb"] = b.grad
    for i, (n, ci, t, h, w, co, kt, kh, kw, st, pd, bias) in enumerate(CASES3):
        x = torch.randn(n, ci, t, h, w, generator=g)
        wt = torch.randn(co, ci, kt, kh, kw, generator=g)
        b = torch.randn(co, generator=g) if bias else None
        fx["c3_%d_x" % i], fx["c3_%d_w" % i] = x, wt
        if bias:
            fx["c3_%d_b" % i] = b
        fx["c3_%d_y" % i] = F.conv3d(x, wt, b, stride=st, padding=pd)
        grads("c3_%d_" % i, lambda x, wt, b: F.conv3d(x, wt, b, stride=st, padding=pd), x, wt, b)
        # bf16 compute: bf16 operands, exact sums (f64), one rounding of the output
        fx["c3_%d_ybf" % i] = F.conv3d(R(x).double(), R(wt).double(), R(b).double() if bias else None, stride=st,
                                       padding=pd).bfloat16().float()
    for i, (n, ci, h, w, co, kh, kw, st, pd, bias) in enumerate(CASES2):
        x = torch.randn(n, ci, h, w, generator=g)
        wt = torch.randn(co, ci, kh, kw, generator=g)
        b = torch.randn(co, generator=g) if bias else None
        fx["c2_%d_x" % i], fx["c2_%d_w" % i] = x, wt
        if bias:
            fx["c2_%d_b" % i] = b
        fx["c2_%d_y" % i] = F.conv2d(x, wt, b, stride=st, padding=pd)
        grads("c2_%d_" % i, lambda x, wt, b: F.conv2d(x, wt, b, stride=st, padding=pd), x, wt, b)
        fx["c2_%d_ybf" % i] = F.conv2d(R(x).double(), R(wt).double(), R(b).double() if bias else None, stride=st,
                                       padding=pd).bfloat16().float()
    torch.save(fx, out + "/conv.pt")


if __name__ == "__main__":
    main(sys.argv[1])
