#!/bin/sh
# Install the Debian packages sqlite-prefix needs, when they are missing.
# As root it runs apt-get; otherwise it says what to install and fails.
# libdqlite-dev is for the cluster tools and their tests only (make cluster); the extension does not
# link it. Extra packages (the fuzzers: clang libclang-rt-dev) are given as arguments.
PKGS="gcc make libc6-dev sqlite3 libsqlite3-dev libopenblas-dev libutf8proc-dev pkgconf libdqlite-dev $*"   # extra packages as arguments
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
  echo "deps: installing$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends $missing >/dev/null || {
    echo "deps: apt-get install$missing failed" >&2; exit 1; }
else
  echo "deps: missing Debian packages:$missing" >&2
  echo "deps: run as root, or: sudo apt-get install$missing" >&2
  exit 1
fi
