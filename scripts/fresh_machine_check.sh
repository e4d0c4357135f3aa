#!/bin/sh
# scripts/fresh_machine_check.sh — the README's promise, tested: on a fresh Debian (a minimal bookworm
# built by debootstrap, with only make, git and ca-certificates added: what running the README's two
# commands on a clone presumes), a fresh clone passes `make demo` then `make test`. Whatever the build,
# tests, benches or recipes need beyond that must come from scripts/deps.sh.
#
# usage (as root; debootstrap from `apt-get install debootstrap`; ~6 GB of disk; network to the mirror):
#   sh scripts/fresh_machine_check.sh [ROOT] [REPO]
#     ROOT  the chroot folder (default /var/tmp/sfwb-fresh); an existing one is reused for its Debian
#           (debootstrap is skipped; the packages deps.sh installed stay, so delete ROOT for a truly
#           fresh run) but the clone is always new
#     REPO  the git repository to clone (default: this checkout's), at its HEAD
#   SFWB_FRESH_MIRROR=http://deb.debian.org/debian  SFWB_FRESH_SUITE=bookworm  SFWB_FRESH_STEP=demo|test|all
# Output: one line per stage here; everything else in ROOT.log. Exit status: that of the failing stage.
# Everything runs under `nice -n 10` (machines shared with other work). The mounts (/proc, /dev, /sys,
# /dev/shm: Open MPI needs them) live in a private mount namespace (unshare -m) and vanish with it.
set -e
ROOT="${1:-/var/tmp/sfwb-fresh}"
REPO="${2:-$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)}"
MIRROR="${SFWB_FRESH_MIRROR:-http://deb.debian.org/debian}"
SUITE="${SFWB_FRESH_SUITE:-bookworm}"
STEP="${SFWB_FRESH_STEP:-all}"
LOG="$ROOT.log"
[ "$(id -u)" -eq 0 ] || { echo "fresh_machine_check: run as root (debootstrap, chroot)" >&2; exit 2; }
command -v debootstrap > /dev/null || { echo "fresh_machine_check: apt-get install debootstrap" >&2; exit 2; }
REPO="$(cd "$REPO" && pwd)"
COMMIT="$(git -C "$REPO" rev-parse HEAD)"
: > "$LOG"
say() { echo "fresh_machine_check: $*"; echo "== $*" >> "$LOG"; }

if [ ! -f "$ROOT/etc/debian_version" ]; then
  say "debootstrap --variant=minbase $SUITE $ROOT ($MIRROR)"
  nice -n 10 debootstrap --variant=minbase "$SUITE" "$ROOT" "$MIRROR" >> "$LOG" 2>&1
fi
# a fresh Debian's sources: the release, its updates and its security updates
cat > "$ROOT/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb http://deb.debian.org/debian-security $SUITE-security main
EOF
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
mkdir -p "$ROOT/mnt/repo"

# the inside job: prerequisites of the README's commands, a fresh clone, then the two commands
cat > "$ROOT/root/fresh.sh" <<'EOF'
set -e
export DEBIAN_FRONTEND=noninteractive HOME=/root LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
echo "== apt-get install make git ca-certificates"
apt-get update -qq && apt-get install -y -qq --no-install-recommends make git ca-certificates
rm -rf /src/sfwb && mkdir -p /src
git config --global --add safe.directory '*'
git clone -q /mnt/repo /src/sfwb && cd /src/sfwb && git checkout -q "$1"
echo "== clone at $(git rev-parse HEAD)"
case "$2" in
  demo) make demo ;;
  test) make test ;;
  *) echo "== make demo"
     make demo > /root/demo.out 2>&1 || { cat /root/demo.out; exit 1; }
     cat /root/demo.out
     echo "== make test"; make test ;;
esac
EOF
say "clone of $REPO at $COMMIT; make demo && make test inside (log: $LOG)"
set +e
unshare -m --propagation private sh -c '
  set -e
  R="$1"
  mount -t proc proc "$R/proc"
  mount --rbind /dev "$R/dev"
  mount -t tmpfs -o size=2g tmpfs "$R/dev/shm"
  mount --rbind /sys "$R/sys"
  mount --bind -o ro "$2" "$R/mnt/repo"
  exec nice -n 10 chroot "$R" /bin/sh /root/fresh.sh "$3" "$4"
' sh "$ROOT" "$REPO" "$COMMIT" "$STEP" >> "$LOG" 2>&1
rc=$?
set -e
if [ $rc -eq 0 ]; then say "PASS: make demo and make test on a fresh $SUITE"
else say "FAIL (exit $rc): the end of $LOG:"; tail -n 40 "$LOG"; fi
if [ -f "$ROOT/root/demo.out" ]; then
  say "make demo printed $(grep -c '' "$ROOT/root/demo.out") lines; its deps line: $(grep '^deps:' "$ROOT/root/demo.out" | head -n 1)"
fi
exit $rc
