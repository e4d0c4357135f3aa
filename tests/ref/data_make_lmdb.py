# data_make_lmdb.py — LMDB fixtures in Self-Forcing's layout (our transcription of utils/lmdb.py and the
# shard scripts: rows "<name>_<i>_data" as numpy tobytes()/UTF-8, "<name>_shape" as space-separated
# dims with the row count first; the shard script writes the 5-D latent shape for every key), written
# with python3-lmdb, plus expected.pt: the items the original datasets return (f16 rows -> f32 tensors
# with a leading axis for 4-D rows; img u8 480x832x3 -> to_tensor then (x - 0.5) / 0.5), and the
# DistributedSampler index lists for a few (n, world, rank, seed, drop_last) settings.
import json
import os
import sys

import lmdb
import numpy as np
import torch

out = sys.argv[1]
rng = np.random.default_rng(11)
expected = {}

# single env of ODE pairs: latents [N, 5, 3, 2, 4, 4]
ode = os.path.join(out, "ode")
env = lmdb.open(ode, map_size=1 << 26)
N = 4
lat = rng.standard_normal((N, 5, 3, 2, 4, 4)).astype(np.float16)
prompts = [f"prompt {i} — ünïcode" for i in range(N)]
with env.begin(write=True) as txn:
    for i in range(N):
        txn.put(f"latents_{i}_data".encode(), lat[i].tobytes())
        txn.put(f"prompts_{i}_data".encode(), prompts[i].encode())
    txn.put(b"latents_shape", " ".join(map(str, lat.shape)).encode())
    txn.put(b"prompts_shape", str(N).encode())
env.close()
for i in range(N):
    expected[f"ode.{i}.ode_latent"] = torch.tensor(lat[i], dtype=torch.float32)
    expected[f"ode.{i}.prompts"] = prompts[i]

# shards: rows [3, 2, 4, 4] (4-D -> reader adds an axis), img u8 [480, 832, 3], file i -> shard i % 3
shards = os.path.join(out, "shards")
os.makedirs(shards)
K, M = 3, 5
rows = rng.standard_normal((M, 3, 2, 4, 4)).astype(np.float16)
imgs = rng.integers(0, 256, (M, 480, 832, 3), dtype=np.uint8)
counts = [0] * K
order = []
envs = [lmdb.open(os.path.join(shards, f"shard_{k}"), map_size=1 << 26) for k in range(K)]
for i in range(M):
    k = i % K
    with envs[k].begin(write=True) as txn:
        j = counts[k]
        txn.put(f"latents_{j}_data".encode(), rows[i].tobytes())
        txn.put(f"prompts_{j}_data".encode(), f"shard prompt {i}".encode())
        txn.put(f"img_{j}_data".encode(), imgs[i].tobytes())
    counts[k] += 1
    order.append((k, i))
for k in range(K):
    with envs[k].begin(write=True) as txn:
        for key in ("latents", "prompts", "img"):
            txn.put(f"{key}_shape".encode(), " ".join(map(str, [counts[k], 3, 2, 4, 4])).encode())
    envs[k].close()
# global order: shards sorted by name, rows in order within each shard
glob = sorted(order, key=lambda t: (t[0], t[1]))
for g, (k, i) in enumerate(glob):
    expected[f"shards.{g}.ode_latent"] = torch.tensor(rows[i], dtype=torch.float32)[None]
    expected[f"shards.{g}.prompts"] = f"shard prompt {i}"
    img = torch.from_numpy(imgs[i]).permute(2, 0, 1).contiguous().float().div(255).sub_(0.5).div_(0.5)
    expected[f"shards.{g}.img"] = img
torch.save({k: v for k, v in expected.items() if isinstance(v, torch.Tensor)}, os.path.join(out, "expected.pt"))

# DistributedSampler orders
samplers = []
for n, world, seed, drop_last, shuffle in ((10, 1, 0, True, True), (10, 3, 0, True, True), (10, 3, 5, False, True),
                                           (7, 2, 0, True, False), (1000, 4, 123, True, True)):
    for rank in range(world):
        s = torch.utils.data.distributed.DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=shuffle,
                                                            seed=seed, drop_last=drop_last)
        samplers.append({"n": n, "world": world, "rank": rank, "seed": seed, "drop_last": drop_last,
                         "shuffle": shuffle, "indices": list(s)})
json.dump({"samplers": samplers, "prompts": {k: v for k, v in expected.items() if isinstance(v, str)}},
          open(os.path.join(out, "expected.json"), "w"), ensure_ascii=False)
