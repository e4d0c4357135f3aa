#!/bin/sh
# bench_core.sh — core tensor ops: sfwb (bench_core) and numpy (bench_core.py) in the same run, one
# table with ratios (> 1 means sfwb is faster). Called by bench/run.sh with the build directory.
BUILD=${1:-build}
HERE=$(dirname "$0")
MODE=${SFWB_BENCH_MODE:-}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
echo "== core ops: sfwb vs numpy $(/usr/bin/python3 -c 'import numpy; print(numpy.__version__)') ($(nproc) cores, OpenBLAS on both sides)"
"$BUILD/bench/bench_core" $MODE > "$OUT/sfwb.txt" || { echo "bench_core failed"; exit 1; }
/usr/bin/python3 "$HERE/bench_core.py" $MODE > "$OUT/numpy.txt" || { echo "bench_core.py failed"; exit 1; }
awk 'NR == FNR { np[$1] = $2; next }
     FNR == 1 { printf "%-26s %-9s %10s %10s %8s\n", "op", "unit", "sfwb", "numpy", "ratio" }
     { r = ($1 in np) && np[$1] > 0 ? sprintf("%.2f", $2 / np[$1]) : "-";
       printf "%-26s %-9s %10s %10s %8s\n", $1, $3, $2, ($1 in np) ? np[$1] : "-", r }' "$OUT/numpy.txt" "$OUT/sfwb.txt"
