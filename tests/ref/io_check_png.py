# io_check_png.py — a PNG that sfwb wrote from a float [3, H, W] tensor (saved beside it as a .pt)
# holds clamp(x * 0.5 + 0.5, 0, 1) * 255 cast to uint8, as Self-Forcing's video export computes.
# usage: io_check_png.py image.png tensor.pt
import sys

import numpy as np
import torch
from PIL import Image

img = np.asarray(Image.open(sys.argv[1]).convert("RGB"))
x = torch.load(sys.argv[2])["x"].float()
want = ((x * 0.5 + 0.5).clamp(0, 1) * 255).to(torch.uint8).permute(1, 2, 0).numpy()
assert img.shape == want.shape, (img.shape, want.shape)
assert (img == want).all(), f"{(img != want).sum()} pixels differ"
