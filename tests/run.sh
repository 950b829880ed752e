#!/bin/sh
# Run every test: the engine's C tests (dist/test_*) and the SQL tests
# (tests/sql/*.test through the sqlite3 shell). Ends with "N passed, M failed".
# A subset, and an emulator (tests/arm64.sh): PF_TESTS (C tests, e.g. "test_engine test_quant:int8"),
# PF_SQL_TESTS (e.g. "tokenize generate"), PF_SHELL_TESTS (default "layers install progress cluster"), PF_RUN (a
# command the C tests run under, e.g. qemu-aarch64); set but empty: none of that kind. The sqlite3 on PATH
# is the shell used.
# PF_JOBS (default: the number of cores) test files run at once, the longest first, each with cores/PF_JOBS
# compute threads unless PREFIX_THREADS is set; each file's lines are printed in the usual order with its time.
# Every file has its own $TMP, so no two share files.
if [ "${1-}" = "--item" ]; then BUILD=$PF_BUILD; else BUILD=${1:-dist}; fi
export PF_BUILD=$BUILD
: "${PREFIX_MODEL_DIR:=../shared/models}"
: "${PREFIX_DATA_DIR:=../shared/data}"
export PREFIX_MODEL_DIR PREFIX_DATA_DIR

# Under a sanitizer build the shell must preload the runtime to load the .so.
SHELL_ENV=""
if [ "$BUILD" = "dist-san" ]; then
  SHELL_ENV="LD_PRELOAD=$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)"
  export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:exitcode=99"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:exitcode=98"
  export LSAN_OPTIONS="suppressions=$(pwd)/tests/lsan.supp:print_suppressions=0"
fi

# One test file: run_item KIND NAME DIR prints the file's PASS/FAIL lines and "name: P passed, F failed (S s)";
# its last line is "P F" (read by the caller, not printed). DIR is the file's own scratch folder.
run_item() {
  kind=$1; tt=$2; dir=$3
  log=$dir/log
  t0=$(date +%s)
  p=0; f=0
  case $kind in
  c)  # NAME or NAME:ARG,ARG (test_quant takes the parts to run)
    t=${tt%%:*}; args=""
    [ "$t" != "$tt" ] && args=$(echo "${tt#*:}" | tr ',' ' ')
    [ -f "$t" ] || { echo "0 0"; return; }
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
    label=$(basename "$t") ;;
  sql)
    # A .test file: a "-- setup" block, then cases
    #   -- test: name
    #   SQL ...
    #   -- expect
    #   exact output (stdout and stderr; "near line N" is removed from errors)
    file=$tt
    work=$dir/work   # $TMP in the tests: a folder for files they make
    mkdir -p "$work"
    awk -v dir="$dir" -v build="$BUILD" -v models="$PREFIX_MODEL_DIR" -v work="$work" -v data="$PREFIX_DATA_DIR" '
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
    while [ -f "$dir/case_$i.sql" ]; do
      name="$(basename "$file" .test): $(cat "$dir/case_$i.name")"
      env $SHELL_ENV sqlite3 -batch :memory: <"$dir/case_$i.sql" 2>&1 |
        sed -e 's/^\(Parse\|Runtime\) error near line [0-9]*: /Error: /' -e 's/^Error: near line [0-9]*: /Error: /' >"$dir/out"
      if diff "$dir/case_$i.exp" "$dir/out" >"$dir/diff" 2>&1; then
        p=$((p + 1))
      else
        f=$((f + 1))
        echo "FAIL $name"; sed 's/^/    /' "$dir/diff" | head -20
      fi
      i=$((i + 1))
    done
    label=$(basename "$file") ;;
  sh)
    # shell-level checks: no call cycle between files and no SQLite in the engine (layers.sh); make install, the
    # static library through pkg-config, examples/c, the installed extension's dependencies (install.sh); the
    # progress output on a terminal and in a log (progress.sh); the dqlite cluster of prefix-node and
    # prefix-worker processes on 127.0.0.1 (cluster.sh)
    sh "tests/$tt.sh" "$BUILD" >"$log" 2>&1
    p=$(grep -c '^PASS ' "$log"); f=$(grep -c '^FAIL ' "$log")
    # a FAIL line and the indented lines after it (why it failed), and notes
    awk '/^(FAIL|#) / { show = /^FAIL /; print; next } show && /^    / { print; next } { show = 0 }' "$log"
    label=$tt ;;
  esac
  echo "$label: $p passed, $f failed ($(( $(date +%s) - t0 )) s)"
  echo "$p $f"
}

# xargs runs this script once per file: run.sh --item RESULTS N KIND NAME
if [ "${1-}" = "--item" ]; then
  d=$2/$3
  mkdir -p "$d"
  run_item "$4" "$5" "$d" >"$d.lines" 2>&1
  rm -rf "$d"
  exit 0
fi

# the files, in the order their lines are printed: C tests, SQL tests, shell checks
n=0
items=""
add() { n=$((n + 1)); items="$items$n $1 $2
"; }
if [ -n "${PF_TESTS+set}" ]; then for t in $PF_TESTS; do add c "$BUILD/$t"; done
else for t in "$BUILD"/test_*; do [ -f "$t" ] && add c "$t"; done; fi
if [ -n "${PF_SQL_TESTS+set}" ]; then for t in $PF_SQL_TESTS; do add sql "tests/sql/$t.test"; done
else for t in tests/sql/*.test; do add sql "$t"; done; fi
for t in ${PF_SHELL_TESTS-layers install progress cluster}; do add sh "$t"; done

# the order they start in: the longest first (the cluster, the examples, training), so two cores end together
slow="cluster examples.test schedule.test train.test test_quant paper.test test_families"
order=$(printf '%s' "$items" | awk -v slow="$slow" '
  { name = $3; sub(/.*\//, "", name); sub(/:.*/, "", name); r = 1000 + NR
    k = split(slow, s, " "); for (j = 1; j <= k; j++) if (s[j] == name) r = j
    print r, $0 }' | sort -n | cut -d' ' -f2-)

cores=$(nproc 2>/dev/null || echo 1)
jobs=${PF_JOBS:-$cores}
# files at once share the cores: each gets cores/jobs compute threads unless PREFIX_THREADS says otherwise (the
# tests of more threads ask for them by the 'threads' option; spinning workers on a busy core only waste it)
[ -z "${PREFIX_THREADS-}" ] && [ "$jobs" -gt 1 ] && PREFIX_THREADS=$((cores / jobs > 0 ? cores / jobs : 1)) && export PREFIX_THREADS
res=$(mktemp -d)
printf '%s\n' "$order" | grep . | xargs -P "$jobs" -L 1 sh "$0" --item "$res"
pass=0
fail=0
i=1
while [ $i -le $n ]; do
  if [ -f "$res/$i.lines" ]; then
    sed '$d' "$res/$i.lines"
    set -- $(tail -1 "$res/$i.lines")
    pass=$((pass + ${1:-0})); fail=$((fail + ${2:-1}))
  else
    echo "FAIL test file $i of $n did not run"; fail=$((fail + 1))
  fi
  i=$((i + 1))
done
rm -rf "$res"
# Every SQL function and module the extension registers has a SQL test.
names=$(printf '.load %s/prefix\nSELECT DISTINCT name FROM pragma_function_list WHERE name LIKE '"'"'prefix%%'"'"' UNION SELECT name FROM pragma_module_list WHERE name LIKE '"'"'prefix%%'"'"';\n' "$BUILD" |
        env $SHELL_ENV sqlite3 -batch :memory: 2>&1)
[ -n "${PF_SQL_TESTS+set}" ] && names=""   # a subset of the SQL tests: this check is the whole suite's
for nm in $names; do
  if grep -q "$nm" tests/sql/*.test; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL $nm has no SQL test"; fi
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
