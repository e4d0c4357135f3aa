#!/bin/sh
# gpu_check.sh — `make gpu-check [DEVICE=cuda:0]`: validates and measures sfwb's CUDA path in one run.
#   1. finds the program (a build folder, or a pack from `make gpu-pack` copied to a GPU machine, whose
#      missing shared libraries it takes from the pack's libs.tar.xz or the machine's CUDA folders);
#   2. checks that DEVICE exists (a clear message and exit 2 otherwise);
#   3. runs every device test (build/gpu_tests.txt, written by tests/cmake/device.cmake) with
#      SFWB_TEST_DEVICE=DEVICE, one line per test, logs in <build>/gpu_check_logs/;
#   4. runs bench/gpu_check.lua: attention, GEMM, DiT forward, chunk-wise generation, a DMD step, at
#      real sizes on cuda (tiny on emu), a table on stdout and the JSON (default <build>/gpu_check.json).
# Options: --build DIR  --device DEV  --skip-tests  --tiny | --real  --out FILE  --budget SECONDS (the whole
#          run's wall clock, tests included; default 420 s, or $SFWB_GPU_CHECK_BUDGET; the measurements are
#          stopped 60 s past it, which keeps the whole run within 8 minutes)
#          --only attention,gemm,dit_forward,generation,dmd_step (a subset of the stages)
# Everything is built in memory from random weights in the real layouts: no step downloads anything.
set -u
BUILD=build
DEVICE=${DEVICE:-cuda:0}
SKIP_TESTS=0
SIZE=""
ONLY=""
OUT=""
BUDGET=${SFWB_GPU_CHECK_BUDGET:-420}
T_START=$(date +%s)
while [ $# -gt 0 ]; do
  case "$1" in
  --build) BUILD=$2; shift 2 ;;
  --device) DEVICE=$2; shift 2 ;;
  --skip-tests) SKIP_TESTS=1; shift ;;
  --tiny) SIZE=--tiny; shift ;;
  --real) SIZE=--real; shift ;;
  --out) OUT=$2; shift 2 ;;
  --budget) BUDGET=$2; shift 2 ;;
  --only) ONLY="--only $2"; shift 2 ;;
  *) echo "gpu_check: FAILED: unknown option '$1' (--build DIR --device DEV --skip-tests --tiny --real --out FILE --budget S --only STAGES)"; exit 2 ;;
  esac
done
[ -n "$OUT" ] || OUT=$BUILD/gpu_check.json
mkdir -p "$(dirname "$OUT")" || { echo "gpu_check: FAILED: cannot create the folder of $OUT"; exit 2; }
# paths as the caller meant them, before moving to the source root
case "$BUILD" in /*) ;; *) BUILD=$(pwd)/$BUILD ;; esac
case "$OUT" in /*) ;; *) OUT=$(pwd)/$OUT ;; esac
HERE=$(cd "$(dirname "$0")/.." && pwd)
cd "$HERE" || exit 2
# the source tree's Lua modules also for a program outside it (a gpu-pack: <exe>/../lua does not exist there)
LUA_PATH="$HERE/lua/?.lua;$HERE/lua/?/init.lua;;"
export LUA_PATH
SFWB=$BUILD/sfwb
if [ ! -x "$SFWB" ]; then
  echo "gpu_check: FAILED: no program at $SFWB: run 'make build' (or copy a 'make gpu-pack' folder and pass --build)"
  exit 2
fi

# ---- shared libraries: link what the loader misses from the pack (or the machine's CUDA/python folders)
LIBDIR=$BUILD/gpu-libs
if ! "$SFWB" --version >/dev/null 2>&1; then
  mkdir -p "$LIBDIR" "$BUILD/gpu-libs-all"
  [ -f "$BUILD/libs.tar.xz" ] && [ ! -f "$BUILD/gpu-libs-all/.unpacked" ] &&
    tar xJf "$BUILD/libs.tar.xz" -C "$BUILD/gpu-libs-all" && touch "$BUILD/gpu-libs-all/.unpacked"
  LD_LIBRARY_PATH=$(cd "$LIBDIR" && pwd)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  export LD_LIBRARY_PATH
  for _round in 1 2 3 4 5 6; do
    missing=$(ldd "$SFWB" 2>/dev/null | awk '/not found/ {print $1}')
    [ -z "$missing" ] && break
    for lib in $missing; do
      src=""
      if [ -f "$BUILD/gpu-libs-all/$lib" ]; then src=$(cd "$BUILD/gpu-libs-all" && pwd)/$lib
      else src=$(find /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets /opt /usr/local/lib /usr/lib \
                   -name "$lib" 2>/dev/null | head -n 1)
      fi
      if [ -z "$src" ]; then
        echo "gpu_check: FAILED: shared library $lib is missing on this machine and not in $BUILD/libs.tar.xz"
        echo "           (make gpu-pack packs every non-system library of the build)"
        exit 2
      fi
      ln -sf "$src" "$LIBDIR/$lib"
    done
  done
  if ! "$SFWB" --version >/dev/null 2>&1; then
    echo "gpu_check: FAILED: $SFWB does not start:"; "$SFWB" --version 2>&1 | head -n 5; ldd "$SFWB" | grep "not found"
    exit 2
  fi
fi

# ---- a pack's test binaries
if [ ! -d "$BUILD/tests" ] && [ -f "$BUILD/tests.tar.xz" ]; then tar xJf "$BUILD/tests.tar.xz" -C "$BUILD" || exit 2; fi

# ---- the device
if ! "$SFWB" bench/gpu_check.lua --probe "$DEVICE"; then exit 2; fi

# ---- device tests on DEVICE
TESTS_JSON=$BUILD/gpu_check_tests.json
if [ "$SKIP_TESTS" = 1 ]; then
  printf '{"run": false, "passed": 0, "failed": 0, "failed_names": []}\n' >"$TESTS_JSON"
else
  LIST=$BUILD/gpu_tests.txt
  if [ ! -f "$LIST" ]; then echo "gpu_check: FAILED: no $LIST (configure with cmake first)"; exit 2; fi
  LOGS=$BUILD/gpu_check_logs
  mkdir -p "$LOGS" "$BUILD/test-tmp"
  passed=0; failed=0; names=""
  case "$DEVICE" in cuda*) TEST_TIMEOUT=120; PAR=${SFWB_GPU_CHECK_JOBS:-4} ;; *) TEST_TIMEOUT=600; PAR=${SFWB_GPU_CHECK_JOBS:-1} ;; esac
  # the tests' PyTorch references need a python3 with torch (on a GPU machine often a venv's, not /usr/bin's)
  if [ -z "${SFWB_PYTHON:-}" ]; then
    for py in /usr/bin/python3 "$(command -v python3 2>/dev/null)"; do
      if [ -n "$py" ] && "$py" -c "import torch" 2>/dev/null; then SFWB_PYTHON=$py; export SFWB_PYTHON; break; fi
    done
  fi
  t0=$(date +%s)
  echo "device tests on $DEVICE, $PAR at a time (logs in $LOGS):"
  # one test in the background: its log, and "status seconds" in NAME.status
  run_one() {
    base=$LOGS/$(echo "$1" | tr '/' '_')
    exe=$2
    shift 2
    s0=$(date +%s)
    if SFWB_TEST_DEVICE=$DEVICE SFWB_TEST_TMP=$BUILD/test-tmp timeout "$TEST_TIMEOUT" "$BUILD/$exe" "$@" >"$base.log" 2>&1
    then st=ok; else st=FAIL; fi
    echo "$st $(($(date +%s) - s0))" >"$base.status"
  }
  # batches of PAR tests (a GPU has room for several small ones; emu tests use the cores themselves)
  report_batch() {
    for n in $1; do
      base=$LOGS/$(echo "$n" | tr '/' '_')
      read -r st secs <"$base.status" || { st=FAIL; secs=0; }
      if [ "$st" = ok ]; then passed=$((passed + 1)); else failed=$((failed + 1)); names="$names${names:+, }\"$n\""; fi
      printf '  %-4s %-30s %4ds  %s\n' "$st" "$n" "$secs" "$(tail -n 1 "$base.log")"
    done
  }
  batch=""; k=0
  while read -r name exe args; do
    [ -n "$name" ] || continue
    rm -f "$LOGS/$(echo "$name" | tr '/' '_').status"
    # shellcheck disable=SC2086 # args are words from the generated list
    run_one "$name" "$exe" $args </dev/null &
    batch="$batch $name"; k=$((k + 1))
    if [ "$k" -ge "$PAR" ]; then wait; report_batch "$batch"; batch=""; k=0; fi
  done <"$LIST"
  wait
  [ -n "$batch" ] && report_batch "$batch"
  echo "device tests: $passed passed, $failed failed ($(($(date +%s) - t0)) s)"
  printf '{"run": true, "passed": %d, "failed": %d, "failed_names": [%s], "seconds": %d}\n' \
    "$passed" "$failed" "$names" $(($(date +%s) - t0)) >"$TESTS_JSON"
fi

# ---- measurements, table, JSON, in what is left of the budget (at least a minute)
LEFT=$((BUDGET - ($(date +%s) - T_START)))
[ "$LEFT" -ge 60 ] || LEFT=60
# shellcheck disable=SC2086 # SIZE and ONLY are optional words
timeout $((LEFT + 60)) "$SFWB" bench/gpu_check.lua --device "$DEVICE" --tests "$TESTS_JSON" --out "$OUT" --budget "$LEFT" \
  $SIZE $ONLY
rc=$?
if [ "$rc" = 124 ]; then
  echo "gpu_check: FAILED: a stage ran 60 s past the budget and was stopped; $OUT holds the stages done before it"
  exit 1
elif [ "$rc" != 0 ]; then
  echo "gpu_check: FAILED (see above)"; exit 1
fi
