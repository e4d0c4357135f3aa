# io_make_png.py — PNG fixtures for the image tests, written by a small encoder of our own (struct +
# zlib) so 16-bit RGB, grayscale, gray+alpha, RGBA and palette files are all covered, plus the values
# sfwb must read: expected.txt lines "name H W v0 v1 ..." (u8 [H, W, 3] row-major) and, for
# rgb8.png, "float H W ..." = torchvision's to_tensor(img).sub_(0.5).div_(0.5) computed with torch.
import os
import struct
import sys
import zlib

import numpy as np
import torch

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(7)
H, W = 5, 7


def chunk(tag, data):
    c = struct.pack(">I", len(data)) + tag + data
    return c + struct.pack(">I", zlib.crc32(tag + data) & 0xffffffff)


def png(path, arr, color_type, depth, palette=None):
    h, w = arr.shape[:2]
    raw = b""
    dt = ">u2" if depth == 16 else "u1"
    for y in range(h):
        raw += b"\x00" + arr[y].astype(dt).tobytes()
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, 0))
    if palette is not None:
        data += chunk(b"PLTE", palette.astype("u1").tobytes())
    data += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    open(os.path.join(out, path), "wb").write(data)


exp = open(os.path.join(out, "expected.txt"), "w")


def expect(name, rgb):
    exp.write(f"{name} {rgb.shape[0]} {rgb.shape[1]} " + " ".join(str(int(v)) for v in rgb.reshape(-1)) + "\n")


rgb8 = rng.integers(0, 256, (H, W, 3))
png("rgb8.png", rgb8, 2, 8)
expect("rgb8.png", rgb8)
f = torch.from_numpy(rgb8.astype(np.uint8)).permute(2, 0, 1).contiguous().float().div(255).sub_(0.5).div_(0.5)
exp.write(f"float {H} {W} " + " ".join(repr(v) for v in f.reshape(-1).tolist()) + "\n")
rgb16 = rng.integers(0, 65536, (H, W, 3))
png("rgb16.png", rgb16, 2, 16)
expect("rgb16.png", rgb16 >> 8)
g8 = rng.integers(0, 256, (H, W))
png("gray8.png", g8, 0, 8)
expect("gray8.png", np.repeat(g8[:, :, None], 3, 2))
g16 = rng.integers(0, 65536, (H, W))
png("gray16.png", g16, 0, 16)
expect("gray16.png", np.repeat((g16 >> 8)[:, :, None], 3, 2))
ga = rng.integers(0, 256, (H, W, 2))
png("graya8.png", ga, 4, 8)
expect("graya8.png", np.repeat(ga[:, :, :1], 3, 2))
rgba = rng.integers(0, 256, (H, W, 4))
png("rgba8.png", rgba, 6, 8)
expect("rgba8.png", rgba[:, :, :3])
pal = rng.integers(0, 256, (16, 3))
idx = rng.integers(0, 16, (H, W))
png("pal8.png", idx, 3, 8, pal)
expect("pal8.png", pal[idx])
exp.close()
