#!/bin/sh
# Installs the Debian packages sfwb needs, and nothing when they are all present.
set -e
PKGS="build-essential cmake pkg-config libdnnl-dev liblua5.4-dev lua5.4 libreadline-dev liblmdb-dev libpng-dev
libopenblas-dev libyaml-dev libcjson-dev libzip-dev libsentencepiece-dev sentencepiece libcairo2-dev
libopenmpi-dev openmpi-bin libzmq3-dev libssl-dev libfftw3-dev python3-torch python3-numpy python3-lmdb python3-yaml python3-omegaconf python3-sentencepiece python3-nbclient python3-jupyter-client python3-nbformat python3-zmq ffmpeg"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "deps: installing$missing"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
