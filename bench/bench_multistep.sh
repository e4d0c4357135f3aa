#!/bin/sh
# bench_multistep.sh — a 50-step UniPC sample (classifier-free guidance: 100 forwards) of a real-width 2-block
# Wan DiT: sfwb vs python3-torch in the same run. Called by bench/run.sh with the build directory.
. "$(dirname "$0")/pair.sh"
LAYERS=2
STEPS=50
# the latent frame: 60x104 (1560 tokens, Wan's 480x832); SFWB_BENCH_LATENT=30x52 (390 tokens) for a loaded machine
HW=${SFWB_BENCH_LATENT:-60x104}
H=${HW%x*}
W=${HW#*x}
[ "$SFWB_BENCH_MODE" = "quick" ] && STEPS=5
echo "== UniPC sample: $STEPS steps with guidance, dim 1536, 12 heads, ffn 8960, $LAYERS layers, latent $HW ($((H * W / 4)) tokens), text 512 ($(nproc) cores, f32)"
run_pair bench_multistep $LAYERS $STEPS $H $W
for f in sfwb torch; do # the figures are for the steps asked, or the bench fails
  ran=$(awk '$1 == "steps_run" { print $2 }' "$OUT/$f.txt")
  [ "$ran" = "$STEPS" ] || { echo "bench_multistep: $f ran ${ran:-no} steps, not $STEPS"; exit 1; }
done
awk 'NR == FNR { pt[$1] = $2; next } { sf[$1] = $2 }
     END {
       printf "%-34s %10s %10s %8s\n", "measure", "sfwb", "torch", "ratio";
       printf "%-34s %10.2f %10.2f %7.2fx faster\n", "sample (s)", sf["sample_s"], pt["sample_s"], pt["sample_s"] / sf["sample_s"];
       printf "%-34s %10.2f %10.2f %7.2fx less\n", "sample CPU time (s, all threads)", sf["sample_cpu_s"], pt["sample_cpu_s"], pt["sample_cpu_s"] / sf["sample_cpu_s"];
       printf "%-34s %10.3f %10.3f\n", "steps/s", sf["steps_per_s"], pt["steps_per_s"];
       printf "%-34s %10d %10d\n", "UniPC steps run (2 forwards each)", sf["steps_run"], pt["steps_run"];
       printf "%-34s %10.6f %10.6f\n", "mean abs latent (own random weights)", sf["latent_absmean"], pt["latent_absmean"];
     }' "$OUT/torch.txt" "$OUT/sfwb.txt"
