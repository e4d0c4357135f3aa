#!/usr/bin/python3
"""tensor_api_ref.py — PyTorch values for tests/lua/test_tensor_api.lua. Reads two input matrices as
Lua-style literals on stdin (one line each: comma-separated numbers + shape), prints a Lua table literal
of results. Dims in the Lua test are 1-based; here they are torch's 0-based equivalents."""
import sys

import torch
import torch.nn.functional as F

lines = sys.stdin.read().strip().splitlines()


def parse(line):
    vals, shape = line.split("|")
    return torch.tensor([float(v) for v in vals.split(",")], dtype=torch.float32).view(*[int(s) for s in shape.split(",")])


a, b, v = parse(lines[0]), parse(lines[1]), parse(lines[2])  # a [3,4], b [4,5], v [4]
res = {
    "add_bcast": a + v, "sub_scalar": 2.5 - a, "mul": a * a, "div_bcast": a / (v.abs() + 1), "neg": -a,
    "pow2": a ** 2, "pow_rev": 2 ** a, "matmul": a @ b, "matvec": a @ v, "dot": v @ v,
    "bmm": torch.stack([a, a * 2]) @ b,
    "sum_all": a.sum(), "sum1": a.sum(0), "sum2k": a.sum(1, keepdim=True), "mean2": a.mean(1),
    "max_all": a.max(), "max2_v": a.max(1).values, "max2_i": a.max(1).indices + 1, "min1_v": a.min(0).values,
    "min1_i": a.min(0).indices + 1, "std_all": a.std(), "std2": a.std(1), "norm_all": a.norm(), "norm1": a.norm(dim=0),
    "argmax_all": a.argmax() + 1, "argmax2": a.argmax(1) + 1, "argmin1": a.argmin(0) + 1, "prod2": a.prod(1),
    "softmax2": a.softmax(1), "softmax1": a.softmax(0), "log_softmax": a.log_softmax(1),
    "abs": a.abs(), "exp": a.exp(), "log": (a.abs() + 0.5).log(), "sqrt": (a.abs()).sqrt(), "tanh": a.tanh(),
    "sigmoid": a.sigmoid(), "silu": F.silu(a), "gelu": F.gelu(a), "gelu_tanh": F.gelu(a, approximate="tanh"),
    "sin": a.sin(), "cos": a.cos(), "relu": a.relu(), "clamp": a.clamp(-0.5, 0.5), "clamp_lo": a.clamp(min=0),
    "rsqrt": (a.abs() + 1).rsqrt(), "floor": a.floor(), "ceil": a.ceil(),
    "permute": a.view(3, 2, 2).permute(2, 0, 1).contiguous(), "transpose": a.t().contiguous(),
    "narrow": a.narrow(1, 1, 2).contiguous(), "select": a.select(1, 2), "cat2": torch.cat([a, a * 2], 1),
    "stack2": torch.stack([v, v + 1], 1), "where": torch.where(a > 0, a, torch.zeros(())),
    "expand": v.expand(2, 4).contiguous(), "bf16": a.bfloat16().float(), "f16": a.half().float(),
    "lt": (a < v).float(), "maximum": torch.maximum(a, v),
}


def lua(x):
    if x.dim() == 0:
        return repr(float(x))
    return "{" + ",".join(lua(e) for e in x) + "}"


print("{" + ",".join("%s=%s" % (k, lua(t.double())) for k, t in res.items()) + "}")
