#!/bin/sh
# bench_train.sh — Wan DiT forward + backward at real 1.3B block width: sfwb vs python3-torch autograd in
# the same run (time, peak memory above weights and gradients), without and with per-block checkpointing.
# Called by bench/run.sh with the build directory. Peak memory: VmHWM above the RSS after a warm-up step
# (both sides), plus sfwb's own allocator peak (exact bytes, includes reuse the RSS figure cannot see).
. "$(dirname "$0")/pair.sh"
LAYERS=2
[ "$SFWB_BENCH_MODE" = "quick" ] && LAYERS=1
echo "== Wan DiT forward+backward: dim 1536, 12 heads, ffn 8960, $LAYERS layers, 1560 tokens, text 512 ($(nproc) cores, f32)"
run_pair bench_train $LAYERS
awk 'NR == FNR { pt[$1] = $2; next } { sf[$1] = $2 }
     END {
       printf "%-34s %10s %10s %8s\n", "measure", "sfwb", "torch", "ratio";
       printf "%-34s %10.3f %10.3f %7.2fx faster\n", "fwd+bwd (s, best of 2)", sf["fwdbwd_s"], pt["fwdbwd_s"], pt["fwdbwd_s"] / sf["fwdbwd_s"];
       printf "%-34s %10.3f %10.3f %7.2fx less\n", "fwd+bwd CPU time (s, all threads)", sf["fwdbwd_cpu_s"], pt["fwdbwd_cpu_s"], pt["fwdbwd_cpu_s"] / sf["fwdbwd_cpu_s"];
       printf "%-34s %10.1f %10.1f %7.2fx of torch\n", "peak memory above weights+grads MB", sf["peak_extra_mb"], pt["peak_extra_mb"], sf["peak_extra_mb"] / pt["peak_extra_mb"];
       printf "%-34s %10.3f %10.3f %7.2fx faster\n", "checkpointed fwd+bwd (s)", sf["ckpt_fwdbwd_s"], pt["ckpt_fwdbwd_s"], pt["ckpt_fwdbwd_s"] / sf["ckpt_fwdbwd_s"];
       printf "%-34s %10.1f %10.1f %7.2fx of torch\n", "checkpointed peak memory MB", sf["ckpt_peak_extra_mb"], pt["ckpt_peak_extra_mb"], sf["ckpt_peak_extra_mb"] / pt["ckpt_peak_extra_mb"];
       printf "%-34s %10.1f %10.1f\n", "sfwb allocator peak MB (plain/ckpt)", sf["alloc_peak_mb"], sf["ckpt_alloc_peak_mb"];
     }' "$OUT/torch.txt" "$OUT/sfwb.txt"
