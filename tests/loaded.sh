#!/bin/sh
# make test-loaded: the checks that wait for other threads, processes or nodes (test_sqlapi, test_gguf,
# the cluster, the Python package), run at nice 19 while a build loop (make -j2 of this project into a
# scratch folder) keeps every core busy, with the build BUILD (default dist-san: the sanitizers slow them
# further). No test may depend on the machine's speed; this is how that is checked. Outside CI (it takes
# 15-30 minutes). Prints the checks' PASS/FAIL lines and "N passed, M failed".
BUILD=${1:-dist-san}
: "${PREFIX_MODEL_DIR:=../shared/models}"
export PREFIX_MODEL_DIR PF_BUILD=$BUILD
scratch=$(mktemp -d)
( while :; do make -s -j"$(nproc)" BUILD="$scratch/b" all >/dev/null 2>&1; rm -rf "$scratch/b"; done ) &
hog=$!
trap 'kill $hog 2>/dev/null; pkill -f "BUILD=$scratch/b" 2>/dev/null; rm -rf "$scratch"' EXIT
env_pre=""
if [ "$BUILD" = dist-san ]; then
  env_pre="LD_PRELOAD=$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)"
  export ASAN_OPTIONS="detect_leaks=0" UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
fi
log=$scratch/log
pass=0; fail=0
count() { p=$(grep -c '^PASS ' "$log"); f=$(grep -c '^FAIL ' "$log")
          awk '/^FAIL / { show = 1; print; next } show && /^    / { print; next } { show = 0 }' "$log"
          echo "$1: $p passed, $f failed"; pass=$((pass + p)); fail=$((fail + f)); }
for t in test_sqlapi test_gguf; do
  nice -n 19 "$BUILD/$t" >"$log" 2>&1 || grep -q '^FAIL ' "$log" || echo "FAIL $t: exited with an error: $(tail -3 "$log")" >>"$log"
  count "$t"
done
nice -n 19 sh tests/cluster.sh "$BUILD" >"$log" 2>&1
count cluster
SQLITE_PREFIX_PATH="$(pwd)/$BUILD/prefix.so" nice -n 19 env $env_pre /usr/bin/python3 bindings/python/test_sqlite_prefix.py >"$log" 2>&1
count python
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
