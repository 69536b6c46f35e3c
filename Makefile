# Makefile — builds memkit into build/ (sanitized copy in build/san/); `make test` runs every test.
#
#   make            server, client library, tools, unit tests   -> build/
#   make run        build and start memkitd in the foreground on 127.0.0.1:11211
#   make test       install test dependencies (apt-get, as root), build normal and
#                   ASan+UBSan copies, run every test suite (see tests/run-all.sh)
#   make san        the ASan+UBSan build only                    -> build/san/
#   make fuzz       libFuzzer targets (clang)                    -> build/fuzz/
#
# Sources are found by directory, so a new file needs no Makefile change:
#   src/proto, src/storage, src/util  -> libmkcore.a (shared by server and client)
#   src/server                        -> memkitd
#   src/client                        -> libmemkit.a
#   tests/unit/test_*.c               -> one test binary each, linked with libmkcore.a
#   tests/unit/client/test_*.c        -> the same, also linked with libmemkit.a
#   tests/unit/server/test_*.c        -> the same, also linked with the server's modules

BUILD   ?= build
SAN     ?= 0
CC      ?= cc
OPT     ?= -O2
PYTHON  ?= /usr/bin/python3

ifeq ($(SAN),1)
  SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
  OPT      := -O1
endif

CPPFLAGS := -Iinclude -Isrc -D_GNU_SOURCE -MMD -MP
CFLAGS   := -std=c11 -Wall -Wextra -Werror -g -pthread $(OPT) $(SANFLAGS) $(EXTRA_CFLAGS)
LDFLAGS  := -pthread $(SANFLAGS) $(EXTRA_LDFLAGS)
CLIENT_LIBS := -lnettle -lz -lssl -lcrypto
STORE_LIBS  := -lnettle -lz

CORE_SRC   := $(sort $(wildcard src/proto/*.c src/storage/*.c src/util/*.c))
SERVER_SRC := $(sort $(wildcard src/server/*.c))
CLIENT_SRC := $(sort $(wildcard src/client/*.c))
UNIT_SRC   := $(sort $(wildcard tests/unit/test_*.c))
UNITC_SRC  := $(sort $(wildcard tests/unit/client/test_*.c))
UNITS_SRC  := $(sort $(wildcard tests/unit/server/test_*.c))
FUZZ_SRC   := $(sort $(wildcard tests/fuzz/fuzz_*.c))

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))
CORE_OBJ   := $(call obj,$(CORE_SRC))
SERVER_OBJ := $(call obj,$(SERVER_SRC))
CLIENT_OBJ := $(call obj,$(CLIENT_SRC))
UNIT_BIN   := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC)) \
              $(patsubst tests/unit/client/%.c,$(BUILD)/tests/%,$(UNITC_SRC)) \
              $(patsubst tests/unit/server/%.c,$(BUILD)/tests/%,$(UNITS_SRC))
FUZZ_BIN   := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRC))

.PHONY: all deps test san fuzz run clean unit
all: deps $(BUILD)/memkitd $(BUILD)/libmemkit.a $(UNIT_BIN)

deps:
	@scripts/deps.sh build

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(BUILD)/libmkcore.a: $(CORE_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# The client library needs the protocol layer and utilities, not the store.
$(BUILD)/libmemkit.a: $(CLIENT_OBJ) $(filter-out $(BUILD)/obj/src/storage/%,$(CORE_OBJ))
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

SERVER_LIBS := $(STORE_LIBS) -lsasl2 -lssl -lcrypto
$(BUILD)/memkitd: $(SERVER_OBJ) $(BUILD)/libmkcore.a
	$(CC) $(LDFLAGS) -o $@ $(SERVER_OBJ) $(BUILD)/libmkcore.a $(SERVER_LIBS) -lm

TEST_CC = $(CC) $(CPPFLAGS) $(CFLAGS) -Itests/unit $(LDFLAGS) -o $@ $^
$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libmkcore.a
	@mkdir -p $(dir $@)
	$(TEST_CC) $(STORE_LIBS) -lm

$(BUILD)/tests/%: tests/unit/client/%.c $(BUILD)/libmemkit.a
	@mkdir -p $(dir $@)
	$(TEST_CC) $(CLIENT_LIBS) -lm

# Server-module tests link every server object but main.o.
SERVER_LIB_OBJ := $(filter-out %/main.o,$(SERVER_OBJ))
$(BUILD)/tests/%: tests/unit/server/%.c $(SERVER_LIB_OBJ) $(BUILD)/libmkcore.a
	@mkdir -p $(dir $@)
	$(TEST_CC) $(SERVER_LIBS) -lm

unit: all
	@for t in $(UNIT_BIN); do $$t || exit 1; done

san:
	@$(MAKE) --no-print-directory BUILD=build/san SAN=1 all bench-client

FUZZ_CC    ?= clang
FUZZ_FLAGS := -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Isrc -D_GNU_SOURCE
fuzz: $(FUZZ_BIN)
build/fuzz/%: tests/fuzz/%.c $(CORE_SRC)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $< $(CORE_SRC) $(STORE_LIBS)
# memkitd's command-line parser: one server file
build/fuzz/fuzz_options: tests/fuzz/fuzz_options.c src/server/options.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $< src/server/options.c

# libmemkit's own parsers: the client sources and their libraries too (no store)
build/fuzz/fuzz_client: tests/fuzz/fuzz_client.c $(CORE_SRC) $(CLIENT_SRC)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $< $(filter-out src/storage/%,$(CORE_SRC)) $(CLIENT_SRC) $(CLIENT_LIBS)

RUN_ARGS := -p 11211 -l 127.0.0.1 -v $(if $(filter 0,$(shell id -u)),-u root)
run: all
	@echo "make run: $(BUILD)/memkitd $(RUN_ARGS)$(if $(filter 0,$(shell id -u)),  (-u root: memkitd, like memcached, refuses to run as root without it)); Ctrl-C stops it"
	@$(BUILD)/memkitd $(RUN_ARGS)

test:
	@scripts/deps.sh test
	@$(MAKE) --no-print-directory all bench-client
	@$(MAKE) --no-print-directory san
	@$(MAKE) --no-print-directory fuzz
	@$(MAKE) --no-print-directory client-tsan
	@$(MAKE) --no-print-directory cache-tsan
	@tests/run-all.sh

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

# ---- libmemkit as a shared library + pkg-config, the memkit CLI, client tests, install (issue 3)
#   build/libmemkit.so -> libmemkit.so.0 -> libmemkit.so.0.1.0   (PIC objects of src/client, src/proto, src/util)
#   build/memkit.pc, build/memkit (tools/memkit/*.c), build/client-tests/* (tests/client/*.c, need live servers)
#   make install [PREFIX=/usr/local] [DESTDIR=]
PREFIX     ?= /usr/local
MK_SOVER   := 0
MK_VERSION := 0.1.0
LIB_PIC_OBJ := $(patsubst %.c,$(BUILD)/pic/%.o,$(CLIENT_SRC) $(sort $(wildcard src/proto/*.c src/util/*.c)))
TOOL_OBJ    := $(call obj,$(sort $(wildcard tools/memkit/*.c)))
CLIENT_TEST_BIN := $(patsubst tests/client/%.c,$(BUILD)/client-tests/%,$(sort $(wildcard tests/client/*.c)))

all: $(BUILD)/libmemkit.so $(BUILD)/memkit.pc $(BUILD)/memkit $(CLIENT_TEST_BIN)
.PHONY: install

$(BUILD)/pic/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -fPIC -c $< -o $@

$(BUILD)/libmemkit.so.$(MK_VERSION): $(LIB_PIC_OBJ)
	$(CC) -shared -Wl,-soname,libmemkit.so.$(MK_SOVER) -Wl,--no-undefined $(LDFLAGS) -o $@ $^ $(CLIENT_LIBS)

$(BUILD)/libmemkit.so: $(BUILD)/libmemkit.so.$(MK_VERSION)
	ln -sf libmemkit.so.$(MK_VERSION) $(BUILD)/libmemkit.so.$(MK_SOVER)
	ln -sf libmemkit.so.$(MK_VERSION) $@

$(BUILD)/memkit.pc: Makefile
	@mkdir -p $(dir $@)
	printf '%s\n' 'prefix=$(PREFIX)' 'exec_prefix=$${prefix}' 'libdir=$${exec_prefix}/lib' \
	  'includedir=$${prefix}/include' '' 'Name: memkit' \
	  'Description: memcached client library: key distribution, failover, a thread-safe connection pool' \
	  'Version: $(MK_VERSION)' 'Libs: -L$${libdir} -lmemkit' 'Libs.private: -lnettle -lz -lssl -lcrypto -pthread' \
	  'Cflags: -I$${includedir}' > $@

$(BUILD)/memkit: $(TOOL_OBJ) $(BUILD)/libmemkit.a
	$(CC) $(LDFLAGS) -o $@ $(TOOL_OBJ) $(BUILD)/libmemkit.a $(CLIENT_LIBS) -lm

$(BUILD)/client-tests/%: tests/client/%.c $(BUILD)/libmemkit.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -Itests/unit $(LDFLAGS) -o $@ $< $(BUILD)/libmemkit.a $(CLIENT_LIBS) -lm

install: all
	install -d $(DESTDIR)$(PREFIX)/include/memkit $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/bin
	install -m 644 include/memkit.h $(DESTDIR)$(PREFIX)/include/memkit.h
	install -m 644 include/memkit/proto.h $(DESTDIR)$(PREFIX)/include/memkit/proto.h
	install -m 644 $(BUILD)/libmemkit.a $(DESTDIR)$(PREFIX)/lib/libmemkit.a
	install -m 755 $(BUILD)/libmemkit.so.$(MK_VERSION) $(DESTDIR)$(PREFIX)/lib/libmemkit.so.$(MK_VERSION)
	ln -sf libmemkit.so.$(MK_VERSION) $(DESTDIR)$(PREFIX)/lib/libmemkit.so.$(MK_SOVER)
	ln -sf libmemkit.so.$(MK_VERSION) $(DESTDIR)$(PREFIX)/lib/libmemkit.so
	sed 's|^prefix=.*|prefix=$(PREFIX)|' $(BUILD)/memkit.pc > $(DESTDIR)$(PREFIX)/lib/pkgconfig/memkit.pc
	install -m 755 $(BUILD)/memkit $(BUILD)/memkitd $(DESTDIR)$(PREFIX)/bin/
	if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ]; then ldconfig || true; fi

-include $(shell find $(BUILD)/pic $(BUILD)/client-tests -name '*.d' 2>/dev/null)

# ThreadSanitizer copy of the client tests (tests/run-all.sh runs it as client-tsan when built)
client-tsan:
	@$(MAKE) --no-print-directory BUILD=build/tsan OPT=-O1 EXTRA_CFLAGS=-fsanitize=thread \
	  EXTRA_LDFLAGS=-fsanitize=thread build/tsan/client-tests/test_client
.PHONY: client-tsan

# ThreadSanitizer copies of the store's unit tests and of the server (run-all.sh: unit-tsan, blackbox-tsan)
cache-tsan:
	@$(MAKE) --no-print-directory BUILD=build/tsan OPT=-O1 EXTRA_CFLAGS=-fsanitize=thread \
	  EXTRA_LDFLAGS=-fsanitize=thread build/tsan/tests/test_cache build/tsan/memkitd
.PHONY: cache-tsan

# ---- libmemkit vs libmemcached benchmark (bench/client_compare.sh runs it; not part of `all`;
#      `make test` builds it, plain and sanitized, for tests/bench/test_bench_clients.py)
bench-client: $(BUILD)/bench/bench_clients
$(BUILD)/bench/bench_clients: bench/client/bench_clients.c $(BUILD)/libmemkit.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(shell pkg-config --cflags libmemcached) $(LDFLAGS) -o $@ $< \
	  $(BUILD)/libmemkit.a $(shell pkg-config --libs libmemcached) $(CLIENT_LIBS) -lm
.PHONY: bench-client

# ---- cache replacement-policy simulator (docs/bench.md): bench/policy/*.c -> build/policy_sim; not part of `all`.
#      Its Zipf sampler is memkit-bench's (tools/bench/keys.c).
POLICY_SRC := $(sort $(wildcard bench/policy/*.c)) tools/bench/keys.c
bench-policy: $(BUILD)/policy_sim
$(BUILD)/policy_sim: $(POLICY_SRC) bench/policy/policy_sim.h tools/bench/bench.h
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -Itools/bench $(LDFLAGS) -o $@ $(POLICY_SRC) -lm
.PHONY: bench-policy

# ---- memkit-bench, the load generator (issue 6): tools/bench/*.c -> build/memkit-bench
#      (libmemkit.a: key placement over a server list, and the protocol layer)
BENCH_OBJ := $(call obj,$(sort $(wildcard tools/bench/*.c)))
all: $(BUILD)/memkit-bench
$(BUILD)/memkit-bench: $(BENCH_OBJ) $(BUILD)/libmemkit.a
	$(CC) $(LDFLAGS) -o $@ $(BENCH_OBJ) $(BUILD)/libmemkit.a $(CLIENT_LIBS) -lm

# ---- the Python module memkit (issue 4): build/python/memkit/ = python/memkit/*.py + _memkit<EXT_SUFFIX>
#   C sources python/memkit/*.c, compiled -fPIC with $(PYTHON)'s headers; libmemkit's PIC objects are
#   linked in statically, so `PYTHONPATH=build/python $(PYTHON) -c 'import memkit'` needs no LD_LIBRARY_PATH.
PY_EXT_SUFFIX := $(shell $(PYTHON) -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))' 2>/dev/null)
PY_INCLUDES   := $(shell $(PYTHON) -c 'import sysconfig; print("-I" + sysconfig.get_paths()["include"])' 2>/dev/null)
PY_EXT_OBJ    := $(patsubst %.c,$(BUILD)/pic/%.o,$(sort $(wildcard python/memkit/*.c)))
PY_PKG_FILES  := $(patsubst python/%,$(BUILD)/python/%,$(sort $(wildcard python/memkit/*.py)))
PY_EXT        := $(BUILD)/python/memkit/_memkit$(PY_EXT_SUFFIX)
.PHONY: python
ifneq ($(SAN),1)
all: python
endif
python: $(PY_EXT) $(PY_PKG_FILES)

$(PY_EXT_OBJ): CPPFLAGS += $(PY_INCLUDES) -Ipython/memkit

$(PY_EXT): $(PY_EXT_OBJ) $(LIB_PIC_OBJ)
	@mkdir -p $(dir $@)
	$(CC) -shared $(LDFLAGS) -o $@ $^ $(CLIENT_LIBS)

$(BUILD)/python/%.py: python/%.py
	@mkdir -p $(dir $@)
	cp $< $@
