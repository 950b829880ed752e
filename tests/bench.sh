#!/bin/sh
# make bench: throughput on the default model (and any models in $BENCH_MODELS).
# Prints figures; never fails on time.
BUILD=${1:-dist}
: "${PREFIX_MODEL_DIR:=../shared/models}"
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores"
"$BUILD/prefix-bench" "$PREFIX_MODEL_DIR/stories260K.gguf" $BENCH_MODELS
