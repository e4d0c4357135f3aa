# io_make_pt.py — writes the torch.save fixtures the io tests read (made at test time, never committed).
# usage: io_make_pt.py OUTDIR ; prints nothing on success.
import collections
import os
import sys

import torch

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
g = torch.Generator().manual_seed(1234)

def r(*shape, dtype=torch.float32):
    return torch.randn(*shape, generator=g).to(dtype)

# 1. a flat state dict with every dtype sfwb holds
flat = collections.OrderedDict()
flat["f32"] = r(3, 4)
flat["bf16"] = r(2, 5, dtype=torch.bfloat16)
flat["f16"] = r(7, dtype=torch.float16)
flat["f64"] = r(2, 2, dtype=torch.float64)
flat["i64"] = torch.arange(-3, 9, dtype=torch.int64).reshape(3, 4)
flat["i32"] = torch.arange(5, dtype=torch.int32) * -7
flat["u8"] = torch.arange(250, 256, dtype=torch.uint8)
flat["bool"] = torch.tensor([True, False, True])
flat["scalar"] = torch.tensor(2.5)
flat["empty"] = torch.zeros(0, 3)
torch.save(flat, os.path.join(out, "flat.pt"))

# 2. views sharing one storage, non-contiguous tensors, storage offsets
base = r(6, 8)
views = {
    "base": base,
    "t": base.t(),
    "narrow": base[2:5, 1:7],
    "row": base[4],
    "col": base[:, 3],
    "step": base[::2, ::3],
}
torch.save(views, os.path.join(out, "views.pt"))

# 3. a Self-Forcing-like checkpoint: nested dicts, model. prefixes, EMA with FSDP names, scalars
gen = collections.OrderedDict((("model.blocks.0.self_attn.q.weight", r(4, 4)),
                               ("model.blocks.0.self_attn.q.bias", r(4)),
                               ("model.head.head.weight", r(2, 4, dtype=torch.bfloat16))))
gen._metadata = collections.OrderedDict({"": {"version": 1}})  # as nn.Module.state_dict() carries
ema = {"model._fsdp_wrapped_module.blocks.0.self_attn.q.weight": gen["model.blocks.0.self_attn.q.weight"] * 0.5}
ckpt = {"generator": gen, "critic": {"model.x": r(3)}, "generator_ema": ema, "step": 600,
        "lr": 2e-6, "name": "dmd", "flag": True, "nothing": None, "betas": (0.0, 0.999),
        "param_groups": [{"lr": 1e-5, "params": [0, 1]}]}
torch.save(ckpt, os.path.join(out, "selfforcing.pt"))

# 4. nn.Parameter values (pickled through _rebuild_parameter)
torch.save({"p": torch.nn.Parameter(r(2, 3)), "q": torch.nn.Parameter(r(3), requires_grad=False)},
           os.path.join(out, "params.pt"))

# 5. a non-state-dict object: must be refused by name
class NotAllowed:
    pass
torch.save({"x": torch.nn.Linear(2, 2)}, os.path.join(out, "module.pt"))

# 6. a dtype sfwb does not hold (int16): refused naming the storage type
torch.save({"s": torch.arange(3, dtype=torch.int16)}, os.path.join(out, "int16.pt"))

# reference values the tests compare with (flattened, as text: name dtype shape values...)
with open(os.path.join(out, "expected.txt"), "w") as f:
    def dump(prefix, obj):
        if isinstance(obj, dict):
            for k, v in obj.items():
                dump(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                dump(f"{prefix}.{i}", v)
        elif isinstance(obj, torch.Tensor):
            vals = obj.detach().double().flatten().tolist()
            f.write(f"T {prefix} {str(obj.dtype).replace('torch.', '')} {list(obj.shape)} "
                    + " ".join(repr(v) for v in vals) + "\n")
    for fn, obj in (("flat", flat), ("views", views), ("selfforcing", ckpt)):
        dump(fn, obj)
