#!/bin/sh
# Build the libFuzzer targets and run each for a bounded time on its seed corpus (tests/fuzz/corpus/<target>,
# plus models the project's tool writes). Usage: run.sh SECONDS target...
# FUZZ_JOBS targets (default: the number of cores) fuzz at once, each on one core for SECONDS.
# Ends with one line per target (executions, new corpus entries) and fails if any target found a crash.
set -e
secs=${1:-60}
shift
# one target (the runner calls itself, FUZZ_JOBS at a time): run.sh SECONDS --one TARGET
if [ "${1-}" = "--one" ]; then
  t=$2
  : "${PREFIX_THREADS:=1}"; export PREFIX_THREADS   # one core each
  mkdir -p "dist-fuzz/corpus/$t"
  log=dist-fuzz/fuzz_$t.log
  if dist-fuzz/fuzz_$t -max_total_time="$secs" -timeout=20 -rss_limit_mb=4096 -malloc_limit_mb=4096 -print_final_stats=1 \
       -artifact_prefix="dist-fuzz/artifacts/$t-" "dist-fuzz/corpus/$t" "tests/fuzz/corpus/$t" >"$log" 2>&1; then
    res=ok
  else
    res="FAILED (see $log and dist-fuzz/artifacts/)"
  fi
  execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | awk '{print $2}')
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | awk '{print $2}')
  echo "fuzz_$t: ${execs:-?} executions in ${secs} s, coverage ${cov:-?} edges: $res" >"dist-fuzz/fuzz_$t.result"
  exit 0
fi
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
rm -f dist-fuzz/*.result
printf '%s\n' $targets | xargs -P "${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 1)}" -I{} sh "$0" "$secs" --one {}
status=0
for t in $targets; do
  if [ -f "dist-fuzz/fuzz_$t.result" ]; then cat "dist-fuzz/fuzz_$t.result"; else echo "fuzz_$t: did not run"; status=1; fi
  grep -q ': ok$' "dist-fuzz/fuzz_$t.result" 2>/dev/null || status=1
done
exit $status
