# pair.sh — sourced by the bench_*.sh that compare one sfwb script with one python3-torch script: sets
# BUILD, HERE, OUT (a temporary folder removed on exit) and defines run_pair NAME ARGS..., which runs
# bench/NAME.lua into $OUT/sfwb.txt and bench/NAME.py into $OUT/torch.txt ("key value" lines each).
BUILD=${1:-build}
HERE=$(dirname "$0")
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
run_pair() {
  name=$1
  shift
  "$BUILD/sfwb" "$HERE/$name.lua" "$@" > "$OUT/sfwb.txt" || { echo "$name.lua failed"; exit 1; }
  /usr/bin/python3 "$HERE/$name.py" "$@" > "$OUT/torch.txt" || { echo "$name.py failed"; exit 1; }
}
