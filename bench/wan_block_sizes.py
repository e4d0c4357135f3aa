# wan_block_sizes.py — what bench_wan.py and bench_train.py share: the Wan2.1-1.3B block-size model of the
# reference transcription (tests/ref/wan_ref.py) with its inputs, and /proc/self memory figures.
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "ref"))
import wan_ref  # noqa: E402

torch.set_num_threads(os.cpu_count())


def status(k):
    """a /proc/self/status figure in bytes (VmRSS, VmHWM)"""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(k + ":"):
                return int(line.split()[1]) * 1024


def reset_peak():
    """restart VmHWM from the current RSS"""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def setup(layers, requires_grad=False, h=60, w=104):
    """(model, x, t, context) at real 1.3B block sizes: dim 1536, 12 heads, ffn 8960, 1 latent frame of
    60x104 = 1560 tokens (h x w), text 512; random weights and inputs from seed 0"""
    cfg = wan_ref.Cfg(dict(model_type="t2v", dim=1536, ffn_dim=8960, num_heads=12, num_layers=layers, in_dim=16,
                           out_dim=16, text_dim=4096, text_len=512, freq_dim=256, eps=1e-6))
    g = torch.Generator().manual_seed(0)
    P = wan_ref.make_params(cfg, g)
    for p in P.values():
        p.requires_grad_(requires_grad)
    x = torch.randn(1, 16, 1, h, w, generator=g)
    t = torch.tensor([937.5])
    ctx = torch.randn(1, 512, 4096, generator=g)
    return wan_ref.Wan(cfg, P), x, t, ctx
