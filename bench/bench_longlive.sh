#!/bin/sh
# bench_longlive.sh — LongLive's windowed long rollout with one prompt switch at a real-width 2-block DiT
# (dim 1536, ffn 8960, text 512; latent 16x26 = 104 tokens a frame, 3-frame blocks, 4 steps, window 12 + sink 3,
# 18 frames): sfwb vs python3-torch (our LongLive transcription) in the same run. Called by bench/run.sh.
. "$(dirname "$0")/pair.sh"
H=16 W=26 F=18
[ "$SFWB_BENCH_MODE" = "quick" ] && F=15
echo "== LongLive windowed rollout: dim 1536, 2 layers, latent ${H}x${W}, $F frames, window 12 + sink 3, 1 switch ($(nproc) cores, f32)"
run_pair bench_longlive $H $W $F
awk 'NR == FNR { pt[$1] = $2; next } { sf[$1] = $2 }
     END {
       printf "%-34s %10s %10s %8s\n", "measure", "sfwb", "torch", "ratio";
       printf "%-34s %10.3f %10.3f %7.2fx faster\n", "steady latent frames/s (window full)", sf["steady_fps"], pt["steady_fps"], sf["steady_fps"] / pt["steady_fps"];
       printf "%-34s %10.3f %10.3f %7.2fx faster\n", "recache over 12 frames (s)", sf["recache_s"], pt["recache_s"], pt["recache_s"] / sf["recache_s"];
       printf "%-34s %10.3f %10.3f %7.2fx faster\n", "whole rollout (s)", sf["total_s"], pt["total_s"], pt["total_s"] / sf["total_s"];
     }' "$OUT/torch.txt" "$OUT/sfwb.txt"
