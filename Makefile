# karvon: the two commands a newcomer needs are `make run` and `make test`.
# Both install what is missing (scripts/install-deps.sh) and build first.

BUILD_DIR ?= build
ASAN_DIR  ?= build-asan
JOBS      ?= $(shell nproc)
CMAKE_FLAGS ?=
ARGS      ?=

.PHONY: all deps configure build karvon run test test-asan bench format clean

all: build

deps:
	@bash scripts/install-deps.sh

configure: deps
	@cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) >/dev/null

build: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS)

# Builds only the karvon binary (no tests).
karvon: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS) --target karvon

# Starts the server on its embedded defaults (127.0.0.1:8080, ./var).
run: karvon
	./$(BUILD_DIR)/app/karvon serve $(ARGS)

# The sanitizer run comes first so that ctest's summary of the full suite is
# the last thing printed.
test: build test-asan
	ctest --test-dir $(BUILD_DIR) --output-on-failure -j $(JOBS)

# Every test again, built with AddressSanitizer and UndefinedBehaviorSanitizer.
test-asan: deps
	@cmake -S . -B $(ASAN_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Debug \
	  -DKARVON_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN_DIR) -j $(JOBS)
	ctest --test-dir $(ASAN_DIR) --output-on-failure -j $(JOBS)

bench: karvon
	./$(BUILD_DIR)/app/karvon bench $(ARGS)

format:
	@git ls-files '*.cpp' '*.hpp' | xargs clang-format -i

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR)
