# Thin wrapper over CMake. `make` builds build/sfwb; `make test`, `make demo`, `make bench`.
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all deps configure build test demo bench test-asan test-fuzz install clean ptxas gpu-check gpu-pack
DEVICE ?= cuda:0

all: build

deps:
	@sh scripts/deps.sh

configure: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) > /dev/null

build: configure
	@cmake --build $(BUILD) -j $(JOBS)

test: build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS) $(CTEST_FLAGS)

demo: build
	@$(BUILD)/sfwb recipes/demo.lua

bench: build
	@sh bench/run.sh $(BUILD)

# validate and measure the CUDA path on DEVICE in one run (docs/cuda.md, "The first GPU run"): the device
# tests retargeted to DEVICE, then attention/GEMM/DiT/generation/DMD figures -> build/gpu_check.json
gpu-check: build
	@sh scripts/gpu_check.sh --build $(BUILD) --device $(DEVICE)

# the program, device tests and non-system libraries in $(BUILD)/gpu-pack, for a GPU machine without build tools
gpu-pack: build
	@sh scripts/gpu_pack.sh $(BUILD)

# ptxas -v registers/spills of every CUDA kernel (sm_90a, sm_80) -> docs/ptxas.txt
ptxas: configure
	@cmake --build $(BUILD) --target ptxas_report

# third-party process-lifetime allocations (fontconfig, Open MPI, ...) are suppressed: tests/lsan.supp
test-asan:
	@LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=0 \
	 $(MAKE) test BUILD=build-asan CMAKE_FLAGS="-DSFWB_ASAN=ON -DCMAKE_BUILD_TYPE=Debug"

test-fuzz: deps
	@sh tests/fuzz/run.sh

install: build
	@cmake --install $(BUILD)

clean:
	@rm -rf build build-asan
