# Quick start: `make demo` and `make test`. Both install what is missing first.
#   make demo     builds `swarm` alone and runs a three-node swarm on this machine
#   make test     builds everything and runs every test; ends with the skipped ones
#                 (CTEST_ARGS="-R Pattern" runs a subset)
#   make install  copies build/swarm to $(PREFIX)/bin (default /usr/local/bin)
BUILD ?= build
JOBS ?= 2
PREFIX ?= /usr/local
CTEST_ARGS ?=

.PHONY: deps build swarm test demo bench install clean

deps:
	@scripts/install-deps.sh

$(BUILD)/build.ninja: CMakeLists.txt | deps
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release

build: deps $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

swarm: deps $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS) --target swarm

test: build
	@scripts/install-deps.sh --tests
	@scripts/run-tests.sh $(BUILD) $(JOBS) $(CTEST_ARGS)

demo: swarm
	@scripts/demo.sh $(BUILD)

bench: build
	@bench/run.sh $(BUILD)

install: swarm
	install -D -m 0755 $(BUILD)/swarm $(DESTDIR)$(PREFIX)/bin/swarm
	@echo "installed $(DESTDIR)$(PREFIX)/bin/swarm"

clean:
	rm -rf $(BUILD)
