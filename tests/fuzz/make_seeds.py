# make_seeds.py — seed corpora for the fuzz targets: torch.save files and their data.pkl, safetensors
# files (written with struct + json), and PNGs of every color type (tests/ref/io_make_png.py).
import io
import json
import os
import struct
import subprocess
import sys
import zipfile

import torch

out = sys.argv[1]
for d in ("pickle", "torchzip", "safetensors", "png", "yaml"):
    os.makedirs(os.path.join(out, d), exist_ok=True)
g = torch.Generator().manual_seed(0)
objs = {
    "flat": {"a": torch.randn(3, 4, generator=g), "b": torch.arange(5), "h": torch.randn(2, generator=g).half()},
    "nested": {"generator": {"model.x": torch.randn(2, 2, generator=g).bfloat16()}, "step": 3, "lr": 1e-5,
               "name": "x", "t": (1, 2.5, None, True), "l": [1, [2, {"k": "v"}]]},
    "views": (lambda b: {"b": b, "t": b.t(), "n": b[1:3, ::2]})(torch.randn(4, 6, generator=g)),
    "param": {"p": torch.nn.Parameter(torch.randn(3, generator=g))},
}
for name, obj in objs.items():
    buf = io.BytesIO()
    torch.save(obj, buf)
    data = buf.getvalue()
    open(os.path.join(out, "torchzip", name + ".pt"), "wb").write(data)
    z = zipfile.ZipFile(io.BytesIO(data))
    pkl = [n for n in z.namelist() if n.endswith("data.pkl")][0]
    open(os.path.join(out, "pickle", name + ".pkl"), "wb").write(z.read(pkl))


def safetensors(tensors, meta=None):
    hdr, blobs, off = {}, [], 0
    if meta:
        hdr["__metadata__"] = meta
    for k, (dt, shape, raw) in tensors.items():
        hdr[k] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(hdr).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


st = safetensors({"w": ("F32", [2, 3], struct.pack("<6f", *range(6))), "b": ("BF16", [2], b"\x80\x3f\x00\x40"),
                  "i": ("I64", [1], struct.pack("<q", 7)), "e": ("U8", [0], b"")}, {"format": "pt"})
open(os.path.join(out, "safetensors", "a.safetensors"), "wb").write(st)
open(os.path.join(out, "torchzip", "a.safetensors"), "wb").write(st)
open(os.path.join(out, "safetensors", "b.safetensors"), "wb").write(safetensors({"x": ("BOOL", [3, 1], b"\x01\x00\x01")}))
subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "..", "ref", "io_make_png.py"),
                os.path.join(out, "png")], check=True)
os.remove(os.path.join(out, "png", "expected.txt"))

# YAML / JSON: the config fixtures and a Wan config.json
here = os.path.join(os.path.dirname(__file__), "..", "data", "configs")
for name in os.listdir(here):
    with open(os.path.join(here, name), "rb") as f:
        open(os.path.join(out, "yaml", name), "wb").write(f.read())
open(os.path.join(out, "yaml", "config.json"), "w").write(
    '{"_class_name":"WanModel","model_type":"t2v","dim":1536,"eps":1e-06,"x":null,"l":[1,2.5,"s",true]}')
open(os.path.join(out, "yaml", "anchors.yaml"), "w").write(
    "a: &x {b: [1, 2], c: ~}\nd:\n  <<: *x\n  e: *x\nf: [*x, *x]\n")
