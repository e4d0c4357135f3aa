#!/bin/sh
# bench_dmd_step.sh — the DMD generator step with the KV cache's in-place gradient path (the original's,
# default) vs detach_kv_cache, same run and draws: time and allocator peak (issue: <= 1.1x of detached).
BUILD=${1:-build}
HERE=$(dirname "$0")
REPS=3
[ "$SFWB_BENCH_MODE" = "quick" ] && REPS=1
echo "== DMD generator step: in-place KV cache gradient vs detach_kv_cache (dim 512, 4 layers, 21 frames x 16 tokens, $(nproc) cores, f32)"
"$BUILD/sfwb" "$HERE/bench_dmd_step.lua" $REPS | awk '{ v[$1] = $2 }
  END {
    printf "%-28s %10s %10s %8s\n", "measure", "in-place", "detached", "ratio";
    printf "%-28s %10.3f %10.3f %7.3fx\n", "step time (s, best)", v["inplace_step_s"], v["detach_step_s"], v["inplace_step_s"] / v["detach_step_s"];
    printf "%-28s %10.3f %10.3f %7.3fx\n", "step CPU time (s, best)", v["inplace_step_cpu_s"], v["detach_step_cpu_s"], v["inplace_step_cpu_s"] / v["detach_step_cpu_s"];
    printf "%-28s %10.1f %10.1f %7.3fx\n", "allocator peak MB", v["inplace_peak_mb"], v["detach_peak_mb"], v["inplace_peak_mb"] / v["detach_peak_mb"];
    printf "%-28s %10.6g %10.6g\n", "loss (same draws)", v["inplace_loss"], v["detach_loss"];
  }'
