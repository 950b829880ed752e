#!/bin/sh
# The dqlite cluster (ext/cluster, docs/scaling.md) on 127.0.0.1: three prefix-node processes, prefixes
# trained through the leader and read back from every node's own copy, kill -9 of the leader, a restart
# that catches up; then prefix-worker processes training six customers' prefixes from the job table, one
# killed with -9 and one stopped (SIGSTOP) past its lease mid-training, and every prefix compared byte for
# byte with the same training in one sqlite3 process. Prints PASS/FAIL lines, each FAIL followed by why
# (indented); run by tests/run.sh.
#
# Nothing here depends on the machine's speed (a sanitizer build on a loaded 2-core machine runs every
# statement ten times slower or more):
# - a statement holds the leader's event loop, which also sends Raft's heartbeats; the nodes run with
#   --latency-ms $LAT (election timeout 15 x LAT, randomized up to twice that) and a statement limit
#   ($LIMIT_MS ms) well below it. Prefixes are trained by prefix-worker, outside the cluster's statements
#   (as docs/scaling.md recommends); what the checks send through the leader is small (reads, inserts, 8
#   generated tokens). Only the limit's own check runs a statement designed to exceed the limit.
# - waits are for events (a log line, a stopped process, a job's state), bounded only to catch a hang;
# - where a check needs a worker caught mid-job, the worker stops itself right after its claim
#   (PREFIX_WORKER_STOP_AT_CLAIM, ext/cluster/worker.c) instead of the test racing its training.
BUILD=${1:-dist}
: "${PREFIX_MODEL_DIR:=../shared/models}"
: "${PREFIX_DATA_DIR:=../shared/data}"
MODEL=$(cd "$PREFIX_MODEL_DIR" && pwd)/stories260K.gguf
E2E=$PREFIX_DATA_DIR/e2e/devset.csv
W=$(mktemp -d)
BASE=$((20000 + $$ % 20000))
A1=127.0.0.1:$BASE A2=127.0.0.1:$((BASE + 1)) A3=127.0.0.1:$((BASE + 2))
ALL=$A1,$A2,$A3
LAT=500 LIMIT_MS=3000
SHELL_ENV=""
[ "$BUILD" = "dist-san" ] && SHELL_ENV="LD_PRELOAD=$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)"

T0=$(date +%s)
pass() { echo "PASS $1"; [ -n "$CLUSTER_TIMES" ] && echo "# $(($(date +%s) - T0)) s"; }
fail() { echo "FAIL $1"; [ -n "$2" ] && echo "$2" | head -20 | sed 's/^/    /'; }
check() { if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "expected: $3
got:      $2"; fi; }
cl() { "$BUILD/prefix-cluster" -s "$ALL" -t 60 "$@"; }
node() { # node N [more options]: start node N (1..3) in the background
  n=$1; shift
  eval "addr=\$A$n"
  if [ "$n" = 1 ]; then join=""; else join="--id $n --join $A1,$A2,$A3"; fi
  "$BUILD/prefix-node" --address "$addr" --data "$W/n$n" $join --latency-ms $LAT --statement-timeout-ms $LIMIT_MS --model "m=$MODEL" "$@" >>"$W/n$n.log" 2>&1 &
  echo $! >"$W/n$n.pid"
}
HANG=600 # seconds: how long a wait for an event may take before it counts as a hang
wait_for() { # wait_for COMMAND...: until COMMAND succeeds (or HANG seconds pass)
  t=$((HANG * 10))
  while [ $t -gt 0 ]; do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; t=$((t - 1)); done
  return 1
}
wait_stopped() { # wait_stopped PID: until the process has stopped itself (state T); 1 if it exited instead
  t=$((HANG * 10))
  while [ $t -gt 0 ] && kill -0 "$1" 2>/dev/null; do
    [ "$(sed 's/^.*) \(.\).*/\1/' "/proc/$1/stat" 2>/dev/null)" = T ] && return 0
    sleep 0.1; t=$((t - 1))
  done
  return 1
}
voters3() { [ "$(cl nodes | grep -c '|voter$')" = 3 ]; }
cleanup() {
  for f in "$W"/*.pid; do [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null; done
  for f in "$W"/w*.pid; do [ -f "$f" ] && kill -CONT "$(cat "$f")" 2>/dev/null; done
  rm -rf "$W"
}
trap cleanup EXIT

if [ ! -x "$BUILD/prefix-node" ] || [ ! -f "$MODEL" ]; then
  fail "cluster: $BUILD/prefix-node or $MODEL missing (make cluster; PREFIX_MODEL_DIR)"
  exit 0
fi

# ---- errors a user meets first ----
out=$("$BUILD/prefix-cluster" -s 127.0.0.1:1 -t 1 leader 2>&1); rc=$?
check "cluster: no node listening is a clear error" "$rc: $out" \
  "1: prefix-cluster: no leader reachable through 127.0.0.1:1 within 1 s (last: 127.0.0.1:1: Connection refused)"
out=$("$BUILD/prefix-node" --address "$A1" --data "$W/x" --join "$A2" --id 1 2>&1); rc=$?
check "cluster: a joining node with the bootstrap id is refused" "$rc: $out" \
  "2: prefix-node: id 1 is the node that bootstraps a new cluster; a joining node needs another id"
# libdqlite 1.11 (Debian 12) can be crashed by one unauthenticated connection (docs/security.md): a node listens
# beyond loopback only when told the network is trusted
out=$("$BUILD/prefix-node" --address 0.0.0.0:1 --data "$W/x" 2>&1); rc=$?
case "$rc: $out" in "2: prefix-node: --address 0.0.0.0:1 is reachable from other machines, and dqlite's protocol has no authentication"*"--trusted-network"*)
  pass "cluster: a node refuses a non-loopback address without --trusted-network, saying why" ;;
  *) fail "cluster: a node refuses a non-loopback address without --trusted-network, saying why" "$rc: $out" ;; esac
out=$("$BUILD/prefix-node" --address "$A1" --data "$W/x" --model "m=$W/none.gguf" 2>&1 | head -1); rc=$?
case "$out" in "prefix-node: model m: "*"none.gguf"*) pass "cluster: a missing model stops the node before it serves" ;;
  *) fail "cluster: a missing model stops the node before it serves" "$out" ;; esac
out=$("$BUILD/prefix-worker" -s "$A1" 2>&1); rc=$?
check "cluster: a worker without --model is refused" "$rc" "2"

# ---- three nodes: node 1 bootstraps, 2 and 3 join at the same time ----
node 1
wait_for cl leader || fail "cluster: node 1 leads" "$(cat "$W/n1.log")"
node 2; node 3
if wait_for voters3; then pass "cluster: three voters after two concurrent joins"; else
  fail "cluster: three voters after two concurrent joins" "$(cl nodes; cat "$W"/n*.log)"; fi

# a worker pointed at a cluster without the job table says so and exits
out=$("$BUILD/prefix-worker" -s "$ALL" --model "m=$MODEL" --name w0 2>&1 | sed -n 's/^[0-9:]* //p' | tail -2); rc=$?
check "cluster: a worker on a cluster without sql/cluster.sql stops with the reason" "$out" \
"prefix-worker w0: the cluster refused the claim: no such table: prefix_train_jobs (is sql/cluster.sql loaded?)
prefix-worker w0: 0 jobs run; exiting"

out=$({ cl exec-file sql/schema.sql && cl exec-file sql/cluster.sql; } 2>&1) || fail "cluster: schema" "$out"
sed -n '/^INSERT INTO prefix_pairs/,/;$/p' examples/customers.sql >"$W/pairs.sql"
out=$(cl exec-file "$W/pairs.sql" 2>&1) || fail "cluster: the pairs of examples/customers.sql" "$out"
# the two customers' prefixes: a worker trains them (on its own, outside any statement of the cluster's)
# and stores each BLOB through the leader, where it is replicated as data
cl exec "INSERT INTO prefix_train_jobs(customer, model, options)
  SELECT DISTINCT customer, 'm', '{\"max_steps\": 60, \"add_eos\": false}' FROM prefix_pairs ORDER BY customer"
if env $SHELL_ENV "$BUILD/prefix-worker" -s "$ALL" --model "m=$MODEL" --name w0 --exit-when-idle --poll 0.2 >"$W/w0.log" 2>&1; then
  pass "cluster: prefixes trained by a worker and stored through the leader"
else fail "cluster: prefixes trained by a worker and stored through the leader" "$(cat "$W/w0.log")"; fi
cl query "SELECT customer, hex(prefix) FROM prefixes ORDER BY customer" >"$W/prefixes.ref"
check "cluster: two prefixes stored" "$(cut -d'|' -f1 "$W/prefixes.ref" | tr '\n' ' ')" "stormy sunny "
GEN="SELECT prefix_generate('m', prefix, 'The sky was', '{\"max_tokens\": 8}') FROM live_prefixes ORDER BY customer"
if cl query "$GEN" >"$W/gen.ref" 2>&1; then pass "cluster: generation through the leader with each prefix"
else fail "cluster: generation through the leader with each prefix" "$(cat "$W/gen.ref")"; fi

# every node's own copy: hand leadership to each in turn and read there; and a client given only a
# follower's address is led to the leader
ok=1
for n in 1 2 3; do
  cl transfer "$n" >/dev/null 2>&1
  wait_for sh -c "\"$BUILD/prefix-cluster\" -s $ALL leader | grep -q '^$n|'" || ok=0
  cl query "SELECT customer, hex(prefix) FROM prefixes ORDER BY customer" | cmp -s - "$W/prefixes.ref" || ok=0
done
check "cluster: the prefixes read the same from each node's copy (leadership moved to 1, 2, 3)" "$ok" 1
leader=$(cl leader | cut -d'|' -f1)
follower=$((leader % 3 + 1)); eval "faddr=\$A$follower"
out=$("$BUILD/prefix-cluster" -s "$faddr" query "SELECT count(*) FROM prefixes" 2>&1)
check "cluster: a client given only a follower's address reads through the leader" "$out" "2"

# a statement designed to exceed the node's time limit is interrupted; the leader keeps its leadership
t0=$(date +%s)
out=$(cl exec "INSERT INTO prefix_pairs(customer, prompt, completion)
  SELECT 'long', 'p', length(prefix_train('m', 'SELECT ''a'', ''b''', '{\"max_steps\": 100000000}'))" 2>&1)
case "$out" in *"prefix_train: interrupted (prefix-node stops a statement after --statement-timeout-ms"*)
  pass "cluster: a statement past the time limit is interrupted with the reason ($(($(date +%s) - t0)) s)" ;;
  *) fail "cluster: a statement past the time limit is interrupted with the reason" "$out" ;; esac
sleep 1
check "cluster: the leader kept its leadership, and the interrupted insert wrote nothing" \
  "$(cl leader | cut -d'|' -f1) $(cl query "SELECT count(*) FROM prefix_pairs WHERE customer = 'long'")" "$leader 0"

# kill -9 the leader: a new one is elected, the prefixes are intact, generation works with them
eval "kill -9 \$(cat \"$W/n$leader.pid\")"
rm -f "$W/n$leader.pid"
t0=$(date +%s)
if wait_for sh -c "\"$BUILD/prefix-cluster\" -s $ALL -t 2 leader | grep -qv '^$leader|'"; then
  pass "cluster: a new leader after kill -9 of the leader ($(($(date +%s) - t0)) s)"
else fail "cluster: a new leader after kill -9 of the leader" "$(cat "$W"/n*.log)"; fi
cl query "SELECT customer, hex(prefix) FROM prefixes ORDER BY customer" | cmp -s - "$W/prefixes.ref"
check "cluster: every committed prefix is there byte for byte after the failover" "$?" 0
out=$(cl query "$GEN")
check "cluster: generation with them gives the same text on the new leader" "$out" "$(cat "$W/gen.ref")"
cl exec "INSERT INTO prefix_pairs(customer, prompt, completion) VALUES ('late', 'written while', ' a node was down')"

# the killed node restarts and catches up (then leads, so the read is from its own copy)
node "$leader"
cl transfer "$leader" >/dev/null 2>&1
wait_for sh -c "\"$BUILD/prefix-cluster\" -s $ALL leader | grep -q '^$leader|' || { \"$BUILD/prefix-cluster\" -s $ALL transfer $leader; false; }"
out=$(cl leader | cut -d'|' -f1)
check "cluster: the restarted node takes leadership again" "$out" "$leader"
out=$(cl query "SELECT customer FROM prefix_pairs WHERE customer = 'late'")
cl query "SELECT customer, hex(prefix) FROM prefixes ORDER BY customer" | cmp -s - "$W/prefixes.ref"
check "cluster: the restarted node caught up (the row written while it was down, the prefixes)" "$out $?" "late 0"

# ---- workers: six customers from E2E, two workers, one killed mid-training, one stalled past its lease ----
out=$(cl exec "DELETE FROM prefix_train_jobs; DELETE FROM prefixes; DELETE FROM prefix_pairs" 2>&1) || fail "cluster: emptying the tables" "$out"
sqlite3 :memory: ".mode csv" ".import $E2E e2e" ".mode list" "SELECT 'INSERT INTO prefix_pairs(customer, prompt, completion) VALUES (' ||
  quote('c' || ((rowid - 1) / 8 + 1)) || ', ' || quote(mr || ' =>') || ', ' || quote(' ' || ref) || ');' FROM e2e WHERE rowid <= 48" >"$W/e2e.sql"
cl exec-file "$W/e2e.sql"
OPTS='{"max_steps": 60, "seed": 11, "prefix_len": 8}'
cl exec "INSERT INTO prefix_train_jobs(customer, model, options) SELECT DISTINCT customer, 'm', ? FROM prefix_pairs ORDER BY customer" "$OPTS"
check "cluster: six jobs queued" "$(cl query "SELECT count(*) FROM prefix_train_jobs WHERE state = 'queued'")" 6

worker() { # worker NAME K [options]: K > 0: the worker stops itself (SIGSTOP) right after its K-th claim
  name=$1; k=$2; shift 2
  env $SHELL_ENV PREFIX_WORKER_STOP_AT_CLAIM=$k "$BUILD/prefix-worker" -s "$ALL" --model "m=$MODEL" --name "$name" --lease 2 --poll 0.2 "$@" >"$W/$name.log" 2>&1 &
  echo $! >"$W/$name.pid"
}
# worker A dies right after its claim (it stops itself there, then gets kill -9)
worker wa 1
wait_stopped "$(cat "$W/wa.pid")" || fail "cluster: worker wa claims a job" "$(cat "$W/wa.log")"
kill -9 "$(cat "$W/wa.pid")"; rm -f "$W/wa.pid"
killed_job=$(sed -n 's/.*job \([0-9]*\) claimed.*/\1/p' "$W/wa.log" | head -1)
# worker C stalls right after its claim, longer than its lease; when it resumes, the job belongs to
# another claim and its work must be dropped
worker wc 1 --exit-when-idle
wait_stopped "$(cat "$W/wc.pid")" || fail "cluster: worker wc claims a job" "$(cat "$W/wc.log")"
stalled_job=$(sed -n 's/.*job \([0-9]*\) claimed.*/\1/p' "$W/wc.log" | head -1)
worker wb 0 --exit-when-idle
wait_for sh -c "[ \"\$(\"$BUILD/prefix-cluster\" -s $ALL query \"SELECT state FROM prefix_train_jobs WHERE id = $stalled_job\")\" = done ]"
kill -CONT "$(cat "$W/wc.pid")"
wait "$(cat "$W/wb.pid")"; rb=$?; wait "$(cat "$W/wc.pid")"; rc_=$?
rm -f "$W/wb.pid" "$W/wc.pid"
check "cluster: both surviving workers exit 0 when the queue is empty" "$rb $rc_" "0 0"

out=$(cl query "SELECT count(*), count(DISTINCT customer), sum(state = 'done') FROM prefix_train_jobs")
check "cluster: every job done" "$out" "6|6|6"
out=$(cl query "SELECT count(*), count(DISTINCT customer) FROM prefixes")
check "cluster: every customer has exactly one prefix" "$out" "6|6"
out=$(cl query "SELECT attempts > 1, worker <> 'wa' FROM prefix_train_jobs WHERE id = $killed_job")
check "cluster: the killed worker's job was claimed again after its lease and finished by another" "$out" "1|1"
out=$(cl query "SELECT attempts > 1, worker <> 'wc' FROM prefix_train_jobs WHERE id = $stalled_job")
check "cluster: the stalled worker's job was finished by another" "$out" "1|1"
if grep -qE "job $stalled_job: (lease lost|another worker holds it)" "$W/wc.log"; then
  pass "cluster: the stalled worker drops its result when it resumes"
else fail "cluster: the stalled worker drops its result when it resumes" "$(cat "$W/wc.log")"; fi
out=$(cl query "SELECT count(*) FROM prefix_train_jobs j JOIN prefixes p ON p.id = j.prefix_id AND p.customer = j.customer")
check "cluster: each job points at the prefix it wrote" "$out" 6

# the same training in one process: sqlite3 with the extension, the same rows in the same order
cl query "SELECT customer, hex(prefix) FROM prefixes ORDER BY customer" >"$W/cluster.hex"
env $SHELL_ENV sqlite3 -batch :memory: ".load $BUILD/prefix" ".read sql/schema.sql" ".read $W/e2e.sql" \
  "SELECT prefix_model_load('m', '$MODEL') WHERE 0" \
  ".output /dev/null" "SELECT prefix_model_load('m', '$MODEL')" ".output stdout" \
  "SELECT customer, hex(prefix_train('m', 'SELECT prompt, completion FROM prefix_pairs WHERE customer = ' || quote(customer) || ' ORDER BY id', '$OPTS'))
   FROM (SELECT DISTINCT customer FROM prefix_pairs) ORDER BY customer" >"$W/local.hex" 2>&1
if cmp -s "$W/cluster.hex" "$W/local.hex" && [ "$(wc -l <"$W/local.hex")" = 6 ]; then
  pass "cluster: the workers' BLOBs equal one process's training, byte for byte"
else fail "cluster: the workers' BLOBs equal one process's training, byte for byte" "$(head -c 300 "$W/local.hex")"; fi

# the leader dies while a worker is between its claim and its store (it has finished one job and stops
# itself after its second claim): the worker finds the new leader and finishes
cl exec "INSERT INTO prefix_train_jobs(customer, model, options) SELECT customer, 'm', '{\"max_steps\": 60, \"seed\": 12}'
  FROM (SELECT DISTINCT customer FROM prefix_pairs ORDER BY customer LIMIT 4)"
worker we 2 --exit-when-idle
wait_stopped "$(cat "$W/we.pid")" || fail "cluster: worker we claims its second job" "$(cat "$W/we.log")"
leader=$(cl leader | cut -d'|' -f1)
eval "kill -9 \$(cat \"$W/n$leader.pid\")"; rm -f "$W/n$leader.pid"
kill -CONT "$(cat "$W/we.pid")"
wait "$(cat "$W/we.pid")"; re=$?; rm -f "$W/we.pid"
out=$(cl query "SELECT count(*), sum(state = 'done'), sum(prefix_id IS NOT NULL) FROM prefix_train_jobs WHERE options LIKE '%\"seed\": 12%'")
check "cluster: a worker outlives the leader's kill -9 and finishes every job (exit $re)" "$out $re" "4|4|4 0"
out=$(cl query "SELECT count(*) FROM prefixes p JOIN prefix_train_jobs j ON j.prefix_id = p.id WHERE j.options LIKE '%\"seed\": 12%'")
check "cluster: each of those jobs stored exactly its one prefix" "$out" 4
if grep -q 'leader is ' "$W/we.log"; then
  pass "cluster: the worker noticed the lost leader and found the new one"
else fail "cluster: the worker noticed the lost leader and found the new one" "$(cat "$W/we.log")"; fi

# a job that cannot train fails with the reason, and is not retried
cl exec "INSERT INTO prefix_train_jobs(customer, model, options) VALUES ('c1', 'm', '{\"max_steps\": -3}'), ('nobody', 'm', '{}'),
  ('c1', 'm', '{\"max_steps\": 7}')"
# the third trains, but the cluster refuses to store it (a trigger, as a schema rule would): the job fails
# with the refusal and the transaction leaves nothing behind
cl exec "CREATE TRIGGER no_seven BEFORE INSERT ON prefixes WHEN NEW.steps = 7 BEGIN SELECT RAISE(ABORT, 'seven steps are not enough'); END"
env $SHELL_ENV "$BUILD/prefix-worker" -s "$ALL" --model "m=$MODEL" --name wd --exit-when-idle --poll 0.2 >"$W/wd.log" 2>&1 ||
  fail "cluster: worker wd exits 0" "$(cat "$W/wd.log")"
out=$(cl query "SELECT customer, state, attempts, error FROM prefix_train_jobs WHERE id > 10 ORDER BY id")
check "cluster: jobs that cannot train fail once, with the reason" "$out" \
"c1|failed|1|prefix_train: option 'max_steps' must be between 1 and 1000000000, got -3
nobody|failed|1|customer 'nobody' has no training pairs
c1|failed|1|storing the prefix failed: seven steps are not enough"
out=$(cl query "SELECT count(*) FROM prefixes WHERE steps = 7")
check "cluster: a refused store leaves no prefix behind" "$out" 0

# nodes stop cleanly on SIGTERM
for n in 1 2 3; do [ -f "$W/n$n.pid" ] && kill -TERM "$(cat "$W/n$n.pid")"; done
ok=1
for n in 1 2 3; do [ -f "$W/n$n.pid" ] && { wait "$(cat "$W/n$n.pid")" || ok=0; rm -f "$W/n$n.pid"; }; done
check "cluster: nodes exit 0 on SIGTERM" "$ok" 1

# no sanitizer report from any node or worker (the nodes killed with -9 included, up to their death)
if grep -lE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$W"/*.log >/dev/null 2>&1; then
  fail "cluster: no sanitizer report in the nodes' and workers' logs" "$(grep -hE -A5 'Sanitizer|runtime error' "$W"/*.log | head -30)"
else pass "cluster: no sanitizer report in the nodes' and workers' logs"; fi
