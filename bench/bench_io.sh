#!/bin/sh
# bench_io.sh — checkpoint I/O (bench_io.lua) plus torch.load/torch.save of the same file for scale.
# SFWB_BENCH_MODE=quick uses 128 MB instead of 1024 MB. Called by bench/run.sh with the build dir.
BUILD=${1:-build}
HERE=$(dirname "$0")
MB=1024
[ "${SFWB_BENCH_MODE:-}" = quick ] && MB=128
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
echo "== checkpoint I/O ($MB MB, Wan-1.3B key layout scaled; page cache warm after save)"
"$BUILD/sfwb" "$HERE/bench_io.lua" "$OUT" "$MB" || { echo "bench_io.lua failed"; exit 1; }
/usr/bin/python3 - "$OUT/bench.pt" <<'PY'
import sys, time, torch
t0 = time.time(); d = torch.load(sys.argv[1]); t1 = time.time()
gb = sum(v.numel() * v.element_size() for v in d["generator"].values()) / 1e9
print(f"{'torch.load of the sfwb .pt':28s} {t1 - t0:8.3f} s {gb / (t1 - t0):8.2f} GB/s")
t0 = time.time(); torch.save(d, sys.argv[1] + ".torch"); t1 = time.time()
print(f"{'torch.save of the same dict':28s} {t1 - t0:8.3f} s {gb / (t1 - t0):8.2f} GB/s")
PY
