# Websocket load balancer with bundled workers.
#
#   make            optimised build: bin/lb bin/worker bin/wsbench bin/wslbctl
#   make asan       AddressSanitizer + UBSan build: bin/asan/*
#   make test       unit + integration + browser tests (sanitizer build; unit tests on both)
#   make run        local demo: Redis, three workers and the lb on 127.0.0.1:8080
#                   (WORKERS=N workers; supervised; Ctrl-C drains and stops)
#   make install    install as wslb-lb, wslb-worker, ... (PREFIX=/usr/local, DESTDIR)
#   make deb        build a Debian package into build/deb/ (see deploy/debian/)
#   make deps       install every Debian package the build, tests and benchmarks need
#   make bench      short benchmark run (see bench/README.md)
#   make fuzz / fuzz-smoke / soak   see README.md

CC       ?= cc
VERSION  := 0.1.0
CSTD     := -std=c11 -D_GNU_SOURCE
WARN     := -Wall -Wextra -Werror -Wno-unused-parameter
CPPFLAGS := -Icommon -Ilb -Iworker -Ibench -DVERSION=\"$(VERSION)\"
# wslbctl talks to the daemons only over their public interfaces: it sees
# common/ and its own headers, never lb/ or worker/.
CTL_CPPFLAGS := -Icommon -Ictl -DVERSION=\"$(VERSION)\"
LIBS     := -lev -lssl -lcrypto -lhttp_parser -lhiredis -lseccomp -ljansson -lm -lpthread

OPT_CFLAGS  := $(CSTD) $(WARN) -O2 -g
ASAN_CFLAGS := $(CSTD) $(WARN) -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
               -fno-sanitize-recover=undefined
ASAN_LDFLAGS := -fsanitize=address,undefined

COMMON_SRC := $(wildcard common/*.c)
WORKER_SRC := $(filter-out worker/main.c,$(wildcard worker/*.c))
LB_SRC     := $(filter-out lb/main.c,$(wildcard lb/*.c))
BENCH_SRC  := $(filter-out bench/main.c,$(wildcard bench/*.c))
CTL_SRC    := $(filter-out ctl/main.c,$(wildcard ctl/*.c))
UNIT_SRC   := $(wildcard tests/unit/test_*.c)
UNIT_NAMES := $(patsubst tests/unit/%.c,%,$(UNIT_SRC))

PROGS := worker lb wsbench wslbctl

.PHONY: all asan test unit unit-opt unit-asan integration browser run deps check-deps deps-ok bench \
        bench-full fuzz fuzz-smoke soak format format-check clean install uninstall deb man
.DEFAULT_GOAL := all

# ---- Debian packages -----------------------------------------------------------
# Every compile waits for deps-ok (an order-only prerequisite), so that with
# -j the packages are in place before the first compiler runs. Plain `make`
# only checks the build dependencies and prints the apt-get line; the targets
# below also install what they need when run as root (scripts/deps.sh).
DEPS_ACTION := check
DEPS_GROUPS := build
ifneq ($(filter test unit unit-opt unit-asan integration soak,$(MAKECMDGOALS)),)
DEPS_ACTION := install
DEPS_GROUPS += test
endif
ifneq ($(filter run,$(MAKECMDGOALS)),)
DEPS_ACTION := install
DEPS_GROUPS += run
endif
ifneq ($(filter bench bench-full,$(MAKECMDGOALS)),)
DEPS_ACTION := install
DEPS_GROUPS += bench
endif
ifneq ($(filter fuzz fuzz-smoke fuzz-regress,$(MAKECMDGOALS)),)
DEPS_ACTION := install
DEPS_GROUPS += fuzz
endif

# Unit tests link every non-main object so they can reach any module, except
# the ones a test #includes to reach its static functions (the h2o habit):
# test_NAME_INCLUDES lists those .c files, whose objects it must not link.
# Each variant below gets one such rule per test.
test_px_sess_INCLUDES := lb/px_sess.c
test_px_tun_INCLUDES  := lb/px_sess.c
# $(1) = variant, $(2) = test name
define UNIT_TEST
build/$(1)/tests/$(2): build/$(1)/tests/unit/$(2).o $$(filter-out $$(patsubst %.c,build/$(1)/%.o,$$($(2)_INCLUDES)),$$($(1)_WORKER) $$($(1)_LB) $$($(1)_CTL) $$($(1)_COMMON))
	@mkdir -p $$(dir $$@)
	$$(CC) $$($(1)_LDFLAGS) -o $$@ $$^ $$(LIBS) -lcmocka
endef

# ---- per-variant rules -------------------------------------------------------
# $(1) = variant name (opt|asan), $(2) = CFLAGS, $(3) = LDFLAGS, $(4) = bin dir
define VARIANT
$(1)_OBJ = build/$(1)
$(1)_COMMON := $$(patsubst %.c,build/$(1)/%.o,$(COMMON_SRC))
$(1)_WORKER := $$(patsubst %.c,build/$(1)/%.o,$(WORKER_SRC))
$(1)_LB     := $$(patsubst %.c,build/$(1)/%.o,$(LB_SRC))
$(1)_BENCH  := $$(patsubst %.c,build/$(1)/%.o,$(BENCH_SRC))
$(1)_CTL    := $$(patsubst %.c,build/$(1)/%.o,$(CTL_SRC))

build/$(1)/%.o: %.c | deps-ok
	@mkdir -p $$(dir $$@)
	$$(CC) $(2) $$(CPPFLAGS) -MMD -MP -c $$< -o $$@

build/$(1)/ctl/%.o: ctl/%.c
	@mkdir -p $$(dir $$@)
	$$(CC) $(2) $$(CTL_CPPFLAGS) -MMD -MP -c $$< -o $$@

$(4)/worker: build/$(1)/worker/main.o $$($(1)_WORKER) $$($(1)_COMMON)
	@mkdir -p $$(dir $$@)
	$$(CC) $(3) -o $$@ $$^ $$(LIBS)

$(4)/lb: build/$(1)/lb/main.o $$($(1)_LB) $$($(1)_COMMON)
	@mkdir -p $$(dir $$@)
	$$(CC) $(3) -o $$@ $$^ $$(LIBS)

$(4)/wsbench: build/$(1)/bench/main.o $$($(1)_BENCH) $$($(1)_COMMON)
	@mkdir -p $$(dir $$@)
	$$(CC) $(3) -o $$@ $$^ $$(LIBS)

$(4)/wslbctl: build/$(1)/ctl/main.o $$($(1)_CTL) $$($(1)_COMMON)
	@mkdir -p $$(dir $$@)
	$$(CC) $(3) -o $$@ $$^ $$(LIBS)

$(1)_LDFLAGS := $(3)
$$(foreach t,$$(UNIT_NAMES),$$(eval $$(call UNIT_TEST,$(1),$$(t))))

-include $$(shell find build/$(1) -name '*.d' 2>/dev/null)
endef

$(eval $(call VARIANT,opt,$(OPT_CFLAGS),,bin))
$(eval $(call VARIANT,asan,$(ASAN_CFLAGS),$(ASAN_LDFLAGS),bin/asan))
# The Debian package's build: Debian's hardening flags on top of the
# optimised build (stack protector, fortified libc calls, full RELRO).
PKG_CFLAGS  := $(OPT_CFLAGS) -fstack-protector-strong -D_FORTIFY_SOURCE=2 -Wformat \
               -Werror=format-security
PKG_LDFLAGS := -Wl,-z,relro -Wl,-z,now
$(eval $(call VARIANT,pkg,$(PKG_CFLAGS),$(PKG_LDFLAGS),build/pkg/bin))

all: $(addprefix bin/,$(PROGS))
asan: $(addprefix bin/asan/,$(PROGS))

# ---- tests -------------------------------------------------------------------
unit-opt: $(addprefix build/opt/tests/,$(UNIT_NAMES))
	@scripts/run-unit.sh build/opt/tests $(UNIT_NAMES)
unit-asan: $(addprefix build/asan/tests/,$(UNIT_NAMES))
	@scripts/run-unit.sh build/asan/tests $(UNIT_NAMES)
unit: unit-asan unit-opt

# The package's hardened build too: tests/integration/test_package.py packs it.
integration: all asan $(addprefix build/pkg/bin/,$(PROGS)) | deps-ok
	BIN_DIR=$(CURDIR)/bin/asan /usr/bin/python3 -m pytest -q tests/integration

# Headless Chromium against a real cluster (tests/browser); each test is
# skipped, with the reason printed, where chromium, chromium-driver or
# python3-selenium is missing (`make deps` installs them).
browser: all asan
	BIN_DIR=$(CURDIR)/bin/asan /usr/bin/python3 -m pytest -q -rs tests/browser

test: unit integration browser

# Thousands of connections through the lb under ASan, then an audit of leaks,
# descriptors and counters (tests/soak/soak.py). CI: SOAK_SECONDS=20 make soak
SOAK_SECONDS ?= 120
soak: asan
	SOAK_SECONDS=$(SOAK_SECONDS) BIN_DIR=$(CURDIR)/bin/asan /usr/bin/python3 tests/soak/soak.py

# ---- running -----------------------------------------------------------------
WORKERS ?= 3
run: all
	@WORKERS=$(WORKERS) scripts/run.sh

deps:
	@scripts/deps.sh install all
check-deps:
	@scripts/deps.sh check $(DEPS_GROUPS)
deps-ok:
	@scripts/deps.sh $(DEPS_ACTION) $(DEPS_GROUPS)

# ---- installing and packaging ------------------------------------------------------
# Installed names carry the project's prefix so they clash with nothing:
# bin/lb -> wslb-lb, bin/worker -> wslb-worker, bin/wsbench -> wslb-bench,
# bin/wslbctl -> wslbctl. Whatever programs `all` builds are installed.
PREFIX  ?= /usr/local
DESTDIR ?=
INSTALL_FROM ?= bin
install: all man
	@scripts/install.sh "$(INSTALL_FROM)" "$(DESTDIR)" "$(PREFIX)" build/man
uninstall:
	@scripts/install.sh --uninstall "$(INSTALL_FROM)" "$(DESTDIR)" "$(PREFIX)" build/man

# Short man pages generated from each program's --help.
man: all
	@scripts/mkman.sh "$(INSTALL_FROM)" build/man "$(VERSION)"

# A .deb built with dpkg-deb from the hardened build (deploy/debian/).
DEB_REVISION ?= 1
deb: $(addprefix build/pkg/bin/,$(PROGS))
	@deploy/debian/build.sh build/pkg/bin "$(VERSION)-$(DEB_REVISION)" build/deb

bench: all
	@bench/run.sh short
bench-full: all
	@bench/run.sh full

# ---- housekeeping ------------------------------------------------------------
FMT_FILES = $(shell git ls-files '*.c' '*.h' 2>/dev/null)
format:
	clang-format -i $(FMT_FILES)
format-check:
	@clang-format --dry-run --Werror $(FMT_FILES)

clean:
	rm -rf build bin

# ---- fuzzing (clang libFuzzer; see fuzz/README.md) ----------------------------
# Each target compiles only the modules it exercises. UBSan findings abort so
# that libFuzzer counts them as crashes.
FUZZ_CC     := clang
FUZZ_CFLAGS := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
               $(CSTD) -Icommon -Ilb -Iworker
FUZZ_NAMES  := http ws proto rt cfg disc proxy static
FUZZ_SECONDS ?= 30
fuzz_http_SRC  := common/http.c common/buf.c
fuzz_http_LIBS := -lhttp_parser
fuzz_ws_SRC    := common/ws.c common/buf.c
fuzz_ws_LIBS   := -lcrypto
fuzz_proto_SRC  := worker/proto.c
fuzz_proto_LIBS := -ljansson
fuzz_rt_SRC    := worker/rt.c common/log.c
fuzz_cfg_SRC   := common/cfg.c
# fuzz_disc.c includes lb/disc.c itself to reach its static reply callbacks.
fuzz_disc_SRC  := lb/be.c common/rds.c common/sen.c common/sock.c common/log.c
fuzz_disc_DEPS := lb/disc.c
fuzz_disc_LIBS := -lhiredis -ljansson -lev -lpthread
fuzz_proxy_SRC  := lb/fwd.c common/http.c common/buf.c
fuzz_proxy_LIBS := -lhttp_parser
fuzz_static_SRC  := lb/static.c common/http.c common/buf.c common/met.c common/log.c
fuzz_static_LIBS := -lhttp_parser -lcrypto -lpthread -lm

define FUZZ_TARGET
build/fuzz/fuzz_$(1): fuzz/fuzz_$(1).c $$(fuzz_$(1)_SRC) $$(fuzz_$(1)_DEPS) $$(wildcard common/*.h lb/*.h worker/*.h) | deps-ok
	@mkdir -p $$(dir $$@)
	$$(FUZZ_CC) $$(FUZZ_CFLAGS) -o $$@ $$< $$(fuzz_$(1)_SRC) $$(fuzz_$(1)_LIBS)
endef
$(foreach n,$(FUZZ_NAMES),$(eval $(call FUZZ_TARGET,$(n))))

.PHONY: fuzz-regress
fuzz: $(addprefix build/fuzz/fuzz_,$(FUZZ_NAMES))
fuzz-smoke: fuzz
	@FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_SEED=$(FUZZ_SEED) FUZZ_RUNS=$(FUZZ_RUNS) fuzz/run.sh smoke $(FUZZ_NAMES)
fuzz-regress: fuzz
	@fuzz/run.sh regress $(FUZZ_NAMES)
