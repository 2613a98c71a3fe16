# Websocket load balancer with bundled workers.
#
#   make            optimised build: bin/lb bin/worker bin/wsbench bin/wslbctl
#   make asan       AddressSanitizer + UBSan build: bin/asan/*
#   make tsan       ThreadSanitizer build of the lb: bin/tsan/lb (make tsan-test runs it)
#   make test       unit + integration + browser tests (sanitizer build; unit tests on both)
#   make check-child  the sandbox's after-clone code calls only async-signal-safe functions
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
DEFS     := -DVERSION=\"$(VERSION)\"
LIBS     := -lev -lssl -lcrypto -lhttp_parser -lhiredis -lseccomp -ljansson -lm -lpthread

OPT_CFLAGS  := $(CSTD) $(WARN) -O2 -g
ASAN_CFLAGS := $(CSTD) $(WARN) -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
               -fno-sanitize-recover=undefined
ASAN_LDFLAGS := -fsanitize=address,undefined
TSAN_CFLAGS  := $(CSTD) $(WARN) -O1 -g -fno-omit-frame-pointer -fsanitize=thread
TSAN_LDFLAGS := -fsanitize=thread

# ---- rooms -------------------------------------------------------------------
# Each program is built from its own directory and common/, and each
# directory compiles with only its own include paths: an lb file that
# includes a worker header (or the other way round) does not compile.
# wslbctl talks to the daemons only over their public interfaces, wsbench
# only over the wire.
ROOMS := common lb worker ctl bench
CPPFLAGS_common := -Icommon
CPPFLAGS_lb     := -Icommon -Ilb
CPPFLAGS_worker := -Icommon -Iworker
CPPFLAGS_ctl    := -Icommon -Ictl
CPPFLAGS_bench  := -Icommon -Ibench

COMMON_SRC := $(wildcard common/*.c)
WORKER_SRC := $(filter-out worker/main.c,$(wildcard worker/*.c))
LB_SRC     := $(filter-out lb/main.c,$(wildcard lb/*.c))
BENCH_SRC  := $(filter-out bench/main.c,$(wildcard bench/*.c))
CTL_SRC    := $(filter-out ctl/main.c,$(wildcard ctl/*.c))

# Unit tests by the room each one tests (tests/unit/test_NAME.c): compiled
# with that room's include paths, linked against that room's archive and
# common's, from which the linker takes only the objects the test reaches.
UNIT_common := acc atomic buf cfg cidr ct fleet http met rdo rds sen sock ws
UNIT_lb     := acap admin aff be be_event disc fwd hand hc lbo lim log pp proxy px_down px_pool px_sess px_tun rld route static wsf wsp
UNIT_worker := proto rb rt sbx
UNIT_ctl    := ctl ctl_io
UNIT_bench  := wb wb_spawn
UNIT_NAMES  := $(patsubst tests/unit/%.c,%,$(wildcard tests/unit/test_*.c))
unit_room = $(firstword $(foreach r,$(ROOMS),$(if $(filter $(1),$(addprefix test_,$(UNIT_$(r)))),$(r))))
$(foreach t,$(UNIT_NAMES),$(if $(call unit_room,$(t)),,\
  $(error tests/unit/$(t).c tests no room: add $(t:test_%=%) to one of the UNIT_* lists)))

# The include paths for a source: its directory's, or for a unit test its room's.
src_room = $(if $(filter tests/unit/%,$(1)),$(call unit_room,$(basename $(notdir $(1)))),$(firstword $(subst /, ,$(1))))
room_cppflags = $(CPPFLAGS_$(call src_room,$(1))) $(DEFS)

PROGS := worker lb wsbench wslbctl

.PHONY: all asan tsan tsan-test test unit unit-opt unit-asan integration browser check-child run \
        deps check-deps deps-ok bench bench-full bench-fleet fuzz fuzz-smoke soak format format-check clean \
        install uninstall deb man
.DEFAULT_GOAL := all

# ---- Debian packages -----------------------------------------------------------
# Every compile waits for deps-ok (an order-only prerequisite), so that with
# -j the packages are in place before the first compiler runs. Plain `make`
# only checks the build dependencies and prints the apt-get line; the targets
# below also install what they need when run as root (scripts/deps.sh).
DEPS_ACTION := check
DEPS_GROUPS := build
ifneq ($(filter test unit unit-opt unit-asan integration tsan-test soak,$(MAKECMDGOALS)),)
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

# The worker binds every symbol at start: each run's init is a fresh copy of
# it, and would otherwise go through the dynamic linker for the first call of
# every libc function its setup makes, run after run (and the linker's lookup
# is not async-signal-safe code to run in a child of a threaded process).
WORKER_LDFLAGS := -Wl,-z,now

# ---- per-variant rules -------------------------------------------------------
# $(1) = variant name (opt|asan|tsan|pkg), $(2) = CFLAGS, $(3) = LDFLAGS, $(4) = bin dir
define VARIANT
$(1)_OBJ = build/$(1)
$(1)_COMMON := $$(patsubst %.c,build/$(1)/%.o,$(COMMON_SRC))
$(1)_WORKER := $$(patsubst %.c,build/$(1)/%.o,$(WORKER_SRC))
$(1)_LB     := $$(patsubst %.c,build/$(1)/%.o,$(LB_SRC))
$(1)_BENCH  := $$(patsubst %.c,build/$(1)/%.o,$(BENCH_SRC))
$(1)_CTL    := $$(patsubst %.c,build/$(1)/%.o,$(CTL_SRC))

build/$(1)/%.o: %.c | deps-ok
	@mkdir -p $$(dir $$@)
	$$(CC) $(2) $$(call room_cppflags,$$<) -MMD -MP -c $$< -o $$@

$(4)/worker: build/$(1)/worker/main.o $$($(1)_WORKER) $$($(1)_COMMON)
	@mkdir -p $$(dir $$@)
	$$(CC) $(3) $$(WORKER_LDFLAGS) -o $$@ $$^ $$(LIBS)

$(4)/lb: build/$(1)/lb/main.o $$($(1)_LB) $$($(1)_COMMON)
	@mkdir -p $$(dir $$@)
	$$(CC) $(3) -o $$@ $$^ $$(LIBS)

$(4)/wsbench: build/$(1)/bench/main.o $$($(1)_BENCH) $$($(1)_COMMON)
	@mkdir -p $$(dir $$@)
	$$(CC) $(3) -o $$@ $$^ $$(LIBS)

$(4)/wslbctl: build/$(1)/ctl/main.o $$($(1)_CTL) $$($(1)_COMMON)
	@mkdir -p $$(dir $$@)
	$$(CC) $(3) -o $$@ $$^ $$(LIBS)

# The fleet simulation (lb/sim/fleetsim.c): the lb's own table and
# discovery, from its room's archive; a bench tool, not installed.
$(4)/fleetsim: build/$(1)/lb/sim/fleetsim.o build/$(1)/lb.a build/$(1)/common.a
	@mkdir -p $$(dir $$@)
	$$(CC) $(3) -o $$@ $$^ $$(LIBS)

# One archive per room for the unit tests (rebuilt whole, so that a source
# moved away leaves no stale member behind).
build/$(1)/common.a: $$($(1)_COMMON)
build/$(1)/lb.a: $$($(1)_LB)
build/$(1)/worker.a: $$($(1)_WORKER)
build/$(1)/ctl.a: $$($(1)_CTL)
build/$(1)/bench.a: $$($(1)_BENCH)
build/$(1)/%.a:
	@mkdir -p $$(dir $$@)
	@rm -f $$@
	$$(AR) rcs $$@ $$^

$(1)_LDFLAGS := $(3)
$$(foreach t,$$(UNIT_NAMES),$$(eval $$(call UNIT_TEST,$(1),$$(t))))

-include $$(shell find build/$(1) -name '*.d' 2>/dev/null)
endef

# A unit test: its object, then its room's archive, then common's.
# $(1) = variant, $(2) = test name
define UNIT_TEST
build/$(1)/tests/$(2): build/$(1)/tests/unit/$(2).o \
  $(if $(filter-out common,$(call unit_room,$(2))),build/$(1)/$(call unit_room,$(2)).a) build/$(1)/common.a
	@mkdir -p $$(dir $$@)
	$$(CC) $$($(1)_LDFLAGS) -o $$@ $$^ $$(LIBS) -lcmocka
endef

$(eval $(call VARIANT,opt,$(OPT_CFLAGS),,bin))
$(eval $(call VARIANT,asan,$(ASAN_CFLAGS),$(ASAN_LDFLAGS),bin/asan))
$(eval $(call VARIANT,tsan,$(TSAN_CFLAGS),$(TSAN_LDFLAGS),bin/tsan))
# The Debian package's build: Debian's hardening flags on top of the
# optimised build (stack protector, fortified libc calls, full RELRO).
PKG_CFLAGS  := $(OPT_CFLAGS) -fstack-protector-strong -D_FORTIFY_SOURCE=2 -Wformat \
               -Werror=format-security
PKG_LDFLAGS := -Wl,-z,relro -Wl,-z,now
$(eval $(call VARIANT,pkg,$(PKG_CFLAGS),$(PKG_LDFLAGS),build/pkg/bin))

all: $(addprefix bin/,$(PROGS)) bin/fleetsim
asan: $(addprefix bin/asan/,$(PROGS)) bin/asan/fleetsim
# Only the lb has threads that share state; its peers in the tests are the
# ASan build.
tsan: bin/tsan/lb

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

# What runs between clone and execve in the sandbox may call only
# async-signal-safe functions: checked on the object's undefined symbols.
check-child: build/opt/worker/sbx_child.o
	@scripts/check-child.sh $<

test: check-child unit integration browser

# The lb under ThreadSanitizer with four proxy threads against ASan workers
# (tests/integration/test_lb_threads.py: handshakes, echo round trips,
# drains, a backend killed mid-traffic); any ThreadSanitizer report fails it.
# tests/integration/tsan.supp says which reports are suppressed, and why.
tsan-test: tsan asan | deps-ok
	LB_BIN_DIR=$(CURDIR)/bin/tsan BIN_DIR=$(CURDIR)/bin/asan \
	  /usr/bin/python3 -m pytest -q tests/integration/test_lb_threads.py \
	  tests/integration/test_lb_reload.py tests/integration/test_lb_takeover.py

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
# Fleet scale by simulation: bench/results/<date>-fleet/ (bench/README.md).
bench-fleet: all bin/fleetsim
	@bench/fleet.sh

# ---- housekeeping ------------------------------------------------------------
FMT_FILES = $(shell git ls-files '*.c' '*.h' 2>/dev/null)
format:
	clang-format -i $(FMT_FILES)
format-check:
	@clang-format --dry-run --Werror $(FMT_FILES)

clean:
	rm -rf build bin

# ---- fuzzing (clang libFuzzer; see fuzz/README.md) ----------------------------
# Each target compiles only the modules it exercises, with the include paths
# of their room (lb/ or worker/ and common/, or common/ alone). UBSan
# findings abort so that libFuzzer counts them as crashes.
FUZZ_CC     := clang
FUZZ_CFLAGS := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined $(CSTD)
FUZZ_NAMES  := http ws proto rt cfg disc fleet proxy static pp
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
fuzz_disc_SRC  := lb/be.c lb/be_aff.c lb/aff.c common/http.c common/buf.c lb/be_lc.c lb/be_rr.c lb/be_p2c.c common/fleet.c common/rds.c common/sen.c \
                  common/sock.c common/log.c
fuzz_disc_DEPS := lb/disc.c
fuzz_disc_LIBS := -lhiredis -ljansson -lev -lpthread -lhttp_parser
fuzz_fleet_SRC  := common/fleet.c common/sock.c
fuzz_fleet_LIBS := -ljansson
fuzz_proxy_SRC  := lb/fwd.c common/http.c common/buf.c
fuzz_proxy_LIBS := -lhttp_parser
fuzz_static_SRC  := lb/static.c common/http.c common/buf.c common/met.c common/log.c
fuzz_static_LIBS := -lhttp_parser -lcrypto -lpthread -lm
fuzz_pp_SRC    := lb/pp.c

# A target's room: the one directory besides common/ its sources come from.
fuzz_room = $(or $(filter-out common,$(sort $(foreach f,$(fuzz_$(1)_SRC) $(fuzz_$(1)_DEPS),\
                                                 $(firstword $(subst /, ,$(f)))))),common)
define FUZZ_TARGET
$$(if $$(filter 1,$$(words $$(call fuzz_room,$(1)))),,\
  $$(error fuzz_$(1) takes sources from more than one room: $$(call fuzz_room,$(1))))
build/fuzz/fuzz_$(1): fuzz/fuzz_$(1).c $$(fuzz_$(1)_SRC) $$(fuzz_$(1)_DEPS) \
                      $$(wildcard common/*.h $$(call fuzz_room,$(1))/*.h) | deps-ok
	@mkdir -p $$(dir $$@)
	$$(FUZZ_CC) $$(FUZZ_CFLAGS) $$(CPPFLAGS_$$(call fuzz_room,$(1))) -o $$@ $$< \
	  $$(fuzz_$(1)_SRC) $$(fuzz_$(1)_LIBS)
endef
$(foreach n,$(FUZZ_NAMES),$(eval $(call FUZZ_TARGET,$(n))))

.PHONY: fuzz-regress
fuzz: $(addprefix build/fuzz/fuzz_,$(FUZZ_NAMES))
fuzz-smoke: fuzz
	@FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_SEED=$(FUZZ_SEED) FUZZ_RUNS=$(FUZZ_RUNS) fuzz/run.sh smoke $(FUZZ_NAMES)
fuzz-regress: fuzz
	@fuzz/run.sh regress $(FUZZ_NAMES)
