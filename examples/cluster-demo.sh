#!/bin/sh
# make cluster-demo: three prefix-node processes (a dqlite cluster) and two prefix-worker processes on
# 127.0.0.1. The customers of examples/customers.sql get one training job each; the workers claim them,
# train on their own, and store the prefixes in the replicated database; then a client that only knows
# a follower's address generates with them. Everything stops at the end. See docs/scaling.md.
set -e
BUILD=${BUILD:-dist}
: "${PREFIX_MODEL_DIR:=../shared/models}"
MODEL=$(cd "$PREFIX_MODEL_DIR" && pwd)/stories260K.gguf
PORT=${CLUSTER_PORT:-19001}
A1=127.0.0.1:$PORT A2=127.0.0.1:$((PORT + 1)) A3=127.0.0.1:$((PORT + 2))
ALL=$A1,$A2,$A3
W=$(mktemp -d)
PIDS=""
stop() { for p in $PIDS; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$W"; }
trap stop EXIT INT TERM
cl() { "$BUILD/prefix-cluster" -s "$ALL" "$@"; }
say() { printf '\n== %s\n' "$*"; }

say "three nodes: node 1 bootstraps the cluster, nodes 2 and 3 join it (logs in $W)"
"$BUILD/prefix-node" --address "$A1" --data "$W/n1" --model "m=$MODEL" >"$W/n1.log" 2>&1 & PIDS="$PIDS $!"
until cl -t 1 leader >/dev/null 2>&1; do sleep 0.2; done
for n in 2 3; do
  eval "addr=\$A$n"
  "$BUILD/prefix-node" --address "$addr" --data "$W/n$n" --id "$n" --join "$A1" --model "m=$MODEL" >"$W/n$n.log" 2>&1 & PIDS="$PIDS $!"
done
until [ "$(cl nodes 2>/dev/null | grep -c voter)" = 3 ]; do sleep 0.2; done
echo "members (id|address|role):"; cl nodes
echo "leader: $(cl leader)"

say "schema, job table and the customers' training pairs, written through the leader"
cl exec-file sql/schema.sql
cl exec-file sql/cluster.sql
sed -n '/^INSERT INTO prefix_pairs/,/;$/p' examples/customers.sql >"$W/pairs.sql"
cl exec-file "$W/pairs.sql"
cl query "SELECT customer, count(*) || ' pairs' FROM prefix_pairs GROUP BY customer"
cl exec "INSERT INTO prefix_train_jobs(customer, model, options)
         SELECT DISTINCT customer, 'm', '{\"add_eos\": false, \"max_steps\": 300, \"seed\": 1}' FROM prefix_pairs ORDER BY customer"

say "two workers claim the jobs, train locally, store each prefix with its job's completion"
for w in w1 w2; do
  "$BUILD/prefix-worker" -s "$ALL" --model "m=$MODEL" --name "$w" --lease 10 --poll 0.2 --exit-when-idle 2>&1 | sed "s/^/  /" &
done
wait_workers() { while pgrep -f "prefix-worker -s $ALL" >/dev/null; do sleep 0.2; done; }
wait_workers
echo "jobs (id|customer|state|attempts|worker):"
cl query "SELECT id, customer, state, attempts, worker FROM prefix_train_jobs ORDER BY id"
echo "prefixes (customer|rows|steps|final loss|bytes):"
cl query "SELECT customer, rows, steps, round(final_train_loss, 4), length(prefix) FROM live_prefixes ORDER BY customer"

leader=$(cl leader | cut -d'|' -f1)
follower=$((leader % 3 + 1)); eval "faddr=\$A$follower"
say "a client that knows only follower $faddr: its SQL is led to the leader (dqlite serves SQL from the leader)"
"$BUILD/prefix-cluster" -s "$faddr" query "SELECT customer, prefix_generate('m', prefix, 'The day was', '{\"max_tokens\": 24, \"stop\": \"\\n\"}')
  FROM live_prefixes ORDER BY customer"

say "or generation off the leader: fetch the BLOB (a few KB) and generate in the client's own SQLite"
hex=$("$BUILD/prefix-cluster" -s "$faddr" query "SELECT hex(prefix) FROM live_prefixes WHERE customer = 'stormy'")
sqlite3 :memory: ".load $BUILD/prefix" ".output /dev/null" "SELECT prefix_model_load('m', '$MODEL')" ".output stdout" \
  "SELECT 'stormy|' || prefix_generate('m', X'$hex', 'The sky was', '{\"max_tokens\": 24, \"stop\": \"\n\"}')"

say "kill -9 the leader (node $leader): another node takes over, the prefixes are all there"
kill -9 "$(pgrep -f "prefix-node --address 127.0.0.1:$((PORT + leader - 1)) ")"
until cl -t 1 leader 2>/dev/null | grep -qv "^$leader|"; do sleep 0.2; done
echo "new leader: $(cl leader)"
cl query "SELECT customer, length(prefix), substr(hex(prefix), 1, 16) || '...' FROM live_prefixes ORDER BY customer"
cl query "SELECT 'sunny|' || prefix_generate('m', prefix, 'The garden was', '{\"max_tokens\": 24, \"stop\": \"\\n\"}') FROM live_prefixes WHERE customer = 'sunny'"
say "done; stopping the nodes"
