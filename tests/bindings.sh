#!/bin/sh
# make test-bindings: the Python package with Debian's python3 and the Node package with better-sqlite3,
# built from the npm registry into dist-node/ on first use (about 2 minutes: it compiles SQLite). As root,
# missing Debian packages are installed first. Prints PASS/FAIL lines and "N passed, M failed".
BUILD=${1:-dist}
: "${PREFIX_MODEL_DIR:=../shared/models}"
export PREFIX_MODEL_DIR
export SQLITE_PREFIX_PATH="$(pwd)/$BUILD/prefix.so"
extra="python3 python3-venv g++"
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

# make dist's packages (bindings/dist.sh: a wheel per platform, one npm package with a folder per platform)
sh bindings/dist.sh "$BUILD" >"$log" 2>&1 || echo "FAIL dist: $(tail -3 "$log")"
pk="$BUILD/packages"
# the wheel, installed offline into a venv of that Python and used from another folder without
# SQLITE_PREFIX_PATH: the bundled extension is found
wd=$(mktemp -d)
if cp "$pk"/sqlite_prefix-*-linux_$(uname -m).whl "$wd/" >"$log" 2>&1 && "$py" -m venv "$wd/venv" >>"$log" 2>&1 &&
   "$wd/venv/bin/pip" install -q --no-index "$wd"/sqlite_prefix-*.whl >>"$log" 2>&1 &&
   out=$(cd "$wd" && env -u SQLITE_PREFIX_PATH "$wd/venv/bin/python" -c "import sqlite3, sqlite_prefix
db = sqlite3.connect(':memory:'); sqlite_prefix.load(db)
print(db.execute('SELECT prefix_version()').fetchone()[0], sqlite_prefix.loadable_path().startswith('$wd/venv/'))" 2>&1) &&
   [ "$out" = "$(sed -n 's/^#define PF_VERSION "\(.*\)"/\1/p' engine/prefix_engine.h) True" ]; then
  echo "PASS python: the wheel ($(basename "$wd"/sqlite_prefix-*.whl)) installs offline into a venv and loads its bundled extension" >"$log"
else echo "FAIL python: wheel: ${out:-$(tail -3 "$log")}" >>"$log"; fi
rm -rf "$wd"
count "python wheel"

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

# the npm package of make dist, installed offline with npm into an empty project beside better-sqlite3: its
# loader picks prebuilt/<platform>-<arch>/ and the extension loads
nd=$(mktemp -d); root=$(pwd)
echo '{"name": "dist-check", "private": true}' >"$nd/package.json"
if (cd "$nd" && npm install --offline --no-audit --no-fund "$root/$pk"/sqlite-prefix-*.tgz) >"$log" 2>&1 &&
   out=$(cd "$nd" && env -u SQLITE_PREFIX_PATH node -e "
const prefix = require('sqlite-prefix'), Database = require('$root/$nm');
const db = new Database(':memory:'); prefix.load(db);
console.log(db.prepare('SELECT prefix_version() AS v').get().v, prefix.getLoadablePath().endsWith('prebuilt/' + process.platform + '-' + process.arch + '/prefix.so'));" 2>&1) &&
   [ "$out" = "$(sed -n 's/^#define PF_VERSION "\(.*\)"/\1/p' engine/prefix_engine.h) true" ]; then
  echo "PASS node: make dist's npm package ($(tar -tzf "$pk"/sqlite-prefix-*.tgz | grep -c 'prebuilt/.*prefix.so') platforms) installs offline and loads its $(node -p 'process.platform + "-" + process.arch') build" >"$log"
else echo "FAIL node: dist package: ${out:-$(tail -3 "$log")}" >"$log"; fi
rm -rf "$nd"
count "node dist package"
rm -f "$log"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
