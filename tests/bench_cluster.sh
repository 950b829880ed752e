#!/bin/sh
# make bench-cluster: the figures of docs/scaling.md, on this machine, in one run.
#  - training: CUSTOMERS customers (8 E2E pairs each) trained by prefix-worker processes from a 3-node
#    cluster on 127.0.0.1 -- 1 worker, then 2 workers -- beside the same training in one sqlite3 process
#    (what a user runs without a cluster); prefixes per minute, wall clock
#  - generation: greedy tokens per second served through the cluster (a client on a follower's address,
#    executed by the leader) beside the same statements in one local sqlite3 process
# Never fails on time; prints figures.
BUILD=${1:-dist}
: "${PREFIX_MODEL_DIR:=../shared/models}"
: "${PREFIX_DATA_DIR:=../shared/data}"
CUSTOMERS=${CUSTOMERS:-12}
STEPS=${STEPS:-150}
MODEL=$(cd "$PREFIX_MODEL_DIR" && pwd)/stories260K.gguf
BIG=$(pwd)/$BUILD/bench/llama134m-q4_k_m.gguf
[ -f "$BIG" ] || "$BUILD/prefix-mkmodel" "$BIG" --layers 12 --embd 768 --heads 12 --ff 2048 --vocab 32000 --ctx 1024 --type q4_k_m >/dev/null
W=$(mktemp -d)
P=${CLUSTER_PORT:-19101}
A1=127.0.0.1:$P A2=127.0.0.1:$((P + 1)) A3=127.0.0.1:$((P + 2))
ALL=$A1,$A2,$A3
trap 'pkill -f "prefix-node --address 127.0.0.1:$P" ; pkill -f "prefix-node --address 127.0.0.1:$((P + 1))"; pkill -f "prefix-node --address 127.0.0.1:$((P + 2))"; rm -rf "$W"' EXIT
cl() { "$BUILD/prefix-cluster" -s "$ALL" -t 30 "$@"; }
now() { date +%s.%N; }
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores, $(date -u +%Y-%m-%d)"

"$BUILD/prefix-node" --address "$A1" --data "$W/n1" --model "m=$MODEL" --model "big=$BIG" >"$W/n1.log" 2>&1 &
until cl -t 1 leader >/dev/null 2>&1; do sleep 0.2; done
for n in 2 3; do
  eval "a=\$A$n"
  "$BUILD/prefix-node" --address "$a" --data "$W/n$n" --id $n --join "$A1" --model "m=$MODEL" --model "big=$BIG" >"$W/n$n.log" 2>&1 &
done
until [ "$(cl nodes 2>/dev/null | grep -c voter)" = 3 ]; do sleep 0.2; done
cl exec-file sql/schema.sql && cl exec-file sql/cluster.sql
sqlite3 :memory: ".mode csv" ".import $PREFIX_DATA_DIR/e2e/devset.csv e2e" ".mode list" "SELECT 'INSERT INTO prefix_pairs(customer, prompt, completion) VALUES (' ||
  quote(printf('c%02d', (rowid - 1) / 8 + 1)) || ', ' || quote(mr || ' =>') || ', ' || quote(' ' || ref) || ');' FROM e2e WHERE rowid <= 8 * $CUSTOMERS" >"$W/pairs.sql"
cl exec-file "$W/pairs.sql"
OPTS="{\"max_steps\": $STEPS, \"seed\": 3, \"prefix_len\": 8, \"progress\": false}"

echo "training: $CUSTOMERS customers x 8 E2E pairs, $STEPS steps each, stories260K"
baseline() {
  t0=$(now)
  sqlite3 :memory: ".load $BUILD/prefix" ".read sql/schema.sql" ".read $W/pairs.sql" ".output /dev/null" \
    "SELECT prefix_model_load('m', '$MODEL')" \
    "SELECT customer, prefix_train_agg('m', prompt, completion, '$OPTS') FROM (SELECT * FROM prefix_pairs ORDER BY id) GROUP BY customer"
  t1=$(now)
  base=$(echo "$t1 - $t0" | bc)
  printf '  one sqlite3 process, %d threads (no cluster): %6.1f s  %6.1f prefixes/min\n' "$(nproc)" "$base" "$(echo "$CUSTOMERS * 60 / $base" | bc -l)"
}
run_workers() { # run_workers N THREADS
  cl exec "DELETE FROM prefix_train_jobs; DELETE FROM prefixes"
  cl exec "INSERT INTO prefix_train_jobs(customer, model, options) SELECT DISTINCT customer, 'm', ? FROM prefix_pairs ORDER BY customer" "$OPTS"
  t0=$(now)
  i=0; pids=""
  while [ $i -lt "$1" ]; do
    PREFIX_THREADS=$2 "$BUILD/prefix-worker" -s "$ALL" --model "m=$MODEL" --name "w$i" --poll 0.1 --exit-when-idle 2>>"$W/workers.log" &
    pids="$pids $!"
    i=$((i + 1))
  done
  for p in $pids; do wait "$p"; done
  t1=$(now)
  s=$(echo "$t1 - $t0" | bc)
  done_=$(cl query "SELECT count(*) FROM prefixes")
  printf '  %d worker%s x %d thread%s (cluster):                %6.1f s  %6.1f prefixes/min  (%s stored)\n' "$1" "$([ "$1" = 1 ] && echo ' ' || echo s)" "$2" \
    "$([ "$2" = 1 ] && echo ' ' || echo s)" "$s" "$(echo "$done_ * 60 / $s" | bc -l)" "$done_"
}
# alternated, so a slower minute of a shared machine shows as a spread rather than as a ratio
for round in 1 2; do
  baseline
  run_workers 1 "$(nproc)"
  run_workers 2 1
done

echo "generation: greedy, 8 statements (the first one not timed), prefix of customer c01"
cl query "SELECT hex(prefix) FROM prefixes WHERE customer = 'c01'" >"$W/p.hex"
gen() { # gen MODEL TOKENS PREFIXSQL
  echo "SELECT length(prefix_generate('$1', $3, 'name[The Eagle], food[French] =>', '{\"max_tokens\": $2, \"ignore_eos\": true}'))"
}
bench_gen() { # bench_gen LABEL MODEL TOKENS PREFIXSQL LOCALPREFIXSQL
  cl query "$(gen "$2" "$3" "$4")" >/dev/null
  t0=$(now); for i in 1 2 3 4 5 6 7; do "$BUILD/prefix-cluster" -s "$A2,$A3,$A1" query "$(gen "$2" "$3" "$4")" >/dev/null; done; t1=$(now)
  c=$(echo "7 * $3 / ($t1 - $t0)" | bc -l)
  lsql=$(gen "$2" "$3" "$5")
  { echo ".load $BUILD/prefix"; echo ".output /dev/null"
    echo "SELECT prefix_model_load('$2', '$([ "$2" = m ] && echo "$MODEL" || echo "$BIG")');"
    echo "$lsql;"; echo ".output stdout"; echo ".timer on"
    for i in 1 2 3 4 5 6 7; do echo "$lsql;"; done; } | sqlite3 :memory: >"$W/t.txt" 2>&1
  # sqlite3's timer prints the real time of each statement
  l=$(grep -o 'real [0-9.]*' "$W/t.txt" | awk -v n="$3" '{s += $2} END {printf "%.1f", 7 * n / s}')
  printf '  %-38s cluster %8.1f tok/s   one process %8.1f tok/s\n' "$1" "$c" "$l"
}
HEX=$(cat "$W/p.hex")
bench_gen "stories260K + prefix, 128 tokens" m 128 "(SELECT prefix FROM prefixes WHERE customer = 'c01')" "X'$HEX'"
bench_gen "llama 134M Q4_K_M, no prefix, 64 tokens" big 64 NULL NULL
