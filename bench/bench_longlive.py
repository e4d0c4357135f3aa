# bench_longlive.py — the same windowed long rollout as bench_longlive.lua in python3-torch: our transcription of
# LongLive v1.0 (tests/ref/longlive_ref.py: its KV rules with the temporary cache clones, the interactive loop
# and recache) over the reference DiT (tests/ref/wan_ref.py), CPU, same shapes.
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "ref"))
import wan_ref  # noqa: E402
import longlive_ref as L  # noqa: E402

torch.set_num_threads(os.cpu_count())
torch.set_grad_enabled(False)
h, w, F = (int(a) for a in (sys.argv[1:4] + ["16", "26", "18"][len(sys.argv[1:4]):]))
cfg = wan_ref.Cfg(dict(model_type="t2v", dim=1536, ffn_dim=8960, num_heads=12, num_layers=2, in_dim=16, out_dim=16,
                       text_dim=4096, text_len=512, freq_dim=256, eps=1e-6))
g = torch.Generator().manual_seed(0)
model = wan_ref.Wan(cfg, wan_ref.make_params(cfg, g))
ctxs = [torch.randn(1, 512, 4096, generator=g) for _ in range(2)]
noise = torch.randn(1, F, 16, h, w, generator=g)
sched = L.Sched(5.0)
steps = sched.warp([1000, 750, 500, 250]).tolist()
S = (h // 2) * (w // 2)
kv = L.LongLiveKV(cfg, 1, S, 12, 12, 3, 12)
out = torch.zeros(1, F, 16, h, w)
times, recache = [], None
t0 = time.perf_counter()
seg, pos = 0, 0
for b in range(F // 3):
    if seg == 0 and pos >= 12:  # the switch: global_sink, so no zeroing; recache the last 12 frames
        seg = 1
        tr = time.perf_counter()
        st = pos - min(12, pos)
        L.call(model, kv, out[:, st:pos], 0, st, ctxs[1], S)
        recache = time.perf_counter() - tr
    tb = time.perf_counter()
    x = noise[:, pos:pos + 3]
    for k, tk in enumerate(steps):
        flow = L.call(model, kv, x, tk, pos, ctxs[seg], S)
        x0 = sched.pred_x0(flow.flatten(0, 1), x.flatten(0, 1), tk).unflatten(0, (1, 3))
        if k < len(steps) - 1:
            x = sched.add_noise(x0.flatten(0, 1), torch.randn_like(x0.flatten(0, 1)), steps[k + 1]).unflatten(0, (1, 3))
    out[:, pos:pos + 3] = x0
    L.call(model, kv, x0, 0, pos, ctxs[seg], S)
    times.append(time.perf_counter() - tb)
    pos += 3
total = time.perf_counter() - t0
print("steady_fps %.4f" % (3 * len(times[4:]) / sum(times[4:])))
print("recache_s %.4f" % recache)
print("total_s %.4f" % total)
print("first_block_s %.4f" % times[0])
