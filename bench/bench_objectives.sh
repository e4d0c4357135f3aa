#!/bin/sh
# bench_objectives.sh — training steps/s of each objective (dmd, sid, causvid, gan, diffusion, ode) on the tiny
# set's DiT (sfwb only: the originals need CUDA and the real models). Called by bench/run.sh.
BUILD=${1:-build}
HERE=$(dirname "$0")
STEPS=4
[ "$SFWB_BENCH_MODE" = "quick" ] && STEPS=1
echo "== training steps/s per objective: tiny DiT (dim 64, 4 layers), 6 latent frames of 8x12, f32, $(nproc) cores"
"$BUILD/sfwb" "$HERE/bench_objectives.lua" $STEPS | awk 'BEGIN { printf "%-12s %10s %16s\n", "objective", "steps/s", "steps/CPU-second" }
                                                         { printf "%-12s %10.2f %16.2f\n", $1, $2, $3 }'
