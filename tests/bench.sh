#!/bin/sh
# make bench: throughput and memory on the default model, a 134M Llama in F32, F16, Q8_0 and Q4_K_M
# (written by prefix-mkmodel with the project's own quantizer), and a GPT-2-small shape (random weights,
# into $BUILD/bench/ on first use, about 1.2 GB). Prints figures; never fails on time.
# Side by side with llama.cpp: make bench-compare (tests/bench_compare.sh).
BUILD=${1:-dist}
: "${PREFIX_MODEL_DIR:=../shared/models}"
: "${PREFIX_DATA_DIR:=../shared/data}"
M=$BUILD/bench
mkdir -p "$M"
SHAPE="--layers 12 --embd 768 --heads 12 --ff 2048 --vocab 32000 --ctx 1024"
[ -f "$M/llama134m.gguf" ] || "$BUILD/prefix-mkmodel" "$M/llama134m.gguf" $SHAPE
for t in f16 q8_0 q4_k_m; do
  [ -f "$M/llama134m-$t.gguf" ] || "$BUILD/prefix-mkmodel" "$M/llama134m-$t.gguf" $SHAPE --type $t
done
[ -f "$M/gpt2-small.gguf" ] || "$BUILD/prefix-mkmodel" "$M/gpt2-small.gguf" --arch gpt2 --layers 12 --embd 768 --heads 12 --ff 3072 --ctx 1024 \
    --vocab-from "$PREFIX_DATA_DIR/gpt2/gpt2-vocab-only.gguf"
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores, $(date -u +%Y-%m-%d)"
"$BUILD/prefix-bench" "$PREFIX_MODEL_DIR/stories260K.gguf" "$M/llama134m.gguf" "$M/llama134m-f16.gguf" \
  "$M/llama134m-q8_0.gguf" "$M/llama134m-q4_k_m.gguf" "$M/gpt2-small.gguf" $BENCH_MODELS
echo "tokenizer: 1 MiB of TinyStories through the gpt2 byte-level BPE:"
printf ".load %s/prefix\nSELECT prefix_model_load('g', '%s/gpt2/gpt2-vocab-only.gguf');\n.timer on\nSELECT json_array_length(prefix_tokenize('g', readfile('%s/tinystories/tinystories_train_1MiB_a.txt'))) AS tokens;\n" \
  "$BUILD" "$PREFIX_DATA_DIR" "$PREFIX_DATA_DIR" | sqlite3 :memory: | tail -2
