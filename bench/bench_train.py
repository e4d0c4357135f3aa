# bench_train.py — the same forward + backward as bench_train.lua in python3-torch autograd (the reference
# transcription tests/ref/wan_ref.py), CPU, same sizes; per-block torch.utils.checkpoint for the
# checkpointed variant.
import sys
import time

import torch
import torch.utils.checkpoint

from wan_block_sizes import reset_peak, setup, status

torch.set_grad_enabled(True)

layers = int(sys.argv[1]) if len(sys.argv) > 1 else 2
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 2
model, x, t, ctx = setup(layers, requires_grad=True)
plain_block = model.block


def ck_block(*a):
    return torch.utils.checkpoint.checkpoint(plain_block, *a, use_reentrant=False)


def step(ck):
    model.block = ck_block if ck else plain_block
    out = model.forward(x, t, ctx)
    (out * out).mean().backward()


step(False)
for ck in (False, True):
    base = status("VmRSS")
    reset_peak()
    best = bestc = 1e30
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        step(ck)
        best, bestc = min(best, time.perf_counter() - t0), min(bestc, time.process_time() - c0)
    key = "ckpt_" if ck else ""
    print("%sfwdbwd_s %.4f" % (key, best))
    print("%sfwdbwd_cpu_s %.4f" % (key, bestc))
    print("%speak_extra_mb %.1f" % (key, (status("VmHWM") - base) / 2 ** 20))
