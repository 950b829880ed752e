#!/bin/sh
# prefix_train's progress on stderr as a user sees it: a bar redrawn in place on a terminal (by default), one
# line per 10% without carriage returns in a log, nothing by default when stderr is not a terminal.
# Prints PASS/FAIL lines (tests/run.sh counts them). Usage: progress.sh BUILD
BUILD=${1:-dist}
: "${PREFIX_MODEL_DIR:=../shared/models}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
env_pre=""
[ "$BUILD" = dist-san ] && env_pre="LD_PRELOAD=$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so) ASAN_OPTIONS=detect_leaks=0"
sql() {   # $1: the options of prefix_train
  printf ".load %s/prefix\n.output /dev/null\nSELECT prefix_model_load('m', '%s/stories260K.gguf');\nCREATE TABLE e(p, q);\nINSERT INTO e VALUES ('Q', 'A.');\nSELECT length(prefix_train('m', 'SELECT p, q FROM e', '%s'));\n" \
    "$BUILD" "$PREFIX_MODEL_DIR" "$1"
}
sql '{"max_steps": 40, "progress": true}' >"$tmp/on.sql"
sql '{"max_steps": 40}' >"$tmp/auto.sql"
env $env_pre sqlite3 :memory: <"$tmp/on.sql" 2>"$tmp/on.err" >/dev/null
n=$(grep -c '^prefix_train: step [0-9]*/40 ([0-9]*%) epoch' "$tmp/on.err")
if [ "$n" = 10 ] && ! grep -q "$(printf '\r')" "$tmp/on.err"; then echo "PASS progress: \"progress\": true into a log gives one line per 10% (10 lines), no carriage return"
else echo "FAIL progress: log lines: $n, $(head -c 300 "$tmp/on.err")"; fi
sql '{"lr": 1e-9, "progress": true}' >"$tmp/stop.sql"
env $env_pre sqlite3 :memory: <"$tmp/stop.sql" 2>"$tmp/stop.err" >/dev/null
if tail -n 1 "$tmp/stop.err" | grep -q '^prefix_train: step 150/800 (18%) epoch 150 loss .* stopped: plateau'; then
  echo "PASS progress: a run the checks end early says so on its last line"
else echo "FAIL progress: the last line of an early stop: $(tail -n 1 "$tmp/stop.err" | head -c 300)"; fi
env $env_pre sqlite3 :memory: <"$tmp/auto.sql" 2>"$tmp/auto.err" >/dev/null
[ ! -s "$tmp/auto.err" ] && echo "PASS progress: by default nothing is printed when stderr is not a terminal" || echo "FAIL progress: printed $(head -c 200 "$tmp/auto.err")"
# a terminal: script(1) gives the shell a pseudo-terminal
if command -v script >/dev/null 2>&1; then
  script -qec "env $env_pre sqlite3 :memory: <$tmp/auto.sql" "$tmp/tty.log" >/dev/null 2>&1
  if grep -q "$(printf '\r')prefix_train \[" "$tmp/tty.log" && grep -q 'step 40/40' "$tmp/tty.log"; then
    echo "PASS progress: on a terminal the bar is drawn by default, redrawn in place"
  else echo "FAIL progress: terminal output: $(head -c 300 "$tmp/tty.log" | od -c | head -5)"; fi
else echo "# progress: script(1) is missing: the terminal case is not run"; fi
