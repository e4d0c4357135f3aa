# toy_world_ref.py — an independent reference for the toy world's renderer (lua/sfwb/toy_world.lua +
# src/models/toy_world.c): reads scenes (their sampled parameters) from DIR/scenes.json, moves each
# ball by stepping the simulation frame by frame with explicit wall reflections (sfwb uses a closed
# form), rasterizes with torch in f64 (4 x 4 sub-samples, u8 levels, (v / 255 - 0.5) / 0.5), and
# writes DIR/expected.pt {"frames_<i>": [F, 3, H, W], "x_<i>_<b>": [F], "y_<i>_<b>": [F]}, plus
# DIR/splitmix.json: the first outputs of splitmix64 from a few seeds (signed int64, as decimal strings).
import json
import os
import sys

import torch

RGB = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (50, 80, 230), "yellow": (230, 220, 40)}
AXIS = {"left": (0, -1), "right": (0, 1), "up": (1, -1), "down": (1, 1)}
MASK = (1 << 64) - 1


def splitmix64(state, n):
    out = []
    for _ in range(n):
        state = (state + 0x9E3779B97F4A7C15) & MASK
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        z = z ^ (z >> 31)
        out.append(z - (1 << 64) if z >= 1 << 63 else z)
    return out


def simulate(ball, size, frames):
    lo, hi = ball["radius"], size - ball["radius"]
    ax, sg = AXIS[ball["direction"]]
    pos = [ball["x0"], ball["y0"]]
    v = sg * ball["speed"]
    xs, ys = [], []
    for _ in range(frames):
        xs.append(pos[0])
        ys.append(pos[1])
        p = pos[ax] + v
        if p > hi:
            p, v = 2 * hi - p, -v
        elif p < lo:
            p, v = 2 * lo - p, -v
        pos[ax] = p
    return xs, ys


def render(scene, frames, ss=4):
    size = scene["size"]
    sub = (torch.arange(size * ss, dtype=torch.float64) + 0.5) / ss  # sub-sample coordinates
    yy, xx = torch.meshgrid(sub, sub, indexing="ij")
    out = torch.empty(frames, 3, size, size, dtype=torch.float64)
    tracks = [simulate(b, size, frames) for b in scene["balls"]]
    for f in range(frames):
        img = torch.tensor(scene["background"], dtype=torch.float64)[:, None, None].expand(3, size, size).clone()
        for b, ball in enumerate(scene["balls"]):
            cx, cy = tracks[b][0][f], tracks[b][1][f]
            inside = ((xx - cx) ** 2 + (yy - cy) ** 2 <= ball["radius"] ** 2).double()
            a = inside.view(size, ss, size, ss).mean(dim=(1, 3))
            col = torch.tensor(RGB[ball["colour"]], dtype=torch.float64)[:, None, None]
            img = img * (1 - a) + col * a
        out[f] = (torch.floor(img + 0.5).clamp(0, 255) / 255 - 0.5) / 0.5
    return out.float(), tracks


d = sys.argv[1]
spec = json.load(open(os.path.join(d, "scenes.json")))
res = {}
for i, scene in enumerate(spec["scenes"]):
    frames, tracks = render(scene, spec["frames"])
    res[f"frames_{i}"] = frames
    for b, (xs, ys) in enumerate(tracks):
        res[f"x_{i}_{b}"] = torch.tensor(xs, dtype=torch.float64)
        res[f"y_{i}_{b}"] = torch.tensor(ys, dtype=torch.float64)
torch.save(res, os.path.join(d, "expected.pt"))
json.dump({str(s): [str(v) for v in splitmix64(s, 4)] for s in (0, 1, 12345, -7)},  # strings: exact 64-bit
          open(os.path.join(d, "splitmix.json"), "w"))
