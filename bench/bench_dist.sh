#!/bin/sh
# bench_dist.sh — sharded (FSDP FULL_SHARD) vs replicated DMD training step, 2 MPI ranks on the CPU
# (bench/bench_fsdp.lua), and sfwb.train.plan's per-rank memory for the originals' shipped configs
# (bench/plan_configs.lua). Called by bench/run.sh with the build directory.
BUILD=${1:-build}
HERE=$(dirname "$0")
LAYERS=4
[ "$SFWB_BENCH_MODE" = "quick" ] && LAYERS=2
if command -v mpirun > /dev/null; then
  echo "== DMD step, sharded vs replicated: 2 ranks on the CPU ($(nproc) cores)"
  mpirun --allow-run-as-root --oversubscribe -np 2 "$BUILD/sfwb" "$HERE/bench_fsdp.lua" $LAYERS || exit 1
else
  echo "bench_dist: no mpirun, sharded step skipped"
fi
echo
echo "== sfwb.train.plan for the originals' shipped configs"
"$BUILD/sfwb" "$HERE/plan_configs.lua"
