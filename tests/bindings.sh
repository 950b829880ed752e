#!/bin/sh
# make test-bindings: the Python package with Debian's python3 and the Node package with better-sqlite3,
# built from the npm registry into dist-node/ on first use (about 2 minutes: it compiles SQLite). As root,
# missing Debian packages are installed first. Prints PASS/FAIL lines and "N passed, M failed".
BUILD=${1:-dist}
: "${PREFIX_MODEL_DIR:=../shared/models}"
export PREFIX_MODEL_DIR
export SQLITE_PREFIX_PATH="$(pwd)/$BUILD/prefix.so"
extra="python3 g++"
command -v node >/dev/null 2>&1 || extra="$extra nodejs npm"
sh tests/deps.sh $extra || exit 1
log=$(mktemp)
pass=0; fail=0
count() { p=$(grep -c '^PASS ' "$log"); f=$(grep -c '^FAIL ' "$log"); grep -E '^(FAIL|#) ' "$log"; echo "$1: $p passed, $f failed"
          pass=$((pass + p)); fail=$((fail + f)); }

# Python: Debian's interpreter (/usr/bin/python3), whose sqlite3 can load extensions
py=/usr/bin/python3
[ -x "$py" ] || py=$(command -v python3)
"$py" bindings/python/test_sqlite_prefix.py >"$log" 2>&1 || grep -q '^FAIL ' "$log" || echo "FAIL python: the test exited with an error: $(tail -3 "$log")" >>"$log"
count "python ($py)"

# Node: better-sqlite3 from the npm registry, compiled here (node-gyp with the system's Node headers)
nm=dist-node/node_modules/better-sqlite3
if [ ! -f "$nm/build/Release/better_sqlite3.node" ]; then
  [ -f /usr/include/node/node_api.h ] || sh tests/deps.sh libnode-dev || true
  mkdir -p dist-node
  ( cd dist-node && [ -f package.json ] || echo '{"name": "sqlite-prefix-test", "private": true}' > package.json
    [ -f /usr/include/node/node_api.h ] && export npm_config_nodedir=/usr
    npm install --no-audit --no-fund --ignore-scripts better-sqlite3@12 >npm.log 2>&1 &&
    { npm install-scripts approve better-sqlite3 >>npm.log 2>&1 || true; } &&
    npm rebuild better-sqlite3 >>npm.log 2>&1 ) || echo "# npm install/rebuild of better-sqlite3 failed: see dist-node/npm.log"
fi
BETTER_SQLITE3="$(pwd)/$nm" node bindings/node/test.js >"$log" 2>&1 || grep -q '^FAIL ' "$log" || echo "FAIL node: the test exited with an error: $(tail -3 "$log")" >>"$log"
count "node ($(node --version))"
rm -f "$log"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
