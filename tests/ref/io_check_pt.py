# io_check_pt.py — torch.load reads a .pt written by sfwb's test_io_statedict and gets the expected
# values (the test fills tensors with ramps: element i = (i - n//2) * scale).
import sys

import torch

d = torch.load(sys.argv[1])
def ramp(shape, scale, dtype):
    n = 1
    for s in shape:
        n *= s
    return ((torch.arange(n, dtype=torch.float64) - n // 2) * scale).to(dtype).reshape(shape)
w = ramp((4, 6), 0.125, torch.float32)
g = d["generator"]
assert torch.equal(g["model.w"], w)
assert torch.equal(g["model.view"], w[1:3])
assert torch.equal(g["model.t"], w.t())
assert g["model.view"].storage().data_ptr() == g["model.w"].storage().data_ptr(), "views must share storage"
assert torch.equal(g["model.b"], ramp((5,), 0.5, torch.bfloat16)) and g["model.b"].dtype == torch.bfloat16
assert torch.equal(d["idx"], ramp((5,), 2, torch.int64))
assert d["step"] == 123456789012 and d["lr"] == 2e-6 and d["name"] == "héllo"
assert d["list"] == [True, None, -5]
