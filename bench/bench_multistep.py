# bench_multistep.py — the same 50-step UniPC sample as bench_multistep.lua in python3-torch: the reference
# transcriptions of the DiT (tests/ref/wan_ref.py) and of the sampler (tests/ref/multistep_ref.py), CPU,
# same sizes, classifier-free guidance on the flow.
import os
import sys
import time

import torch

from wan_block_sizes import setup

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "ref"))
from multistep_ref import UniPC  # noqa: E402

torch.set_grad_enabled(False)
torch.set_num_threads(os.cpu_count())

layers = int(sys.argv[1]) if len(sys.argv) > 1 else 2
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 50
h = int(sys.argv[3]) if len(sys.argv) > 3 else 60
w = int(sys.argv[4]) if len(sys.argv) > 4 else 104
model, x, _, ctx = setup(layers, h=h, w=w)
neg = torch.randn(1, 512, 4096)
s = UniPC(steps, 8.0)
ran = 0
t0, c0 = time.perf_counter(), time.process_time()
for t in s.timesteps:
    ran += 1
    tt = torch.tensor([float(t)])
    fc = model.forward(x, tt, ctx)
    fu = model.forward(x, tt, neg)
    x = s.step(fu + 5.0 * (fc - fu), t, x)
el = time.perf_counter() - t0
print("sample_s %.4f" % el)
print("sample_cpu_s %.4f" % (time.process_time() - c0))
print("steps_per_s %.4f" % (ran / el))
print("steps_run %d" % ran)
print("latent_absmean %.6f" % x.abs().mean().item())
