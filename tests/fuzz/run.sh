#!/bin/sh
# run.sh — builds the io fuzz targets with clang + libFuzzer (ASan + UBSan) and runs each briefly
# (FUZZ_SECONDS, default 20) from seeds made by python3-torch; prints the executions each ran.
# Exit status is non-zero when a target crashes (the reproducer is left in build-fuzz/).
set -e
cd "$(dirname "$0")/../.."
B=build-fuzz
SECS=${FUZZ_SECONDS:-20}
CC=${FUZZ_CC:-clang}
if ! command -v "$CC" >/dev/null 2>&1; then echo "test-fuzz: $CC not found; skipping"; exit 0; fi
mkdir -p $B
CFLAGS="-g -O1 -std=gnu11 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Isrc $(pkg-config --cflags libcjson libpng)"
LIBS="$(pkg-config --libs libcjson libpng zlib) -lm"
COMMON="src/core/error.c src/core/dtype.c src/core/tensor.c src/io/mapfile.c src/io/safetensors.c src/io/pickle.c
src/io/zipread.c src/io/statedict.c src/io/png_read.c tests/fuzz/fuzz_stubs.c"
YAML_SRC="src/lua/lua_config.c"
YAML_LIBS="$(pkg-config --cflags --libs lua5.4 yaml-0.1)"
for t in safetensors pickle torchzip png yaml; do
  extra=""
  [ $t = yaml ] && extra="$YAML_SRC $YAML_LIBS"
  if [ ! -x $B/fuzz_$t ] || [ -n "$(find $COMMON $YAML_SRC tests/fuzz/fuzz_$t.c -newer $B/fuzz_$t 2>/dev/null)" ]; then
    echo "test-fuzz: building fuzz_$t"
    # shellcheck disable=SC2086
    $CC $CFLAGS -o $B/fuzz_$t tests/fuzz/fuzz_$t.c $COMMON $extra $LIBS
  fi
done
PY=${SFWB_PYTHON:-/usr/bin/python3}
rm -rf $B/seeds
$PY tests/fuzz/make_seeds.py $B/seeds
status=0
printf "%-12s %12s %8s %s\n" target executions seconds result > $B/summary.txt
for t in safetensors pickle torchzip png yaml; do
  mkdir -p $B/corpus_$t
  # inputs that once crashed or hung: must now pass (each runs once)
  if [ -d tests/fuzz/regress/$t ]; then
    for r in tests/fuzz/regress/$t/*; do
      if ! $B/fuzz_$t "$r" > $B/regress_$t.txt 2>&1; then echo "test-fuzz: regression $r fails"; tail -20 $B/regress_$t.txt; status=1; fi
    done
  fi
  if (cd $B && ./fuzz_$t -max_total_time="$SECS" -print_final_stats=1 -rss_limit_mb=2048 -timeout=10 \
        -max_len=65536 corpus_$t seeds/$t > log_$t.txt 2>&1); then res=ok; else res=CRASH; status=1; fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' $B/log_$t.txt | grep -o '[0-9]*$' || echo "?")
  printf "%-12s %12s %8s %s\n" "$t" "$execs" "$SECS" "$res" >> $B/summary.txt
  [ "$res" = ok ] || tail -40 $B/log_$t.txt
done
cat $B/summary.txt
exit $status
