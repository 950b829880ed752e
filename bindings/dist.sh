#!/bin/sh
# make dist: the loadable extension for every platform this machine can build, packed for Python and Node.
#
#   dist/packages/sqlite_prefix-VERSION-py3-none-linux_x86_64.whl     one wheel per platform (bindings/python/mkwheel.py)
#   dist/packages/sqlite_prefix-VERSION-py3-none-linux_aarch64.whl
#   dist/packages/sqlite-prefix-VERSION.tgz                           one npm package, a folder per platform:
#                                                                     prebuilt/linux-x64/prefix.so, prebuilt/linux-arm64/prefix.so
#
# linux-x86_64 is built natively (dist/prefix.so); linux-aarch64 is cross-compiled into dist-arm64 with
# Debian's gcc-aarch64-linux-gnu and the :arm64 -dev packages when they are installed (make test-arm64
# installs them as root), and skipped with a note otherwise. Nothing is downloaded: install offline with
#   pip install --no-index dist/packages/sqlite_prefix-*-linux_x86_64.whl     (in a venv on Debian)
#   npm install ./dist/packages/sqlite-prefix-*.tgz
# The npm package's loader picks prebuilt/<process.platform>-<process.arch>/. make test-bindings installs both
# packages this way and uses them.
set -u
BUILD=${1:-dist}
OUT="$BUILD/packages"
rm -rf "$OUT" && mkdir -p "$OUT" || exit 1
ver=$(sed -n 's/^#define PF_VERSION "\(.*\)"/\1/p' engine/prefix_engine.h)
py=$(command -v python3 || echo /usr/bin/python3)

# platform: "wheel-arch node-dir build-folder"
targets="x86_64 linux-x64 $BUILD"
case "$(uname -m)" in
  aarch64|arm64) targets="aarch64 linux-arm64 $BUILD" ;;
  x86_64) if command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 && [ -f /usr/lib/aarch64-linux-gnu/libopenblas.so ] &&
             [ -f /usr/lib/aarch64-linux-gnu/libutf8proc.so ] && [ -f /usr/include/sqlite3.h ]; then
            make -s BUILD=dist-arm64 CC=aarch64-linux-gnu-gcc dist-arm64/prefix.so || exit 1
            targets="$targets
aarch64 linux-arm64 dist-arm64"
          else
            echo "dist: linux-aarch64 skipped: no cross compiler or :arm64 packages (make test-arm64 installs them as root)"
          fi ;;
esac

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/package"
cp bindings/node/index.js bindings/node/index.d.ts bindings/node/package.json bindings/node/README.md "$stage/package/"
echo "$targets" | while read -r arch nodedir build; do
  [ -n "$arch" ] || continue
  so="$build/prefix.so"
  [ -f "$so" ] || { echo "dist: $so is missing" >&2; exit 1; }
  "$py" bindings/python/mkwheel.py "$so" "$OUT" >/dev/null || exit 1
  mkdir -p "$stage/package/prebuilt/$nodedir"
  cp "$so" "$stage/package/prebuilt/$nodedir/prefix.so"
  echo "dist: $nodedir: $(basename "$OUT"/sqlite_prefix-"$ver"-py3-none-linux_"$arch".whl), prebuilt/$nodedir/prefix.so"
done || exit 1
# the npm tarball, as npm pack writes it (a package/ folder), without npm
tar -czf "$OUT/sqlite-prefix-$ver.tgz" -C "$stage" --owner=0 --group=0 --mtime=2026-01-01 package || exit 1
echo "dist: $OUT/sqlite-prefix-$ver.tgz ($(tar -tzf "$OUT/sqlite-prefix-$ver.tgz" | grep -c prefix.so) platforms)"
