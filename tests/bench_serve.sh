#!/bin/sh
# make bench-serve: many customers online at once (docs/performance.md). For the 134M Llama in F32 and Q4_K_M:
# our clients (tests/bench_serve.c: 1, 4, 16, 64 threads, each on its own connection with its own prefix) and,
# in the same run, llama-server with 16 parallel slots (continuous batching) driven by as many HTTP clients
# (tests/bench_serve_http.py). llama-server is built from the node-llama-cpp source bench-compare unpacks
# (make bench-compare first). Prints figures; never fails on time.
BUILD=${1:-dist}
CLIENTS=${CLIENTS:-1 4 16 64}
PORT=${PORT:-8093}
L=$BUILD/llama.cpp
B=$L/build/bin
M=$BUILD/bench
THREADS=${THREADS:-$(nproc)}
[ -f "$M/llama134m.gguf" ] || "$BUILD/prefix-mkmodel" "$M/llama134m.gguf" --layers 12 --embd 768 --heads 12 --ff 2048 --vocab 32000 --ctx 1024
if [ ! -x "$B/llama-server" ]; then
  if [ ! -x "$B/llama-quantize" ]; then echo "bench-serve: run make bench-compare first (it builds llama.cpp)" >&2; exit 1; fi
  src=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$L/build/CMakeCache.txt")
  echo "bench-serve: building llama-server (once)"
  { cmake -S "$src" -B "$L/build" -DLLAMA_BUILD_SERVER=ON && cmake --build "$L/build" -j"$(nproc)" --target llama-server; } \
    >"$L/build-server.log" 2>&1 || { echo "bench-serve: building llama-server failed; see $L/build-server.log" >&2; exit 1; }
fi
[ -f "$M/llama134m-lq-Q4_K_M.gguf" ] || "$B/llama-quantize" "$M/llama134m.gguf" "$M/llama134m-lq-Q4_K_M.gguf" Q4_K_M >/dev/null 2>&1
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores, $THREADS threads, $(date -u +%Y-%m-%d)"
for f in llama134m.gguf llama134m-lq-Q4_K_M.gguf; do
  echo "== $f: sqlite-prefix, each client its own connection and prefix"
  PREFIX_THREADS=$THREADS "$BUILD/bench-serve" "$M/$f" $CLIENTS
  echo "== $f: llama-server -np 16 (continuous batching), the same prompts without a prefix"
  "$B/llama-server" -m "$M/$f" -np 16 -c 4096 -t "$THREADS" --port "$PORT" >"$BUILD/llama-server.log" 2>&1 &
  pid=$!
  i=0
  until curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 || [ $i -gt 600 ]; do sleep 1; i=$((i + 1)); done
  python3 tests/bench_serve_http.py "http://127.0.0.1:$PORT" $CLIENTS
  kill "$pid"; wait "$pid" 2>/dev/null
done
