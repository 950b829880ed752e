#!/bin/sh
# The architecture's rules, checked on the built objects (part of make test; prints PASS/FAIL lines):
#  - no call cycle between files of engine/ or of ext/: file A calls file B when an external symbol A uses is
#    defined in B (nm); a cycle A -> ... -> A across files fails, naming the files and the symbols that tie them;
#  - every symbol a file of engine/ or ext/ exports is used by another file (engine, ext, tests, tools) or is static;
#  - ext/ includes only the engine's public headers; the engine never includes SQLite (engine/*.c and *.h);
#  - no function is over 120 lines.
# Usage: tests/layers.sh BUILD
BUILD=${1:-dist}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for dir in engine ext; do
  : >"$tmp/def"; : >"$tmp/use"
  for src in $dir/*.c; do   # the objects of today's sources (a build directory may keep older ones)
    o=$BUILD/obj/$dir/$(basename "$src" .c).o
    f=$src
    nm -g --defined-only "$o" | awk -v f="$f" 'NF == 3 { print $3, f }' >>"$tmp/def"
    nm -u "$o" | awk -v f="$f" '{ print $NF, f }' >>"$tmp/use"
  done
  # edges "from to symbol", then a depth-first search for a cycle
  awk 'NR == FNR { def[$1] = $2; next } ($1 in def) && def[$1] != $2 { print $2, def[$1], $1 }' "$tmp/def" "$tmp/use" | sort -u >"$tmp/edges"
  cyc=$(awk '
    { node[$1]; node[$2]; if (!(($1, $2) in seen)) { seen[$1, $2]; adj[$1, ++n[$1]] = $2 } }
    function dfs(u,   i, v, k) {
      state[u] = 1; stack[++depth] = u
      for (i = 1; i <= n[u] && !found; i++) {
        v = adj[u, i]
        if (state[v] == 1) {   # back to a file on the current path: a cycle
          for (k = 1; stack[k] != v; k++) ;
          for (out = ""; k <= depth; k++) out = out stack[k] " -> "
          out = out v; found = 1
        } else if (!state[v]) dfs(v)
      }
      depth--; state[u] = 2
    }
    END { for (u in node) if (!state[u] && !found) dfs(u); if (found) print out }' "$tmp/edges")
  if [ -z "$cyc" ]; then
    echo "PASS layers: no call cycle between the files of $dir/ ($(wc -l <"$tmp/edges") calls between files)"
  else
    echo "FAIL layers: a call cycle in $dir/: $cyc"
    echo "$cyc" | tr -d ' ' | awk -F'->' '{ for (i = 1; i < NF; i++) print $i, $(i + 1) }' | while read -r a b; do
      echo "    $a -> $b: $(awk -v a="$a" -v b="$b" '$1 == a && $2 == b { printf "%s ", $3 }' "$tmp/edges")"
    done
  fi
done
# every symbol a file exports is used by another file (of engine/, ext/, the tests, the tools) or is static
objs=$(for src in engine/*.c ext/*.c; do echo "$BUILD/obj/${src%.c}.o"; done)
for o in $objs; do   # (symbols the compiler adds, as ASan's __odr_asan.*, start with two underscores)
  nm -g --defined-only "$o" | awk -v f="$o" 'NF == 3 && $2 ~ /[TDBR]/ && $3 !~ /^__/ { print $3, f }'
done >"$tmp/exp"
for o in $objs; do nm -u "$o" | awk -v f="$o" '{ print $NF, f }'; done >"$tmp/imp"
lonely=$(awk 'NR == FNR { by[$1] = by[$1] " " $2; next }
  { n = split(by[$1], a, " "); other = 0; for (i = 1; i <= n; i++) if (a[i] != $2) other = 1; if (!other) print $1 }' \
  "$tmp/imp" "$tmp/exp" | while read -r sym; do
    [ "$sym" = sqlite3_prefix_init ] && continue   # the extension's entry point: SQLite calls it
    grep -rqw --include='*.c' "$sym" tests ext/cluster bindings 2>/dev/null || printf '%s ' "$sym"
  done)
[ -z "$lonely" ] && echo "PASS layers: every exported symbol is used outside its file ($(wc -l <"$tmp/exp") exported)" ||
  echo "FAIL layers: exported but used only in their own file (make them static): $lonely"
inc=$(grep -l -E '#include *"[./]*(engine/)?(internal|block|kernels|gguf_write)\.h"' ext/*.c ext/*.h ext/cluster/*.c 2>/dev/null | tr '\n' ' ')
[ -z "$inc" ] && echo "PASS layers: ext/ includes only the engine's public headers (prefix_engine.h, train.h, metrics.h)" ||
  echo "FAIL layers: ext/ files include engine internals: $inc"
# no function longer than 120 lines (from its signature in column 0 to its "}" in column 0)
long=$(awk 'FNR == 1 { open = 0; cand = 0 }
  /^[A-Za-z_]/ && /[(]/ && !/;[ \t]*$/ && !/^(typedef|struct|enum|union)/ && !open {
    cand = FNR; name = $0; sub(/[(].*/, "", name); n = split(name, w, " "); name = w[n] }
  /[{][ \t]*$/ && cand && !open { open = cand }
  /^}/ && open { if (FNR - open + 1 > 120) printf "%s:%s (%d lines) ", FILENAME, name, FNR - open + 1; open = 0; cand = 0 }' \
  engine/*.c ext/*.c ext/cluster/*.c)
[ -z "$long" ] && echo "PASS layers: no function in engine/ or ext/ is over 120 lines" ||
  echo "FAIL layers: functions over 120 lines (split them by their phases): $long"
inc=$(grep -l -E '#include *[<"]sqlite3(ext)?\.h' engine/*.c engine/*.h 2>/dev/null | tr '\n' ' ')
[ -z "$inc" ] && echo "PASS layers: the engine includes no SQLite header" || echo "FAIL layers: engine files include SQLite: $inc"
