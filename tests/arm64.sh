#!/bin/sh
# make test-arm64: the extension and engine for ARM64 (Apple Silicon, Graviton, phones, Raspberry Pi),
# cross-compiled with Debian's gcc-aarch64-linux-gnu against the arm64 multiarch -dev packages and run under
# qemu-user, twice: a CPU without the dot-product instructions (QEMU_CPU=cortex-a53, ARMv8.0) and one with
# them (QEMU_CPU=max), so both kernel paths of the NEON table run. Emulated: correctness, not speed.
#
# What runs (the whole suite is too slow under emulation for CI: about 8 minutes here): with the
# dot-product CPU, the kernel checks (test_engine, test_quant: every table the CPU runs against the naive
# reference, the integer products of every block type), the tokenizers and GGUF reader (test_gguf,
# test_families: the family fixtures' token vectors and greedy continuations), gradients and training
# (test_grad, test_paper: gradient checks, deterministic training) and the SQL tests of tokenizing and
# generation through the arm64 sqlite3 shell; with the CPU without it, the kernel checks and the integer
# products again (the SMULL path). ARM_FULL=1 adds test_quant's models part (each fixture's NLL through
# its blocks and its f32 copy, 2.5 minutes) and the training SQL tests (an hour under emulation). Left out
# (x86 runs them): the cluster (no arm64 libdqlite), install, the bindings, test_sqlapi/test_peft/test_gpt2.
#
# As root, missing packages are installed: the arm64 architecture, gcc-aarch64-linux-gnu, qemu-user and
# libc6-dev/libsqlite3-dev/libopenblas-dev/libutf8proc-dev:arm64 and the arm64 shell's libreadline8 and zlib1g. Never sqlite3:arm64 (it would replace the
# host's shell): its .deb is downloaded and the arm64 shell extracted into the build folder.
set -u
B=${1:-dist-arm64}
export QEMU_LD_PREFIX=/
pkgs="gcc-aarch64-linux-gnu qemu-user libc6-dev:arm64 libsqlite3-dev:arm64 libopenblas-dev:arm64 libutf8proc-dev:arm64 libreadline8:arm64 zlib1g:arm64"
missing=""
for p in $pkgs; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"; done
if [ -n "$missing" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "test-arm64: missing Debian packages:$missing (sudo dpkg --add-architecture arm64; sudo apt-get update; sudo apt-get install$missing)" >&2
    exit 1
  fi
  echo "test-arm64: installing$missing"
  export DEBIAN_FRONTEND=noninteractive
  dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
  apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends $missing >/dev/null ||
    { echo "test-arm64: apt-get install$missing failed" >&2; exit 1; }
fi

TESTS="test_engine test_quant test_gguf test_families test_grad test_paper"
make -s BUILD="$B" CC=aarch64-linux-gnu-gcc all $(for t in $TESTS; do printf '%s/%s ' "$B" "$t"; done) || exit 1
QUANT=test_quant:reference,quantizers,kernels,int8,malformed,mkmodel SQL="tokenize generate"
[ -n "${ARM_FULL:-}" ] && QUANT=test_quant SQL="tokenize generate train"

# the arm64 sqlite3 shell, from its .deb (not installed)
if [ ! -x "$B/arm64/usr/bin/sqlite3" ]; then
  mkdir -p "$B/arm64" && (cd "$B/arm64" && apt-get download sqlite3:arm64 >/dev/null 2>&1 && dpkg-deb -x sqlite3_*_arm64.deb .) ||
    { echo "test-arm64: cannot download sqlite3:arm64 (apt-get download sqlite3:arm64)" >&2; exit 1; }
fi
# wrappers: the arm64 programs the tests start (the shell, prefix-mkmodel) run under qemu
mkdir -p "$B/bin"
printf '#!/bin/sh\nexec qemu-aarch64 %s/%s/arm64/usr/bin/sqlite3 "$@"\n' "$(pwd)" "$B" >"$B/bin/sqlite3"
if head -c 4 "$B/prefix-mkmodel" | grep -q ELF; then mv "$B/prefix-mkmodel" "$B/prefix-mkmodel.arm64"; fi   # just built
printf '#!/bin/sh\nexec qemu-aarch64 %s/%s/prefix-mkmodel.arm64 "$@"\n' "$(pwd)" "$B" >"$B/prefix-mkmodel"
chmod +x "$B/bin/sqlite3" "$B/prefix-mkmodel"

status=0
run() {   # run CPU "C tests" "SQL tests"
  echo "== QEMU_CPU=$1: $(QEMU_CPU=$1 "$B/bin/sqlite3" :memory: ".load $B/prefix" "SELECT substr(prefix_debug(), instr(prefix_debug(), 'CPU features'), 200)" 2>&1 | head -2 | tr '\n' ' ')"
  QEMU_CPU=$1 PATH="$(pwd)/$B/bin:$PATH" PF_RUN=qemu-aarch64 PF_TESTS="$2" PF_SQL_TESTS="$3" PF_SHELL_TESTS="" \
    sh tests/run.sh "$B" || status=1
}
run max "test_engine $QUANT test_gguf test_families test_grad test_paper" "$SQL"
run cortex-a53 "test_engine test_quant:int8" ""

# make dist's arm64 packages (the x86 build is made first if missing): the wheel's and the npm package's
# prefix.so load in the arm64 shell
if make -s all >/dev/null && sh bindings/dist.sh dist >/dev/null; then
  t=$(mktemp -d)
  "$(command -v python3 || echo /usr/bin/python3)" -c "import zipfile, sys; zipfile.ZipFile(sys.argv[1]).extract('sqlite_prefix/prefix.so', sys.argv[2])" \
    dist/packages/sqlite_prefix-*-linux_aarch64.whl "$t" && tar -xzf dist/packages/sqlite-prefix-*.tgz -C "$t" package/prebuilt/linux-arm64/prefix.so
  want=$(sed -n 's/^#define PF_VERSION "\(.*\)"/\1/p' engine/prefix_engine.h)
  a=$("$B/bin/sqlite3" :memory: ".load $t/sqlite_prefix/prefix" "SELECT prefix_version()" 2>&1)
  n=$("$B/bin/sqlite3" :memory: ".load $t/package/prebuilt/linux-arm64/prefix" "SELECT prefix_version()" 2>&1)
  if [ "$a $n" = "$want $want" ]; then echo "make dist: the linux_aarch64 wheel's and the npm package's arm64 prefix.so load under qemu ($want)"
  else echo "FAIL make dist arm64 packages: wheel '$a', npm '$n'"; status=1; fi
  rm -rf "$t"
else echo "FAIL make dist"; status=1; fi
exit $status
