# The two README commands: `make run` and `make test`. Everything else is a helper.
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all deps build run test test-sanitize test-valgrind bench fuzz fuzz-ci clean format format-check

all: build

# `make run` needs no browser: the dashboard test's optional packages are for `make test`.
deps:
	@scripts/install-deps.sh $(DEPS_FLAGS)

$(BUILD)/CMakeCache.txt: | deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) >/dev/null

build: deps $(BUILD)/CMakeCache.txt
	@cmake --build $(BUILD) -j $(JOBS) -- --no-print-directory

run: DEPS_FLAGS = --no-test-extras
run: build
	@$(BUILD)/cmd/taskloop/taskloop run --demo

test: build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# The unit tests again under AddressSanitizer and UndefinedBehaviorSanitizer.
test-sanitize: deps
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DTL_SANITIZE="address;undefined" -DTL_BUILD_BENCH=OFF >/dev/null
	@cmake --build build-asan -j $(JOBS) -- --no-print-directory
	@cd build-asan && ctest --output-on-failure -j $(JOBS) -L unit

# The unit tests again under valgrind: any leak or invalid access fails them (but
# libfyaml's one known leak, tests/valgrind.supp). Not the suites' reruns on four
# shards (label shards): valgrind runs one thread at a time, and their timed waits
# (a retry due 150 ms after it is pushed) do not hold with twenty threads taking
# turns; test_shards runs the shard code under valgrind, the reruns run in the normal
# and sanitizer passes.
test-valgrind: deps
	@cmake -S . -B build-valgrind -DCMAKE_BUILD_TYPE=Debug -DTL_BUILD_BENCH=OFF \
	  "-DCMAKE_CROSSCOMPILING_EMULATOR=valgrind;--error-exitcode=9;--leak-check=full;--errors-for-leak-kinds=definite,indirect;--suppressions=$(CURDIR)/tests/valgrind.supp;-q" >/dev/null
	@cmake --build build-valgrind -j $(JOBS) -- --no-print-directory
	@cd build-valgrind && ctest --output-on-failure -j $(JOBS) -L unit -LE shards

bench: build
	@scripts/install-deps.sh --bench || echo "bench: the bench packages are missing; plots or peers may be skipped"
	@bench/run.sh $(BUILD)

# The libFuzzer targets (tests/fuzz/README.md) in a clang build of their own, each run
# for FUZZ_SECONDS, one at a time; a crash, sanitizer report or hang fails.
FUZZ_SECONDS ?= 60
fuzz:
	@scripts/install-deps.sh --fuzz
	@cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang-14 -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DTL_FUZZ=ON -DTL_BUILD_TESTS=OFF -DTL_BUILD_BENCH=OFF >/dev/null
	@cmake --build build-fuzz -j $(JOBS) --target fuzz_all -- --no-print-directory
	@tests/fuzz/run.sh build-fuzz $(FUZZ_SECONDS)

# The short round CI runs.
fuzz-ci:
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=20

format:
	@clang-format -i $$(git ls-files '*.c' '*.h')

# Fails when a C file differs from what .clang-format asks for.
format-check: deps
	@clang-format --dry-run -Werror $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) build-asan build-tsan build-valgrind build-fuzz

# Installs the libraries, headers, the program, taskloop.pc and the CMake package.
PREFIX ?= /usr/local
.PHONY: install
install: build
	@cmake --install $(BUILD) --prefix $(PREFIX)
