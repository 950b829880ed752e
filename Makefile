# sqlite-prefix — build, test, install, demo, bench.
#   make               dist/prefix.so (loadable extension), dist/libsqlite_prefix.a (static: extension + engine),
#                      dist/libprefix_engine.a (the engine alone), dist/prefix-mkmodel, dist/prefix-bench
#   make demo          runs examples/quickstart.sql and examples/customers.sql in the sqlite3 shell
#   make cluster       dist/prefix-node, prefix-worker, prefix-cluster (dqlite; docs/scaling.md)
#   make cluster-demo  3 nodes and 2 workers on 127.0.0.1 train and serve examples/customers.sql
#   make test          engine C tests, SQL tests, install/pkg-config/examples/c and progress checks;
#                      ends with "N passed, M failed"
#   make install       PREFIX (/usr/local) and DESTDIR as usual; make install-cluster adds the cluster
#                      programs and sql/*.sql (share/sqlite-prefix); make uninstall removes both
#   make test-bindings the Python and Node packages (bindings/); python-package / node-package bundle the .so
#   make dist          wheels and an npm package for each platform this machine builds (x86-64, arm64 cross)
#   make sanitize      the tests under AddressSanitizer + UBSan;  make fuzz | oom | tsan: docs/security.md
#   make test-loaded   the waiting checks at nice 19 beside a busy build loop (no test depends on speed)
#   make test-arm64    cross-compiled for ARM64, the kernel/tokenizer/generation/training tests under qemu
#   make bench         throughput figures (never fails on time); make bench-compare: beside llama.cpp
#                      (ISA=avx2: the AVX2 paths beside an AVX2-only llama.cpp, on any x86 machine)
#   make eval          the paper's E2E experiments through SQL (docs/evaluation.md; about 7 minutes)
#   make eval-privacy  held-out loss at epsilon 1, 3, 8 and a planted secret's exposure, with and without dp (docs/evaluation.md)
#   make bench-customers  time per customer's prefix, steps and held-out loss: schedules side by side (docs/training.md)
# Run as root on Debian, the targets first install missing packages (tests/deps.sh).

CC      ?= cc
OPT     ?= -O2
CFLAGS  ?= $(OPT) -g
CFLAGS  += -std=c11 -Wall -Wextra -fPIC -pthread -D_GNU_SOURCE
SAN     ?=
# the SIMD kernel files' sanitizers (default: SAN's). The fuzz build gives them ASan only: clang's UBSan and
# coverage instrumentation of their intrinsics take 100 s per file and guide no fuzzer (make sanitize runs UBSan there)
KERNEL_SAN ?= $(SAN)
KERNEL_SRC  = engine/kernels_avx2.c engine/kernels_avxvnni.c engine/kernels_avx512.c
LDLIBS  = -lopenblas -lutf8proc -lm -lpthread
# macOS (Homebrew: brew install sqlite openblas utf8proc pkg-config; not tested here, see docs/platforms.md):
# the extension is prefix.dylib, OpenBLAS (keg-only) and utf8proc come through pkg-config
SOEXT   = so
SHARED  = -shared
ifeq ($(shell uname -s),Darwin)
  SOEXT  = dylib
  SHARED = -dynamiclib
  export PKG_CONFIG_PATH := $(PKG_CONFIG_PATH):$(shell brew --prefix openblas 2>/dev/null)/lib/pkgconfig
  CFLAGS += $(shell pkg-config --cflags openblas libutf8proc sqlite3 2>/dev/null)
  LDLIBS  = $(shell pkg-config --libs openblas libutf8proc 2>/dev/null) -lm -lpthread
endif
TEST_LDLIBS = -lsqlite3 $(LDLIBS)
BUILD   ?= dist

PREFIX_MODEL_DIR ?= ../shared/models
export PREFIX_MODEL_DIR

ENGINE_SRC = $(wildcard engine/*.c)
EXT_SRC    = $(wildcard ext/*.c)
ENGINE_OBJ = $(patsubst %.c,$(BUILD)/obj/%.o,$(ENGINE_SRC))
EXT_OBJ    = $(patsubst %.c,$(BUILD)/obj/%.o,$(EXT_SRC))
TEST_BINS  = $(patsubst tests/%.c,$(BUILD)/%,$(wildcard tests/test_*.c))
TOOLS      = $(BUILD)/prefix-mkmodel $(BUILD)/prefix-bench
# the extension compiled into an app (SQLITE_CORE: direct calls to the app's SQLite)
CORE_OBJ   = $(patsubst %.c,$(BUILD)/obj-core/%.o,$(EXT_SRC))
HEADERS    = ext/sqlite_prefix.h engine/prefix_engine.h engine/train.h engine/metrics.h
VERSION    = $(shell sed -n 's/^\#define PF_VERSION "\(.*\)"/\1/p' engine/prefix_engine.h)

# make install: PREFIX (default /usr/local) and DESTDIR as usual
PREFIX     ?= /usr/local
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
BINDIR     ?= $(PREFIX)/bin

.PHONY: FORCE all cluster cluster-demo bench-cluster bench-serve install-cluster deps demo test test-c test-sql bench bench-compare eval eval-privacy bench-customers clean sanitize test-loaded test-arm64 dist fuzz fuzz-build oom tsan static install uninstall test-bindings python-package node-package
all: $(BUILD)/prefix.$(SOEXT) $(BUILD)/libprefix_engine.a $(BUILD)/libsqlite_prefix.a $(TOOLS)
static: $(BUILD)/libsqlite_prefix.a

$(BUILD)/obj/%.o: %.c $(wildcard engine/*.h ext/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(if $(filter $(KERNEL_SRC),$<),$(KERNEL_SAN),$(SAN)) -I$(BUILD) -c $< -o $@

# prefix_debug's commit and build flags, rewritten only when they change
PF_COMMIT := $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)$(shell git diff --quiet HEAD 2>/dev/null || echo -modified)
$(BUILD)/buildinfo.h: FORCE
	@mkdir -p $(BUILD)
	@printf '#define PF_COMMIT "%s"\n#define PF_BUILD_FLAGS "%s"\n' '$(PF_COMMIT)' '$(strip $(CC) $(CFLAGS) $(SAN))' >$@.tmp
	@cmp -s $@.tmp $@ && rm -f $@.tmp || mv $@.tmp $@
$(BUILD)/obj/ext/fn_help.o $(BUILD)/obj-core/ext/fn_help.o: $(BUILD)/buildinfo.h
# the AVX-VNNI table is the AVX2 file compiled again
$(BUILD)/obj/engine/kernels_avxvnni.o $(BUILD)/obj-core/engine/kernels_avxvnni.o: engine/kernels_avx2.c
FORCE:

$(BUILD)/obj-core/%.o: %.c $(wildcard engine/*.h ext/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SAN) -I$(BUILD) -DSQLITE_CORE -c $< -o $@

$(BUILD)/libprefix_engine.a: $(ENGINE_OBJ)
	rm -f $@
	ar rcs $@ $^

# the static library an app links with its SQLite: the extension (SQLITE_CORE) and the engine
$(BUILD)/libsqlite_prefix.a: $(CORE_OBJ) $(ENGINE_OBJ)
	rm -f $@
	ar rcs $@ $^

install: all
	install -d $(DESTDIR)$(LIBDIR)/sqlite-prefix $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(INCLUDEDIR)/sqlite-prefix $(DESTDIR)$(BINDIR) \
	  $(DESTDIR)$(PREFIX)/share/sqlite-prefix
	install -m 644 sql/schema.sql $(DESTDIR)$(PREFIX)/share/sqlite-prefix/schema.sql
	install -m 755 $(BUILD)/prefix.$(SOEXT) $(DESTDIR)$(LIBDIR)/sqlite-prefix/prefix.$(SOEXT)
	install -m 644 $(BUILD)/libsqlite_prefix.a $(DESTDIR)$(LIBDIR)/libsqlite_prefix.a
	@printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$(patsubst $(PREFIX)/%,$${prefix}/%,$(LIBDIR))' \
	  'includedir=$(patsubst $(PREFIX)/%,$${prefix}/%,$(INCLUDEDIR))/sqlite-prefix' '' 'Name: sqlite-prefix' \
	  'Description: prefix-tuning inside SQLite (static library; the loadable extension is $${libdir}/sqlite-prefix/prefix.$(SOEXT))' \
	  'Version: $(VERSION)' 'Requires.private: sqlite3' 'Cflags: -I$${includedir}' 'Libs: -L$${libdir} -lsqlite_prefix' \
	  'Libs.private: -lopenblas -lutf8proc -lm -lpthread' >$(DESTDIR)$(LIBDIR)/pkgconfig/sqlite-prefix.pc
	install -m 644 $(HEADERS) $(DESTDIR)$(INCLUDEDIR)/sqlite-prefix/
	install -m 755 $(BUILD)/prefix-mkmodel $(DESTDIR)$(BINDIR)/prefix-mkmodel

# the cluster programs (needs libdqlite-dev to build, libdqlite0 to run) and the SQL they expect
install-cluster: cluster
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(PREFIX)/share/sqlite-prefix
	install -m 755 $(CLUSTER_BINS) $(DESTDIR)$(BINDIR)/
	install -m 644 sql/schema.sql sql/cluster.sql $(DESTDIR)$(PREFIX)/share/sqlite-prefix/

# the host-language packages with the extension bundled (bindings/python, bindings/node)
python-package: $(BUILD)/prefix.$(SOEXT)
	cp $(BUILD)/prefix.$(SOEXT) bindings/python/sqlite_prefix/prefix.$(SOEXT)
	python3 bindings/python/mkwheel.py $(BUILD)/prefix.$(SOEXT) $(BUILD)
node-package: $(BUILD)/prefix.$(SOEXT)
	cp $(BUILD)/prefix.$(SOEXT) bindings/node/prefix.$(SOEXT)
# every platform this machine can build (linux-x86_64; linux-aarch64 cross-compiled when the cross compiler
# and :arm64 packages are installed), as wheels and one npm package with a folder per platform (bindings/dist.sh)
dist: all
	@sh bindings/dist.sh $(BUILD)
# their tests: Debian's python3, and Node with better-sqlite3 built from the npm registry (tests/bindings.sh)
test-bindings: all
	@sh tests/bindings.sh $(BUILD)

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/sqlite-prefix/prefix.$(SOEXT) $(DESTDIR)$(LIBDIR)/libsqlite_prefix.a \
	  $(DESTDIR)$(LIBDIR)/pkgconfig/sqlite-prefix.pc $(DESTDIR)$(BINDIR)/prefix-mkmodel \
	  $(addprefix $(DESTDIR)$(INCLUDEDIR)/sqlite-prefix/,$(notdir $(HEADERS))) \
	  $(addprefix $(DESTDIR)$(BINDIR)/,prefix-node prefix-worker prefix-cluster) \
	  $(DESTDIR)$(PREFIX)/share/sqlite-prefix/schema.sql $(DESTDIR)$(PREFIX)/share/sqlite-prefix/cluster.sql
	@for d in $(DESTDIR)$(LIBDIR)/sqlite-prefix $(DESTDIR)$(INCLUDEDIR)/sqlite-prefix $(DESTDIR)$(PREFIX)/share/sqlite-prefix; do \
	  if [ -d "$$d" ]; then rmdir "$$d" 2>/dev/null || echo "uninstall: $$d is not empty (files not installed by make install): left as it is"; fi; done

$(BUILD)/prefix.$(SOEXT): $(EXT_OBJ) $(ENGINE_OBJ)
	$(CC) $(SAN) $(SHARED) -o $@ $^ $(LDLIBS)

$(BUILD)/test_%: tests/test_%.c tests/testlib.h $(BUILD)/libprefix_engine.a
	$(CC) $(CFLAGS) $(SAN) -Iengine $< $(BUILD)/libprefix_engine.a -o $@ $(TEST_LDLIBS)

$(BUILD)/prefix-mkmodel: tests/mkmodel.c $(BUILD)/libprefix_engine.a
	$(CC) $(CFLAGS) $(SAN) -Iengine $< $(BUILD)/libprefix_engine.a -o $@ $(TEST_LDLIBS)

$(BUILD)/prefix-bench: tests/bench.c $(BUILD)/libprefix_engine.a
	$(CC) $(CFLAGS) $(SAN) -Iengine $< $(BUILD)/libprefix_engine.a -o $@ $(TEST_LDLIBS)
$(BUILD)/bench-serve: tests/bench_serve.c $(BUILD)/libsqlite_prefix.a
	$(CC) $(CFLAGS) $(SAN) -Iengine $< $(BUILD)/libsqlite_prefix.a -o $@ $(TEST_LDLIBS)

deps:
	@sh tests/deps.sh

# the dqlite cluster tools (ext/cluster, docs/scaling.md): prefix-node, prefix-worker, prefix-cluster.
# They need libdqlite-dev (tests/deps.sh installs it as root); the extension itself does not.
CLUSTER_BINS = $(BUILD)/prefix-node $(BUILD)/prefix-worker $(BUILD)/prefix-cluster
CLUSTER_HDR  = ext/cluster/dqclient.h ext/sqlite_prefix.h engine/prefix_engine.h
cluster: $(CLUSTER_BINS)
$(BUILD)/obj/ext/cluster/dqclient.o: ext/cluster/dqclient.c ext/cluster/dqclient.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SAN) -c $< -o $@
$(BUILD)/obj/ext/cluster/models.o: ext/cluster/models.c ext/cluster/models.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SAN) -c $< -o $@
$(BUILD)/prefix-node $(BUILD)/prefix-worker: $(BUILD)/prefix-%: ext/cluster/%.c $(CLUSTER_HDR) ext/cluster/models.h $(BUILD)/obj/ext/cluster/dqclient.o $(BUILD)/obj/ext/cluster/models.o $(BUILD)/libsqlite_prefix.a
	$(CC) $(CFLAGS) $(SAN) $< $(BUILD)/obj/ext/cluster/dqclient.o $(BUILD)/obj/ext/cluster/models.o $(BUILD)/libsqlite_prefix.a -o $@ -ldqlite $(TEST_LDLIBS)
$(BUILD)/prefix-cluster: ext/cluster/cli.c $(CLUSTER_HDR) $(BUILD)/obj/ext/cluster/dqclient.o
	$(CC) $(CFLAGS) $(SAN) $< $(BUILD)/obj/ext/cluster/dqclient.o -o $@

# three prefix-node processes and two prefix-worker processes on 127.0.0.1 (examples/cluster-demo.sh)
cluster-demo: deps all cluster
	BUILD=$(BUILD) sh examples/cluster-demo.sh

demo: deps all
	sed 's|\.\./shared/models/|$(PREFIX_MODEL_DIR)/|g' examples/quickstart.sql | sqlite3 :memory:
	sed 's|\.\./shared/models/|$(PREFIX_MODEL_DIR)/|g' examples/customers.sql | sqlite3 :memory:

test: deps all cluster $(TEST_BINS)
	@sh tests/run.sh $(BUILD)

bench: deps all
	@sh tests/bench.sh $(BUILD)

# many customers online at once: 1, 4, 16, 64 clients on their own connections and prefixes, beside llama-server
# (built from the same node-llama-cpp source as bench-compare) with as many parallel slots; see docs/performance.md
bench-serve: deps all $(BUILD)/bench-serve
	@sh tests/bench_serve.sh $(BUILD)

# side by side with llama.cpp (built once from the npm package node-llama-cpp); see docs/performance.md
# the paper's E2E table at our scale (tests/eval/e2e.sh; writes dist/eval/results.md)
eval: deps all
	PREFIX_DATA_DIR=$${PREFIX_DATA_DIR:-../shared/data} BUILD=$(BUILD) tests/eval/e2e.sh

# differential privacy's price and effect: held-out NLL at epsilon 1, 3, 8 and without dp, and a canary's exposure
# (tests/eval/privacy.sh; writes dist/eval/privacy.md; docs/evaluation.md)
eval-privacy: deps all
	PREFIX_DATA_DIR=$${PREFIX_DATA_DIR:-../shared/data} BUILD=$(BUILD) tests/eval/privacy.sh

# E2E restaurants as customers, one GROUP BY statement per schedule: seconds per customer, steps, held-out NLL;
# recall of 16 TinyStories pairs; a 20-pair customer on the 134M model (tests/eval/customers.sh; docs/training.md)
bench-customers: deps all
	PREFIX_DATA_DIR=$${PREFIX_DATA_DIR:-../shared/data} BUILD=$(BUILD) tests/eval/customers.sh

# the cluster's figures (docs/scaling.md): prefixes/minute by 1 and 2 workers, tokens/s through a node
bench-cluster: deps all cluster
	@sh tests/bench_cluster.sh $(BUILD)

bench-compare: deps all
	@ISA=$(ISA) sh tests/bench_compare.sh $(BUILD)

# ARM64 under emulation: cross-compiled (gcc-aarch64-linux-gnu, the :arm64 -dev packages) into dist-arm64,
# the kernel, tokenizer, generation and training tests run under qemu-user with two CPUs (tests/arm64.sh)
test-arm64:
	+@sh tests/arm64.sh dist-arm64

# The same tests under AddressSanitizer + UBSan, in their own build folder.
sanitize:
	$(MAKE) test BUILD=dist-san OPT=-O1 SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"

# The checks that wait on threads, processes and nodes, at nice 19 beside a build loop that keeps every core
# busy, in the sanitizer build: no test may depend on the machine's speed (tests/loaded.sh; 15-30 minutes)
test-loaded:
	$(MAKE) BUILD=dist-san OPT=-O1 SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" all cluster dist-san/test_sqlapi dist-san/test_gguf
	@sh tests/loaded.sh dist-san

# libFuzzer targets (clang, ASan + UBSan) on GGUF files, prefix BLOBs, tokenizers, options, the SQL
# surface and the cluster client's parsing of server responses; each runs FUZZ_SECONDS (default 60). Long runs: make fuzz FUZZ_SECONDS=3600. See docs/security.md.
FUZZ_TARGETS = gguf prefix tokenize options sql dqclient
FUZZ_SECONDS ?= 60
FUZZ_SAN = -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_BINS = $(patsubst %,dist-fuzz/fuzz_%,$(FUZZ_TARGETS))
FUZZ_EXT_OBJ = $(patsubst %.c,dist-fuzz/obj/%.o,$(EXT_SRC))

fuzz-build:
	$(MAKE) BUILD=dist-fuzz CC=clang OPT=-O1 SAN="-fsanitize=fuzzer-no-link $(FUZZ_SAN)" \
	  KERNEL_SAN="-fsanitize=address -fno-omit-frame-pointer" dist-fuzz/libprefix_engine.a $(FUZZ_EXT_OBJ) dist-fuzz/prefix-mkmodel
	$(MAKE) BUILD=dist-fuzz CC=clang $(FUZZ_BINS)

dist-fuzz/fuzz_gguf dist-fuzz/fuzz_prefix dist-fuzz/fuzz_tokenize: dist-fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/common.h dist-fuzz/libprefix_engine.a
	clang -g -O1 -fsanitize=fuzzer $(FUZZ_SAN) -Iengine $< dist-fuzz/libprefix_engine.a -o $@ $(LDLIBS)

dist-fuzz/fuzz_options dist-fuzz/fuzz_sql: dist-fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/sqlharness.h tests/fuzz/common.h dist-fuzz/libprefix_engine.a $(FUZZ_EXT_OBJ)
	clang -g -O1 -fsanitize=fuzzer $(FUZZ_SAN) -Iengine $< $(FUZZ_EXT_OBJ) dist-fuzz/libprefix_engine.a -o $@ $(TEST_LDLIBS)

# the cluster client's response parsing (ext/cluster/dqclient.c), fed by a socket pair
dist-fuzz/fuzz_dqclient: tests/fuzz/fuzz_dqclient.c ext/cluster/dqclient.c ext/cluster/dqclient.h
	clang -g -O1 -fsanitize=fuzzer $(FUZZ_SAN) -D_GNU_SOURCE $< -o $@

fuzz:
	@sh tests/deps.sh clang libclang-rt-dev
	+@sh tests/fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# Allocation-failure injection: every allocation of the engine and the extension in load, tokenize, chat,
# generate, batch, score, train and info fails in turn (tests/oom/oom.c); ASan + LeakSanitizer build.
OOM_SAN = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OOM_EXT_OBJ = $(patsubst %.c,dist-oom/obj/%.o,$(EXT_SRC))
oom: deps all
	$(MAKE) BUILD=dist-oom OPT=-O1 SAN="$(OOM_SAN)" dist-oom/libprefix_engine.a $(OOM_EXT_OBJ)
	$(CC) -O1 -g $(OOM_SAN) -Iengine tests/oom/oom.c tests/oom/failalloc.c $(OOM_EXT_OBJ) dist-oom/libprefix_engine.a -o dist-oom/oom \
	  -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup,--wrap=aligned_alloc $(TEST_LDLIBS)
	$(BUILD)/prefix-mkmodel dist-oom/oom-tiny.gguf --layers 1 --embd 32 --heads 2 --ff 64 --vocab 260 --ctx 64 --type q4_0
	PREFIX_THREADS=1 OOM_TMP=dist-oom ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=0 dist-oom/oom

# ThreadSanitizer: 8 connections on 8 threads run every kind of statement at once (tests/tsan/threads.c)
TSAN_SECONDS ?= 20
TSAN_EXT_OBJ = $(patsubst %.c,dist-tsan/obj/%.o,$(EXT_SRC))
tsan: deps
	$(MAKE) BUILD=dist-tsan OPT=-O1 SAN="-fsanitize=thread" dist-tsan/libprefix_engine.a $(TSAN_EXT_OBJ)
	$(CC) -O1 -g -fsanitize=thread tests/tsan/threads.c $(TSAN_EXT_OBJ) dist-tsan/libprefix_engine.a -o dist-tsan/threads $(TEST_LDLIBS)
	TSAN_OPTIONS="halt_on_error=1 exitcode=66" TSAN_SECONDS=$(TSAN_SECONDS) dist-tsan/threads
	$(CC) -O1 -g -std=c11 -D_GNU_SOURCE -fsanitize=thread -Iengine tests/test_serve.c dist-tsan/libprefix_engine.a -o dist-tsan/test_serve $(TEST_LDLIBS)
	TSAN_OPTIONS="halt_on_error=1 exitcode=66" dist-tsan/test_serve

clean:
	rm -rf dist dist-san dist-fuzz dist-oom dist-tsan dist-node dist-arm64
