#!/bin/sh
# make install / uninstall, the static library through pkg-config, and the installed extension, checked as a
# packager and an app would use them. Prints PASS/FAIL lines (tests/run.sh counts them). Usage: install.sh BUILD
BUILD=${1:-dist}
: "${PREFIX_MODEL_DIR:=../shared/models}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ok() { echo "PASS install: $1"; }
bad() { echo "FAIL install: $1"; }
SAN=""
[ "$BUILD" = dist-san ] && SAN="-fsanitize=address,undefined"

make -s install BUILD="$BUILD" PREFIX=/usr DESTDIR="$tmp/root" >"$tmp/log" 2>&1 || { bad "make install failed: $(tail -3 "$tmp/log")"; exit 0; }
want="usr/bin/prefix-mkmodel usr/include/sqlite-prefix/metrics.h usr/include/sqlite-prefix/prefix_engine.h
usr/include/sqlite-prefix/sqlite_prefix.h usr/include/sqlite-prefix/train.h usr/lib/libsqlite_prefix.a
usr/lib/pkgconfig/sqlite-prefix.pc usr/lib/sqlite-prefix/prefix.so usr/share/sqlite-prefix/schema.sql"
got=$(cd "$tmp/root" && find . -type f | sed 's|^\./||' | sort | tr '\n' ' ')
[ "$got" = "$(echo $want | tr ' ' '\n' | sort | tr '\n' ' ')" ] && ok "make install (PREFIX, DESTDIR) writes the extension, the static library, the headers, the pkg-config file, the model tool and sql/schema.sql" \
  || bad "installed files: $got"

# an app linking SQLite and the static library, found through pkg-config
pc="pkg-config --define-prefix"
export PKG_CONFIG_PATH="$tmp/root/usr/lib/pkgconfig"
if flags=$($pc --cflags --libs --static sqlite-prefix 2>"$tmp/pcerr") &&
   cc -O1 $SAN examples/c/round.c $flags -o "$tmp/round" 2>"$tmp/ccerr"; then
  ok "examples/c builds against the installed library through pkg-config ($($pc --modversion sqlite-prefix))"
  if "$tmp/round" "$PREFIX_MODEL_DIR/stories260K.gguf" >"$tmp/out" 2>&1 &&
     grep -q '^tokens = \[1,403,407,261,378\]$' "$tmp/out" && grep -q '^prefix_len = 10$' "$tmp/out" && grep -q '^generated = ' "$tmp/out"; then
    ok "examples/c: sqlite3_auto_extension, then tokenize, train and generate ($(grep '^generated' "$tmp/out"))"
  else bad "examples/c run: $(cat "$tmp/out")"; fi
else bad "examples/c: $(cat "$tmp/pcerr" "$tmp/ccerr" | head -5)"; fi

# the installed loadable extension: only the runtime libraries README names
so="$tmp/root/usr/lib/sqlite-prefix/prefix.so"
needed=$(readelf -d "$so" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort | tr '\n' ' ')
extra=$(echo "$needed" | tr ' ' '\n' | grep -v -E '^(libopenblas\.so\.0|libutf8proc\.so\.[0-9]+|libm\.so\.6|libc\.so\.6|libpthread\.so\.0|ld-linux-[a-z0-9_-]*\.so\.[0-9]|)$' |
        grep -v -E '^lib(asan|ubsan)\.so' | tr '\n' ' ')
[ -z "$extra" ] && ok "the installed prefix.so needs only: $needed" || bad "prefix.so needs more than OpenBLAS, utf8proc and libc: $extra"
env_pre=""
[ "$BUILD" = dist-san ] && env_pre="LD_PRELOAD=$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so) ASAN_OPTIONS=detect_leaks=0"
v=$(printf '.load %s\nSELECT prefix_version();\n' "${so%.so}" | env $env_pre sqlite3 :memory: 2>&1)
[ "$v" = "$(sed -n 's/^#define PF_VERSION "\(.*\)"/\1/p' engine/prefix_engine.h)" ] && ok "the installed extension loads in the sqlite3 shell (version $v)" || bad "load: $v"

# the cluster programs and the SQL they expect
if make -s install-cluster BUILD="$BUILD" PREFIX=/usr DESTDIR="$tmp/root" >"$tmp/log" 2>&1; then
  got=$(cd "$tmp/root" && ls usr/bin/prefix-node usr/bin/prefix-worker usr/bin/prefix-cluster usr/share/sqlite-prefix/*.sql 2>&1 | tr '\n' ' ')
  h=$("$tmp/root/usr/bin/prefix-cluster" --help 2>&1 | head -1)
  [ "$got" = "usr/bin/prefix-cluster usr/bin/prefix-node usr/bin/prefix-worker usr/share/sqlite-prefix/cluster.sql usr/share/sqlite-prefix/schema.sql " ] &&
    [ "${h#usage: prefix-cluster}" != "$h" ] && ok "make install-cluster writes prefix-node, prefix-worker, prefix-cluster and sql/*.sql" || bad "install-cluster: $got $h"
else bad "make install-cluster failed: $(tail -3 "$tmp/log")"; fi

make uninstall PREFIX=/usr DESTDIR="$tmp/root" >"$tmp/log" 2>&1; urc=$?
left=$(cd "$tmp/root" && find . -type f | tr '\n' ' ')
[ -z "$left" ] && [ $urc = 0 ] && ! grep -q -i "error" "$tmp/log" && ok "make uninstall removes every installed file, without an error" ||
  bad "uninstall (exit $urc): left $left; $(tail -3 "$tmp/log")"
# uninstall when only make install ran (no cluster): no error either
make -s install BUILD="$BUILD" PREFIX=/usr DESTDIR="$tmp/root2" >"$tmp/log" 2>&1 && make uninstall PREFIX=/usr DESTDIR="$tmp/root2" >"$tmp/log" 2>&1 &&
  ! grep -q -i "error" "$tmp/log" && ok "make install then make uninstall ends without an error" || bad "uninstall after install: $(tail -3 "$tmp/log")"
