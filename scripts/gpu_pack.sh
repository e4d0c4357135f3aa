#!/bin/sh
# gpu_pack.sh BUILD — `make gpu-pack`: what a GPU machine without sfwb's build tools needs to run
# `make gpu-check` there, in BUILD/gpu-pack (well under the 64 MB a lent GPU machine receives beside the
# source tree): the program, the device-test binaries (tests.tar.xz), the device-test list, and libs.tar.xz with every
# shared library the build links that is neither glibc nor CUDA's (the machine's CUDA 13 runtime, cuBLAS and
# NCCL are used; scripts/gpu_check.sh links from the pack only the libraries the machine lacks).
# On the GPU machine, from the source root:  sh scripts/gpu_check.sh --build build/gpu-pack --device cuda:0
set -eu
BUILD=${1:-build}
PACK=$BUILD/gpu-pack
LIST=$BUILD/gpu_tests.txt
[ -x "$BUILD/sfwb" ] && [ -f "$LIST" ] || { echo "gpu_pack: build first (make build)"; exit 2; }
rm -rf "$PACK"
mkdir -p "$PACK/tests" "$PACK/libs"
cp "$BUILD/sfwb" "$LIST" "$PACK/"
bins="$BUILD/sfwb"
while read -r _name exe _args; do
  case "$exe" in tests/*) cp "$BUILD/$exe" "$PACK/tests/"; bins="$bins $BUILD/$exe" ;; esac
done <"$LIST"
# every resolved library of the binaries, less glibc's own and CUDA's
for b in $bins; do ldd "$b"; done | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u |
  grep -Ev '/(libc|libm|libdl|libpthread|librt|libresolv|ld-linux[^/]*)\.so|/libcuda|/libcudart|/libcublas|/libnccl' |
  while read -r lib; do cp -L "$lib" "$PACK/libs/"; done
tar cf - -C "$PACK/libs" . | xz -6 -T 2 >"$PACK/libs.tar.xz"
tar cf - -C "$PACK" tests | xz -6 -T 2 >"$PACK/tests.tar.xz" # each test binary holds the whole library
rm -rf "$PACK/libs" "$PACK/tests"
echo "gpu_pack: $PACK ($(du -sh "$PACK" | cut -f1)): carry it to the GPU machine and run there"
echo "          sh scripts/gpu_check.sh --build $PACK --device cuda:0"
