#!/bin/sh
# ptxas_check.sh [REPORT] [KERNELS_DIR] — the real GPU's per-kernel limits, checked on the committed
# `make ptxas` report (docs/ptxas.txt), so a machine without nvcc (where emu cannot know the size of a
# kernel's __shared__ arrays) still catches them: static shared memory <= 48 KB (49152 bytes: more needs
# dynamic shared memory and cudaFuncSetAttribute), <= 255 registers, every kernels/*.cu with a __global__
# function present for both targets (a stale report fails: rerun `make ptxas`). Spills are reported, not failed.
REPORT=${1:-docs/ptxas.txt}
KDIR=${2:-kernels}
[ -f "$REPORT" ] || { echo "ptxas_check: no $REPORT (make ptxas)"; exit 1; }
status=0
for f in "$KDIR"/*.cu; do
  [ -f "$f" ] && grep -q "__global__" "$f" || continue
  b=$(basename "$f")
  for arch in sm_90a sm_80; do
    grep -q "^$b:.* | $arch | " "$REPORT" || { echo "ptxas_check: $b has no $arch line in $REPORT (stale: make ptxas)"; status=1; }
  done
done
awk -F' [|] ' '
  /^#/ { next }
  NF >= 5 {
    n++
    split($4, sp, " / ")
    if ($5 + 0 > 49152) { printf "ptxas_check: %s (%s): %d bytes of static shared memory > 48 KB\n", $1, $2, $5; bad = 1 }
    if ($3 + 0 > 255) { printf "ptxas_check: %s (%s): %d registers > 255\n", $1, $2, $3; bad = 1 }
    if (sp[1] + 0 > 0 || sp[2] + 0 > 0) printf "ptxas_check: note: %s (%s) spills %s bytes\n", $1, $2, $4
    if ($5 + 0 > maxs) { maxs = $5 + 0; maxk = $1 " (" $2 ")" }
  }
  END {
    if (n == 0) { print "ptxas_check: no kernel lines"; exit 1 }
    printf "ptxas_check: %d kernel builds, largest static shared memory %d bytes (%s), limit 49152\n", n, maxs, maxk
    exit bad
  }' "$REPORT" || status=1
exit $status
