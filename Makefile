# evstore — the two commands a fresh Debian 12 machine needs:
#   make run    install what building and running need, build the program, serve ./data
#               over HTTP (prints the address)
#   make test   install what the tests need too, build everything, and pass every test
#               (plain, ASan+UBSan, the concurrency tests under TSan, and a
#               short libFuzzer run of every fuzz target, built with clang);
#               first it compiles everything once in Release (-O3), running nothing
# Also: make demo (the CLI tour), make shop (the shop's order saga), make build, make bench, make soak,
#       make install PREFIX=/usr/local

JOBS     ?= $(shell nproc 2>/dev/null || echo 2)
PREFIX   ?= /usr/local
DATA     ?= ./data
BUILD    := build
CMAKE    := cmake
# What building and running need (make run, make build) ...
BUILD_PKGS := build-essential cmake pkg-config liblmdb-dev libjansson-dev liblua5.4-dev libsodium-dev \
              libmicrohttpd-dev libwslay-dev libcurl4-openssl-dev libnats-dev libgnutls28-dev \
              libpq-dev
# ... what the tests drive besides (the README's curl examples, promtool for /metrics,
# the official JSON-Schema-Test-Suite, headless chromium for the web console's browser journeys,
# openssl for the TLS tests' certificates, nats-server for the JetStream cluster, postgresql
# for the private cluster of the PostgreSQL engine's tests, tests/pg_cluster.py) ...
TEST_PKGS  := $(BUILD_PKGS) python3 curl prometheus lmdb-utils json-schema-test-suite chromium nats-server openssl \
              postgresql
# ... and libFuzzer (make fuzz).
FUZZ_PKGS  := $(BUILD_PKGS) clang

# The benchmarks' peers and load generator (make bench only): Redis, its C client, wrk.
BENCH_PKGS := redis-server libhiredis-dev wrk

# cmake's progress lines are enough: no "Entering directory" from the makes it runs
MAKEFLAGS += --no-print-directory

.PHONY: all deps deps-test deps-fuzz bench-deps configure build build-asan build-tsan build-rel run demo shop test test-plain test-asan test-tsan \
        test-fuzz bench soak install clean fuzz

all: build

# Install the Debian packages of $(1) that are missing (as root, or through sudo).
define install_missing
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
endef

deps:
	$(call install_missing,$(BUILD_PKGS))

deps-test:
	$(call install_missing,$(TEST_PKGS))

deps-fuzz:
	$(call install_missing,$(FUZZ_PKGS))

configure: deps
	@[ -f $(BUILD)/Makefile ] || $(CMAKE) -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: configure
	@$(CMAKE) --build $(BUILD) -j $(JOBS)

build-asan: deps
	@[ -f $(BUILD)-asan/Makefile ] || $(CMAKE) -S . -B $(BUILD)-asan -DCMAKE_BUILD_TYPE=Debug -DEVS_SANITIZE=address
	@$(CMAKE) --build $(BUILD)-asan -j $(JOBS)

build-tsan: deps
	@[ -f $(BUILD)-tsan/Makefile ] || $(CMAKE) -S . -B $(BUILD)-tsan -DCMAKE_BUILD_TYPE=Debug -DEVS_SANITIZE=thread
	@$(CMAKE) --build $(BUILD)-tsan -j $(JOBS)

# Everything compiled once at -O3 (Release), nothing run: GCC inlines more there and
# warns about what -O2 does not see (-Wmaybe-uninitialized, -Wformat-truncation), and
# warnings are errors: a Release build cannot break unnoticed (docs/testing.md).
build-rel: deps
	@[ -f $(BUILD)-rel/Makefile ] || $(CMAKE) -S . -B $(BUILD)-rel -DCMAKE_BUILD_TYPE=Release
	@$(CMAKE) --build $(BUILD)-rel -j $(JOBS)

# The server on ./data; it prints its address (default http://127.0.0.1:2113).
# Builds the program only: the tests and benchmarks are for make build / make test.
run: configure
	@$(CMAKE) --build $(BUILD) -j $(JOBS) --target evstore
	$(BUILD)/evstore serve -d $(DATA)

demo: configure
	@$(CMAKE) --build $(BUILD) -j $(JOBS) --target evstore
	@sh tools/demo.sh $(BUILD)/evstore $(DATA)

# The shop's order saga (examples/shop/sagas/order_saga.lua) on ten orders, four with injected failures.
shop: build
	rm -rf $(BUILD)/shop-saga-demo && $(BUILD)/shop_saga $(BUILD)/shop-saga-demo

test-plain: deps-test build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-asan: deps-test build-asan
	cd $(BUILD)-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  EVS_SANITIZED=1 ctest --output-on-failure -j $(JOBS)

test-tsan: deps-test build-tsan
	cd $(BUILD)-tsan && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:suppressions=$(CURDIR)/tests/tsan.supp EVS_SANITIZED=1 \
	  ctest --output-on-failure -j $(JOBS) -L concurrency

test: build-rel test-plain test-asan test-tsan test-fuzz

bench-deps:
	$(call install_missing,$(BUILD_PKGS) $(BENCH_PKGS))

bench: bench-deps configure
	@$(CMAKE) $(BUILD) >/dev/null
	@$(CMAKE) --build $(BUILD) -j $(JOBS)
	sh bench/run.sh $(BUILD)

soak: build
	cd $(BUILD) && EVS_CRASH_CYCLES=1000 EVS_SOAK=1 ctest --output-on-failure -R crash
	EVSTORE_BIN=$(abspath $(BUILD))/evstore EVS_SAGA_ORDERS=1000 EVS_SAGA_KILLS=50 python3 tests/integration/test_server_saga_kill9.py

# libFuzzer targets (tests/fuzz/, docs/testing.md): built with clang in build-fuzz.
# Fuzz one for longer:  build-fuzz/fuzz_NAME -max_total_time=600 -jobs=2 \
#                           build-fuzz/fuzz-scratch/NAME tests/fuzz/corpus/NAME
fuzz: deps-fuzz
	@[ -f $(BUILD)-fuzz/Makefile ] || $(CMAKE) -S . -B $(BUILD)-fuzz -DCMAKE_C_COMPILER=clang -DEVS_FUZZ=ON \
	  -DCMAKE_BUILD_TYPE=Debug
	@$(CMAKE) --build $(BUILD)-fuzz -j $(JOBS) --target fuzzers

# A short coverage-guided run of every target from its seeds (CTest label "fuzz").
test-fuzz: deps-test fuzz
	cd $(BUILD)-fuzz && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure -L fuzz

install: build
	$(CMAKE) --install $(BUILD) --prefix $(PREFIX)

clean:
	rm -rf $(BUILD) $(BUILD)-asan $(BUILD)-tsan $(BUILD)-rel $(BUILD)-fuzz
