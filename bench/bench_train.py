# bench_train.py — the same forward + backward as bench_train.lua in python3-torch autograd (the reference
# transcription tests/ref/wan_ref.py), CPU, same sizes; per-block torch.utils.checkpoint for the
# checkpointed variant.
import os
import sys
import time

import torch
import torch.utils.checkpoint

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "ref"))
import wan_ref  # noqa: E402

torch.set_grad_enabled(True)
torch.set_num_threads(os.cpu_count())


def status(k):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(k + ":"):
                return int(line.split()[1]) * 1024


layers = int(sys.argv[1]) if len(sys.argv) > 1 else 2
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 2
cfg = wan_ref.Cfg(dict(model_type="t2v", dim=1536, ffn_dim=8960, num_heads=12, num_layers=layers, in_dim=16, out_dim=16,
                       text_dim=4096, text_len=512, freq_dim=256, eps=1e-6))
g = torch.Generator().manual_seed(0)
P = wan_ref.make_params(cfg, g)
for p in P.values():
    p.requires_grad_(True)
model = wan_ref.Wan(cfg, P)
plain_block = model.block
x = torch.randn(1, 16, 1, 60, 104, generator=g)
t = torch.tensor([937.5])
ctx = torch.randn(1, 512, 4096, generator=g)


def ck_block(*a):
    return torch.utils.checkpoint.checkpoint(plain_block, *a, use_reentrant=False)


def step(ck):
    model.block = ck_block if ck else plain_block
    out = model.forward(x, t, ctx)
    (out * out).mean().backward()


step(False)
for ck in (False, True):
    base = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    best = bestc = 1e30
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        step(ck)
        best, bestc = min(best, time.perf_counter() - t0), min(bestc, time.process_time() - c0)
    key = "ckpt_" if ck else ""
    print("%sfwdbwd_s %.4f" % (key, best))
    print("%sfwdbwd_cpu_s %.4f" % (key, bestc))
    print("%speak_extra_mb %.1f" % (key, (status("VmHWM") - base) / 2 ** 20))
