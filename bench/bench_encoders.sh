#!/bin/sh
# bench_encoders.sh — VAE decode of a small clip (real Wan VAE widths) and a umT5-XXL block stack at real
# width (4096/10240, 64 heads, 512 tokens): sfwb against python3-torch on the same random weights, each
# measurement in its own process (time of the call; peak RSS of the process incl. weights). Ratio > 1
# means sfwb is faster / smaller. SFWB_BENCH_MODE=quick: 1 block, 128 tokens, a 2-frame 64x64 clip.
BUILD=${1:-build}
HERE=$(cd "$(dirname "$0")" && pwd)
MODE=${SFWB_BENCH_MODE:-}
BASE=/tmp
[ -d /dev/shm ] && [ -w /dev/shm ] && BASE=/dev/shm
OUT=$(mktemp -d "$BASE/sfwb-bench-enc.XXXXXX")
trap 'rm -rf "$OUT"' EXIT
PY=/usr/bin/python3
cd "$HERE/.." || exit 1
echo "== encoders: sfwb vs torch $($PY -c 'import torch; print(torch.__version__)') ($(nproc) cores, f32)"
$PY bench/bench_encoders.py gen "$OUT" $MODE || { echo "weight generation failed"; exit 1; }
printf "%-14s %10s %10s %8s %11s %11s %8s %12s\n" case sfwb_s torch_s speedup sfwb_MB torch_MB mem_x max_rel_err
# vae1: the same decode with one thread on each side (the load-independent comparison of the kernels:
# on the shared box torch's OpenMP threads collapse when the other core is busy)
for c in vae vae1 t5; do
  T=$($PY bench/bench_encoders.py $c "$OUT") || { echo "torch $c failed"; exit 1; }
  if [ "$c" = vae1 ]; then
    S=$(OPENBLAS_NUM_THREADS=1 SFWB_THREADS=1 OMP_NUM_THREADS=1 "$BUILD/sfwb" bench/bench_encoders.lua vae1 "$OUT") || { echo "sfwb $c failed"; exit 1; }
  else
    S=$("$BUILD/sfwb" bench/bench_encoders.lua $c "$OUT") || { echo "sfwb $c failed"; exit 1; }
  fi
  echo "$S $T" | awk '{ printf "%-14s %10.3f %10.3f %8.2f %11.0f %11.0f %8.2f %12s\n", $1, $2, $6, $6 / $2, $3, $7, $7 / $3, $4 }'
done
