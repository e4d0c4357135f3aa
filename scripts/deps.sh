#!/bin/sh
# Installs the Debian packages sfwb needs (build, tests, benches, recipes), and nothing when they are all
# present. apt's output goes to a log file; the terminal gets one line saying what is installed.
# tests/app/deps_check.py checks that every Python module the tests and benches import comes from here.
set -e
PKGS="build-essential cmake pkg-config libdnnl-dev liblua5.4-dev lua5.4 libreadline-dev liblmdb-dev libpng-dev
libopenblas-dev libyaml-dev libcjson-dev libzip-dev libsentencepiece-dev sentencepiece libcairo2-dev
libopenmpi-dev openmpi-bin libzmq3-dev libssl-dev libfftw3-dev python3-torch python3-numpy python3-lmdb python3-yaml
python3-omegaconf python3-sentencepiece python3-nbclient python3-jupyter-client python3-nbformat python3-zmq python3-pil ffmpeg
lua-check"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
LOG="${SFWB_DEPS_LOG:-build/deps-apt.log}"
mkdir -p "$(dirname "$LOG")"
echo "deps: installing$missing (apt output in $LOG)"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing; } > "$LOG" 2>&1; then
  echo "deps: apt-get failed; the last lines of $LOG:" >&2
  tail -n 20 "$LOG" >&2
  exit 1
fi
