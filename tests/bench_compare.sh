#!/bin/sh
# make bench-compare: this project's bench and llama.cpp's, one after the other, on the same GGUF files
# with the same threads, and the ratios. Not part of make test (the first run builds llama.cpp: ~10 min
# on 2 cores).
#
# llama.cpp comes from the source shipped in the npm package node-llama-cpp (pinned below): its
# llama/gitRelease.bundle is cloned and built for this CPU (llama-bench, llama-batched-bench,
# llama-simple, llama-quantize) into $BUILD/llama.cpp. The models: a 134M Llama (dim 768, 12 layers,
# ff 2048, vocab 32000) written in F32 by prefix-mkmodel, then converted by llama.cpp's own
# llama-quantize into F16, Q8_0, Q4_K_M and Q6_K, as the files users download are made.
#
#   make bench-compare [THREADS=n] [ISA=avx2|avxvnni]
#
# ISA=avx2 measures the AVX2 paths on any x86 machine, side by side: this project with PREFIX_KERNEL=avx2,
# and a second llama.cpp built without GGML_NATIVE, with only AVX, AVX2, FMA, F16C and BMI2 enabled
# ($BUILD/llama.cpp-avx2), so an AVX-512 machine stands in for the laptops and desktops that lack it.
# ISA=avxvnni does the same for AVX2 + AVX-VNNI (Intel 12th generation and later, AMD Zen 5) where the CPU
# has it: PREFIX_KERNEL=avxvnni against a llama.cpp built with GGML_AVX_VNNI ($BUILD/llama.cpp-avxvnni).
set -e
BUILD=${1:-dist}
THREADS=${THREADS:-$(nproc)}
NODE_LLAMA_CPP=3.22.1
ISA=${ISA:-native}
case "$ISA" in
  native) L=$BUILD/llama.cpp; CPU_FLAGS="-DGGML_NATIVE=ON" ;;
  avx2) L=$BUILD/llama.cpp-avx2; export PREFIX_KERNEL=avx2
        CPU_FLAGS="-DGGML_NATIVE=OFF -DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_BMI2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX_VNNI=OFF -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF" ;;
  avxvnni) L=$BUILD/llama.cpp-avxvnni; export PREFIX_KERNEL=avxvnni
        CPU_FLAGS="-DGGML_NATIVE=OFF -DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_BMI2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX_VNNI=ON -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF" ;;
  *) echo "bench-compare: ISA is native, avx2 or avxvnni, got '$ISA'" >&2; exit 2 ;;
esac
B=$L/build/bin
if [ "$ISA" = avxvnni ] && ! grep -m1 '^flags' /proc/cpuinfo | grep -qw avx_vnni; then
  echo "bench-compare: ISA=avxvnni needs a CPU with AVX-VNNI (this one has none)" >&2; exit 2
fi

need() { command -v "$1" >/dev/null 2>&1; }
if [ ! -x "$B/llama-bench" ]; then
  missing=""
  for c in cmake g++ git npm; do need $c || missing="$missing $c"; done
  if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ]; then
      pkgs=$(echo "$missing" | sed 's/npm/nodejs npm/')
      echo "bench-compare: installing$pkgs"
      DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
    else
      echo "bench-compare: needs$missing (sudo apt-get install cmake g++ git nodejs npm)" >&2; exit 1
    fi
  fi
  echo "bench-compare: building llama.cpp from node-llama-cpp@$NODE_LLAMA_CPP (once; ~10 minutes on 2 cores)"
  rm -rf "$L" && mkdir -p "$L"
  (cd "$L" && npm pack -q "node-llama-cpp@$NODE_LLAMA_CPP" >/dev/null && tar xzf "node-llama-cpp-$NODE_LLAMA_CPP.tgz" &&
   git clone -q package/llama/gitRelease.bundle src 2>/dev/null &&
   cmake -S src -B build -DCMAKE_BUILD_TYPE=Release $CPU_FLAGS -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
         -DLLAMA_BUILD_SERVER=OFF >cmake.log 2>&1 &&
   cmake --build build -j"$(nproc)" --target llama-bench llama-batched-bench llama-simple llama-quantize >build.log 2>&1) ||
    { echo "bench-compare: building llama.cpp failed; see $L/cmake.log and $L/build.log" >&2; exit 1; }
fi

M=$BUILD/bench
mkdir -p "$M"
[ -f "$M/llama134m.gguf" ] || "$BUILD/prefix-mkmodel" "$M/llama134m.gguf" --layers 12 --embd 768 --heads 12 --ff 2048 --vocab 32000 --ctx 1024
FILES="$M/llama134m.gguf"
for t in F16 Q8_0 Q4_K_M Q6_K; do
  f=$M/llama134m-lq-$t.gguf
  [ -f "$f" ] || "$B/llama-quantize" "$M/llama134m.gguf" "$f" $t >/dev/null 2>&1
  FILES="$FILES $f"
done

flags=$(grep -m1 '^flags' /proc/cpuinfo)
isa_have=$(for f in avx2 fma f16c avx_vnni avx512f avx512_vnni; do case " $flags " in *" $f "*) printf '%s ' $f ;; esac; done)
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores, $THREADS threads, $(date -u +%Y-%m-%d); CPU has: $isa_have"
kernel=$(sqlite3 :memory: ".load $BUILD/prefix" "SELECT json_extract(prefix_system(), '\$.kernel')" 2>&1)
echo "measured: ISA=$ISA (ours: kernel $kernel; llama.cpp: $CPU_FLAGS)"
echo "llama.cpp: $(cat "$L/package/llama/llama.cpp.info.json" 2>/dev/null | tr -d ' \n') from node-llama-cpp@$NODE_LLAMA_CPP"
printf '%-10s | %-26s | %-26s | %-24s | %-22s | %s\n' "file" "prefill t/s (pp128)" "decode t/s (tg128)" "16 seqs t/s (batched)" \
  "peak MB (32 tokens)" "ours: train t/s, MB"
printf '%-10s | %8s %8s %7s | %8s %8s %7s | %7s %7s %7s | %6s %6s %7s |\n' "" ours llama ratio ours llama ratio ours llama ratio \
  ours llama ratio
# The two programs take turns, ROUNDS times each, and each figure is the best of its rounds: these
# machines are shared and noisy (±15% from one minute to the next), and taking turns exposes both
# programs to the same noise.
ROUNDS=${ROUNDS:-3}
best() { awk -v a="$1" -v b="$2" 'BEGIN { print (b == "" || a + 0 > b + 0) ? a : b }'; }
for f in $FILES; do
  name=$(basename "$f" .gguf | sed 's/llama134m-lq-//; s/llama134m/F32/')
  opp=""; odec=""; o16=""; otr=""; ogen=""; otmb=""; lpp=""; ltg=""; lbb=""; lrss=""
  for r in $(seq "$ROUNDS"); do
    ours=$("$BUILD/prefix-bench" --threads "$THREADS" --csv "$f")
    opp=$(best "$(echo "$ours" | cut -d, -f4)" "$opp"); odec=$(best "$(echo "$ours" | cut -d, -f5)" "$odec")
    o16=$(best "$(echo "$ours" | cut -d, -f6)" "$o16"); otr=$(best "$(echo "$ours" | cut -d, -f7)" "$otr")
    ogen=$(echo "$ours" | cut -d, -f8); otmb=$(echo "$ours" | cut -d, -f9)
    lb=$("$B/llama-bench" -m "$f" -t "$THREADS" -p 128 -n 128 -r 1 -o csv 2>/dev/null)
    # llama-bench's csv: the columns by their header's names
    field() { echo "$lb" | awk -F, -v want="$1" -v np="$2" -v ng="$3" 'NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next }
      { gsub(/"/, ""); if ($c["n_prompt"] == np && $c["n_gen"] == ng) print $c[want] }'; }
    lpp=$(best "$(field avg_ts 128 0)" "$lpp"); ltg=$(best "$(field avg_ts 0 128)" "$ltg")
    lbb=$(best "$("$B/llama-batched-bench" -m "$f" -t "$THREADS" -c 2048 -npp 26 -ntg 64 -npl 16 2>/dev/null |
                 awk -F'|' '$2 ~ /26/ {gsub(/ /,"",$9); print $9}')" "$lbb")
    lrss=$("$BUILD/prefix-bench" --peak "$B/llama-simple" -m "$f" -n 32 "Once upon a time")
  done
  [ "$name" = F32 ] && f32_train=$otr
  awk -v n="$name" -v opp="$opp" -v odec="$odec" -v o16="$o16" -v otr="$otr" -v ogen="$ogen" -v otmb="$otmb" \
      -v lpp="$lpp" -v ltg="$ltg" -v lbb="$lbb" -v lrss="$lrss" 'BEGIN {
    printf "%-10s | %8.0f %8.0f %6.2fx | %8.1f %8.1f %6.2fx | %7.0f %7.0f %6.2fx | %6d %6d %6.2fx | %7.0f %6d\n",
      n, opp, lpp, opp / lpp, odec, ltg, odec / ltg, o16, lbb, o16 / lbb, ogen, lrss, ogen / lrss, otr, otmb }'
done
echo "ratio: ours / llama.cpp (peak MB: lower is better); best of $ROUNDS rounds taken in turns. llama.cpp: llama-bench -p 128 -n 128, llama-batched-bench"
echo "-npp 26 -ntg 64 -npl 16 (S_TG), llama-simple -n 32; ours: prefix-bench (tests/bench.c, the same shapes)."
# Training beside PyTorch (Debian's python3-torch, when installed): the same prefix-tuning step as
# prefix-bench's (tests/bench_torch.py), f32 weights of the same shape; best of ROUNDS, taken in turns with
# ours above. With ISA=avx2 or avxvnni, PyTorch's own kernels and its OpenBLAS are held to AVX2 too.
if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
  tt=""
  for r in $(seq "$ROUNDS"); do
    if [ "$ISA" != native ]; then t=$(ATEN_CPU_CAPABILITY=avx2 OPENBLAS_CORETYPE=Haswell /usr/bin/python3 tests/bench_torch.py "$THREADS")
    else t=$(/usr/bin/python3 tests/bench_torch.py "$THREADS"); fi
    tt=$(best "$t" "$tt")
  done
  awk -v o="$f32_train" -v t="$tt" -v v="$(/usr/bin/python3 -c 'import torch; print(torch.__version__)')" 'BEGIN {
    printf "training (F32, batch 8 x 128, prefix 10, MLP): ours %.0f t/s, PyTorch %s %.0f t/s = %.2fx\n", o, v, t, o / t }'
else
  echo "training beside PyTorch: not measured (apt-get install python3-torch)"
fi
