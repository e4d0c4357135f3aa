# bench_wan.py — the same Wan DiT forward as bench_wan.lua in python3-torch (the reference transcription
# tests/ref/wan_ref.py, i.e. upstream's computation: f64 RoPE, full softmax attention), CPU, same sizes.
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "ref"))
import wan_ref  # noqa: E402

torch.set_num_threads(os.cpu_count())


def status(k):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(k + ":"):
                return int(line.split()[1]) * 1024


layers = int(sys.argv[1]) if len(sys.argv) > 1 else 2
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 3
cfg = wan_ref.Cfg(dict(model_type="t2v", dim=1536, ffn_dim=8960, num_heads=12, num_layers=layers, in_dim=16, out_dim=16,
                       text_dim=4096, text_len=512, freq_dim=256, eps=1e-6))
g = torch.Generator().manual_seed(0)
model = wan_ref.Wan(cfg, wan_ref.make_params(cfg, g))
x = torch.randn(1, 16, 1, 60, 104, generator=g)
t = torch.tensor([937.5])
ctx = torch.randn(1, 512, 4096, generator=g)
with torch.no_grad():
    # memory: first forward of a fresh process above weights + inputs (as bench_wan.lua); time: best of reps
    base = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
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
