#!/bin/sh
# bench_core.sh — core tensor ops: sfwb (bench_core) and numpy (bench_core.py) in the same run, one
# table with ratios (> 1 means sfwb is faster). The two sides alternate for SFWB_BENCH_ROUNDS rounds
# (default 2) and each keeps its best figure, so load from other processes skews neither side.
# Called by bench/run.sh with the build directory; SFWB_BENCH_MODE=quick for a short run.
BUILD=${1:-build}
HERE=$(dirname "$0")
MODE=${SFWB_BENCH_MODE:-}
ROUNDS=${SFWB_BENCH_ROUNDS:-2}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
echo "== core ops: sfwb vs numpy $(/usr/bin/python3 -c 'import numpy; print(numpy.__version__)') ($(nproc) cores, OpenBLAS on both sides, best of $ROUNDS rounds, load $(cut -d' ' -f1 /proc/loadavg))"
r=0
while [ $r -lt "$ROUNDS" ]; do
  "$BUILD/bench/bench_core" $MODE >> "$OUT/sfwb.txt" || { echo "bench_core failed"; exit 1; }
  /usr/bin/python3 -W ignore "$HERE/bench_core.py" $MODE >> "$OUT/numpy.txt" || { echo "bench_core.py failed"; exit 1; }
  r=$((r + 1))
done
awk 'FILENAME == ARGV[1] { if (!($1 in np) || $2 > np[$1]) np[$1] = $2; next }
     { if (!($1 in sf)) { order[n++] = $1; unit[$1] = $3 } if (!($1 in sf) || $2 > sf[$1]) sf[$1] = $2 }
     END {
       printf "%-26s %-9s %10s %10s %8s\n", "op", "unit", "sfwb", "numpy", "ratio"
       for (i = 0; i < n; i++) { k = order[i]
         r = (k in np) && np[k] > 0 ? sprintf("%.2f", sf[k] / np[k]) : "-"
         printf "%-26s %-9s %10s %10s %8s\n", k, unit[k], sf[k], (k in np) ? np[k] : "-", r } }' "$OUT/numpy.txt" "$OUT/sfwb.txt"
