# smelt: two commands matter. `make demo` and `make test`; see README.md.
BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
DEMO_DIR   ?= $(HOME)/.cache/smelt/demo

.PHONY: all build deps test test-release test-asan fuzz demo bench format clean

all: build

deps:
	@bash scripts/deps.sh

$(BUILD)/Makefile: CMakeLists.txt
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release

build: $(BUILD)/Makefile
	@cmake --build $(BUILD) -j $(JOBS)

test: deps
	@bash scripts/run-tests.sh

demo: deps build
	@bash scripts/demo.sh "$(BUILD)/smelt" "$(DEMO_DIR)"

bench: build
	@bash bench/run.sh

format:
	clang-format -i engine/*.c engine/methods/*.c include/smelt/*.h tui/*.c tui/*.h tests/*.c tests/*.h

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
