# io_check_roundtrip.py — torch.load reads the .pt sfwb re-saved from torch-made fixtures and finds the
# original tensors (values, dtypes, shapes, strides) and shared storages intact.
# usage: io_check_roundtrip.py FIXTURE_DIR OUT.pt
import os
import sys

import torch

fix, out = sys.argv[1], sys.argv[2]
sf = torch.load(os.path.join(fix, "selfforcing.pt"))
views = torch.load(os.path.join(fix, "views.pt"))
flat = torch.load(os.path.join(fix, "flat.pt"))
d = torch.load(out)
for k, v in sf["generator"].items():
    w = d["generator"][k]
    assert w.dtype == v.dtype and torch.equal(w, v), k
for k, v in flat.items():
    w = d["flat"][k]
    assert w.dtype == v.dtype and w.shape == v.shape and torch.equal(w, v), k
for k, v in views.items():
    w = d["views"][k]
    assert torch.equal(w, v) and w.stride() == v.stride() and w.storage_offset() == v.storage_offset(), k
assert d["views"]["t"].storage().data_ptr() == d["views"]["base"].storage().data_ptr(), "views must share storage"
assert d["step"] == 600 and d["name"] == "dmd" and d["flag"] is True and abs(d["lr"] - 2e-6) < 1e-20
assert d["list"] == [1, 2, 3]
assert d["nested"]["a"]["b"]["c"] == "deep"
