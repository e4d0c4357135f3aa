# io_check_safetensors.py — validates a safetensors file as the reference library does (header JSON,
# offsets contiguous from 0 to the end of the file, byte counts match dtype x shape, 8-aligned data)
# and that each tensor starts aligned to its element size. Exit 0 when valid.
import json
import struct
import sys

SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "U8": 1, "BOOL": 1}
data = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", data[:8])[0]
hdr = json.loads(data[8:8 + n])
assert (8 + n) % 8 == 0, "data section not 8-aligned"
body = len(data) - 8 - n
spans = []
for k, v in hdr.items():
    if k == "__metadata__":
        assert all(isinstance(x, str) for x in v.values())
        continue
    numel = 1
    for s in v["shape"]:
        numel *= s
    b, e = v["data_offsets"]
    assert e - b == numel * SIZES[v["dtype"]], k
    assert b % SIZES[v["dtype"]] == 0, f"{k} misaligned"
    spans.append((b, e))
spans.sort()
pos = 0
for b, e in spans:
    assert b == pos, f"gap/overlap at {b} (expected {pos})"
    pos = e
assert pos == body, f"data section {body} bytes, tensors cover {pos}"
