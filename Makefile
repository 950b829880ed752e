# sqlite-prefix — build, test, demo, bench.
#   make          dist/prefix.so (the loadable extension) and dist/libprefix_engine.a
#   make demo     runs examples/quickstart.sql in the sqlite3 shell
#   make test     engine C tests + SQL tests; ends with "N passed, M failed"
#   make bench    prints throughput figures (never fails on time)
#   make bench-compare  the same beside llama.cpp's benchmarks, on the same files and threads
# Run as root on Debian, demo/test/bench first install missing packages.

CC      ?= cc
OPT     ?= -O2
CFLAGS  ?= $(OPT) -g
CFLAGS  += -std=c11 -Wall -Wextra -fPIC -pthread -D_GNU_SOURCE
SAN     ?=
LDLIBS  = -lopenblas -lutf8proc -lm -lpthread
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

.PHONY: all deps demo test test-c test-sql bench bench-compare clean sanitize
all: $(BUILD)/prefix.so $(BUILD)/libprefix_engine.a $(TOOLS)

$(BUILD)/obj/%.o: %.c $(wildcard engine/*.h ext/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SAN) -c $< -o $@

$(BUILD)/libprefix_engine.a: $(ENGINE_OBJ)
	ar rcs $@ $^

$(BUILD)/prefix.so: $(EXT_OBJ) $(ENGINE_OBJ)
	$(CC) $(SAN) -shared -o $@ $^ $(LDLIBS)

$(BUILD)/test_%: tests/test_%.c tests/testlib.h $(BUILD)/libprefix_engine.a
	$(CC) $(CFLAGS) $(SAN) -Iengine $< $(BUILD)/libprefix_engine.a -o $@ $(TEST_LDLIBS)

$(BUILD)/prefix-mkmodel: tests/mkmodel.c $(BUILD)/libprefix_engine.a
	$(CC) $(CFLAGS) $(SAN) -Iengine $< $(BUILD)/libprefix_engine.a -o $@ $(TEST_LDLIBS)

$(BUILD)/prefix-bench: tests/bench.c $(BUILD)/libprefix_engine.a
	$(CC) $(CFLAGS) $(SAN) -Iengine $< $(BUILD)/libprefix_engine.a -o $@ $(TEST_LDLIBS)

deps:
	@sh tests/deps.sh

demo: deps all
	sed 's|\.\./shared/models/|$(PREFIX_MODEL_DIR)/|g' examples/quickstart.sql | sqlite3 :memory:
	sed 's|\.\./shared/models/|$(PREFIX_MODEL_DIR)/|g' examples/customers.sql | sqlite3 :memory:

test: deps all $(TEST_BINS)
	@sh tests/run.sh $(BUILD)

bench: deps all
	@sh tests/bench.sh $(BUILD)

# side by side with llama.cpp (built once from the npm package node-llama-cpp); see docs/performance.md
bench-compare: deps all
	@sh tests/bench_compare.sh $(BUILD)

# The same tests under AddressSanitizer + UBSan, in their own build folder.
sanitize:
	$(MAKE) test BUILD=dist-san OPT=-O1 SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"

clean:
	rm -rf dist dist-san
