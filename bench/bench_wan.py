# bench_wan.py — the same Wan DiT forward as bench_wan.lua in python3-torch (the reference transcription
# tests/ref/wan_ref.py, i.e. upstream's computation: f64 RoPE, full softmax attention), CPU, same sizes.
import sys
import time

import torch

from wan_block_sizes import reset_peak, setup, status

layers = int(sys.argv[1]) if len(sys.argv) > 1 else 2
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 3
model, x, t, ctx = setup(layers)
with torch.no_grad():
    # memory: first forward of a fresh process above weights + inputs (as bench_wan.lua); time: best of reps
    base = status("VmRSS")
    reset_peak()
    model.forward(x, t, ctx)
    peak = status("VmHWM") - base
    best = 1e30
    for _ in range(reps):
        t0 = time.perf_counter()
        out = model.forward(x, t, ctx)
        best = min(best, time.perf_counter() - t0)
        del out
print("forward_s %.4f" % best)
print("peak_extra_mb %.1f" % (peak / 2 ** 20))
