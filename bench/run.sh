#!/bin/sh
# run.sh — `make bench`: runs every bench/bench_*.sh with the build directory as its argument, so each
# part of sfwb plugs in its own benchmark by adding a file (no edits here). SFWB_BENCH_MODE=quick
# asks the scripts that support it for a short run.
BUILD=${1:-build}
HERE=$(dirname "$0")
status=0
for s in "$HERE"/bench_*.sh; do
  [ -f "$s" ] || continue
  sh "$s" "$BUILD" || { echo "bench: $s failed"; status=1; }
  echo
done
exit $status
