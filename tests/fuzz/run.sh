#!/bin/sh
# Build the libFuzzer targets and run each for a bounded time on its seed corpus (tests/fuzz/corpus/<target>,
# plus models the project's tool writes). Usage: run.sh SECONDS target...
# Ends with one line per target (executions, new corpus entries) and fails if any target found a crash.
set -e
secs=${1:-60}
shift
targets=${*:-gguf prefix tokenize options sql dqclient}
: "${PREFIX_MODEL_DIR:=../shared/models}"
: "${PREFIX_DATA_DIR:=../shared/data}"
export PREFIX_MODEL_DIR PREFIX_DATA_DIR
make -s fuzz-build >/dev/null
mkdir -p dist-fuzz/artifacts
# generated seeds: every weight type and family in tiny shapes
g=dist-fuzz/corpus/gguf
mkdir -p "$g"
mk=dist-fuzz/prefix-mkmodel
for t in f16 bf16 q8_0 q4_0 q5_1 iq4_nl; do
  $mk "$g/llama-$t.gguf" --layers 1 --embd 32 --heads 2 --ff 64 --vocab 260 --ctx 64 --type $t >/dev/null
done
for t in q4_k_m q6_k iq4_xs q2_k q3_k; do
  $mk "$g/llama-$t.gguf" --layers 1 --embd 256 --heads 2 --ff 256 --vocab 260 --ctx 32 --type $t >/dev/null
done
$mk "$g/mistral.gguf" --arch mistral --layers 1 --embd 32 --heads 2 --ff 64 --vocab 260 --ctx 64 >/dev/null
$mk "$g/qwen2.gguf" --arch qwen2 --layers 1 --embd 32 --heads 2 --ff 64 --vocab 260 --ctx 64 >/dev/null
$mk "$g/stories-vocab.gguf" --vocab-only --vocab-from "$PREFIX_MODEL_DIR/stories260K.gguf" >/dev/null
status=0
for t in $targets; do
  mkdir -p "dist-fuzz/corpus/$t"
  log=dist-fuzz/fuzz_$t.log
  if dist-fuzz/fuzz_$t -max_total_time="$secs" -timeout=20 -rss_limit_mb=4096 -malloc_limit_mb=4096 -print_final_stats=1 \
       -artifact_prefix="dist-fuzz/artifacts/$t-" "dist-fuzz/corpus/$t" "tests/fuzz/corpus/$t" >"$log" 2>&1; then
    res=ok
  else
    res="FAILED (see $log and dist-fuzz/artifacts/)"
    status=1
  fi
  execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | awk '{print $2}')
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | awk '{print $2}')
  echo "fuzz_$t: ${execs:-?} executions in ${secs} s, coverage ${cov:-?} edges: $res"
done
exit $status
