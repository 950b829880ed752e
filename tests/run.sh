#!/bin/sh
# Run every test: the engine's C tests (dist/test_*) and the SQL tests
# (tests/sql/*.test through the sqlite3 shell). Ends with "N passed, M failed".
# A subset, and an emulator (tests/arm64.sh): PF_TESTS (C tests, e.g. "test_engine test_quant:int8"),
# PF_SQL_TESTS (e.g. "tokenize generate"), PF_SHELL_TESTS (default "layers install progress cluster"), PF_RUN (a
# command the C tests run under, e.g. qemu-aarch64); set but empty: none of that kind. The sqlite3 on PATH
# is the shell used.
BUILD=${1:-dist}
export PF_BUILD=$BUILD
: "${PREFIX_MODEL_DIR:=../shared/models}"
: "${PREFIX_DATA_DIR:=../shared/data}"
export PREFIX_MODEL_DIR PREFIX_DATA_DIR
pass=0
fail=0
log=$(mktemp)

# Under a sanitizer build the shell must preload the runtime to load the .so.
SHELL_ENV=""
if [ "$BUILD" = "dist-san" ]; then
  SHELL_ENV="LD_PRELOAD=$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)"
  export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:exitcode=99"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:exitcode=98"
  export LSAN_OPTIONS="suppressions=$(pwd)/tests/lsan.supp:print_suppressions=0"
fi

ctests=""   # NAME or NAME:ARG,ARG (test_quant takes the parts to run)
if [ -n "${PF_TESTS+set}" ]; then for n in $PF_TESTS; do ctests="$ctests $BUILD/$n"; done; else ctests=$(ls "$BUILD"/test_* 2>/dev/null); fi
sqltests=""
if [ -n "${PF_SQL_TESTS+set}" ]; then for n in $PF_SQL_TESTS; do sqltests="$sqltests tests/sql/$n.test"; done; else sqltests=$(ls tests/sql/*.test); fi
for tt in $ctests; do
  t=${tt%%:*}; args=""
  [ "$t" != "$tt" ] && args=$(echo "${tt#*:}" | tr ',' ' ')
  [ -f "$t" ] || continue
  t0=$(date +%s)
  ${PF_RUN:-} "$t" $args >"$log" 2>&1
  rc=$?
  p=$(grep -c '^PASS ' "$log")
  f=$(grep -c '^FAIL ' "$log")
  grep '^FAIL ' "$log"
  if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then
    echo "FAIL $(basename "$t"): exited with $rc"; tail -20 "$log"; f=1
  elif [ $rc -ne 0 ]; then
    tail -5 "$log" | grep -v '^PASS' | grep -v '^FAIL'
  fi
  echo "$(basename "$t"): $p passed, $f failed ($(( $(date +%s) - t0 )) s)"
  pass=$((pass + p)); fail=$((fail + f))
done

# SQL tests. A .test file: a "-- setup" block, then cases
#   -- test: name
#   SQL ...
#   -- expect
#   exact output (stdout and stderr; "near line N" is removed from errors)
tmp=$(mktemp -d)
work=$(mktemp -d)   # $TMP in the tests: a folder for files they make
for file in $sqltests; do
  t0=$(date +%s); p0=$pass; f0=$fail
  rm -f "$tmp"/case_*
  awk -v dir="$tmp" -v build="$BUILD" -v models="$PREFIX_MODEL_DIR" -v work="$work" -v data="$PREFIX_DATA_DIR" '
    function sub_vars(s) { gsub(/\$BUILD/, build, s); gsub(/\$MODELS/, models, s); gsub(/\$TMP/, work, s); gsub(/\$DATA/, data, s); return s }
    /^-- setup$/ { mode = "setup"; next }
    /^-- test: / { n++; mode = "sql"; name = substr($0, 10); print name > (dir "/case_" n ".name");
                   printf "%s", setup > (dir "/case_" n ".sql"); printf "" > (dir "/case_" n ".exp"); next }
    /^-- expect$/ { mode = "exp"; next }
    mode == "setup" { setup = setup sub_vars($0) "\n"; next }
    mode == "sql" { print sub_vars($0) >> (dir "/case_" n ".sql"); next }
    mode == "exp" { print sub_vars($0) >> (dir "/case_" n ".exp"); next }
  ' "$file"
  i=1
  while [ -f "$tmp/case_$i.sql" ]; do
    name="$(basename "$file" .test): $(cat "$tmp/case_$i.name")"
    env $SHELL_ENV sqlite3 -batch :memory: <"$tmp/case_$i.sql" 2>&1 |
      sed -e 's/^\(Parse\|Runtime\) error near line [0-9]*: /Error: /' -e 's/^Error: near line [0-9]*: /Error: /' >"$tmp/out"
    if diff "$tmp/case_$i.exp" "$tmp/out" >"$tmp/diff" 2>&1; then
      pass=$((pass + 1))
    else
      fail=$((fail + 1))
      echo "FAIL $name"; sed 's/^/    /' "$tmp/diff" | head -20
    fi
    i=$((i + 1))
  done
  echo "$(basename "$file" .test).test: $((pass - p0)) passed, $((fail - f0)) failed ($(( $(date +%s) - t0 )) s)"
done
# shell-level checks: no call cycle between files and no SQLite in the engine (layers.sh); make install, the static library through pkg-config, examples/c, the installed
# extension's dependencies (install.sh); the progress output on a terminal and in a log (progress.sh);
# the dqlite cluster of prefix-node and prefix-worker processes on 127.0.0.1 (cluster.sh)
for t in ${PF_SHELL_TESTS-layers install progress cluster}; do
  t0=$(date +%s)
  sh "tests/$t.sh" "$BUILD" >"$log" 2>&1
  p=$(grep -c '^PASS ' "$log"); f=$(grep -c '^FAIL ' "$log")
  # a FAIL line and the indented lines after it (why it failed), and notes
  awk '/^(FAIL|#) / { show = /^FAIL /; print; next } show && /^    / { print; next } { show = 0 }' "$log"
  echo "$t: $p passed, $f failed ($(( $(date +%s) - t0 )) s)"
  pass=$((pass + p)); fail=$((fail + f))
done
# Every SQL function and module the extension registers has a SQL test.
names=$(printf '.load %s/prefix\nSELECT DISTINCT name FROM pragma_function_list WHERE name LIKE '"'"'prefix%%'"'"' UNION SELECT name FROM pragma_module_list WHERE name LIKE '"'"'prefix%%'"'"';\n' "$BUILD" |
        env $SHELL_ENV sqlite3 -batch :memory: 2>&1)
[ -n "${PF_SQL_TESTS+set}" ] && names=""   # a subset of the SQL tests: this check is the whole suite's
for n in $names; do
  if grep -q "$n" tests/sql/*.test; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL $n has no SQL test"; fi
done
rm -rf "$tmp" "$work" "$log"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
