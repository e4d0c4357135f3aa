#!/bin/sh
# bench_wan.sh — Wan DiT forward at real 1.3B block sizes: sfwb vs python3-torch in the same run (time,
# peak memory above the weights, capture overhead). Called by bench/run.sh with the build directory.
. "$(dirname "$0")/pair.sh"
LAYERS=2
[ "$SFWB_BENCH_MODE" = "quick" ] && LAYERS=1
echo "== Wan DiT forward: dim 1536, 12 heads, ffn 8960, $LAYERS layers, 1560 tokens, text 512 ($(nproc) cores, f32)"
run_pair bench_wan $LAYERS
awk 'NR == FNR { pt[$1] = $2; next } { sf[$1] = $2 }
     END {
       printf "%-28s %10s %10s %8s\n", "measure", "sfwb", "torch", "ratio";
       printf "%-28s %10.3f %10.3f %7.2fx faster\n", "forward (s, best of 3)", sf["forward_s"], pt["forward_s"], pt["forward_s"] / sf["forward_s"];
       printf "%-28s %10.1f %10.1f %7.2fx of torch\n", "peak mem. above weights MB", sf["peak_extra_mb"], pt["peak_extra_mb"], sf["peak_extra_mb"] / pt["peak_extra_mb"];
       printf "%-28s %10.3f %10s %7.1f%% overhead\n", "forward + capture all layers", sf["capture_s"], "-", 100 * (sf["capture_s"] / sf["forward_s"] - 1);
     }' "$OUT/torch.txt" "$OUT/sfwb.txt"
