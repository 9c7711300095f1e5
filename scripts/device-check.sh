#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# GPU check for KVScope's CUDA kernels, for a machine with an NVIDIA GPU and
# only CMake, a C++ compiler and CUDA (no Qt, libtorch, HDF5, asio or JSON;
# zstd and GoogleTest optional). Configures the `codec-only` preset, builds
# the codec, the kernels and their tests, runs the kernel tests (or, without
# GoogleTest, the same GPU-vs-CPU checks through kvscope-gpu-bench --check)
# and the benchmark on a Mistral-7B- and a Llama-70B-shaped cache, and prints
# the results. Designed to finish within 8 minutes (the benchmarks are cut
# off at the budget). Exits non-zero on any failure, including when no CUDA
# device is usable.
#
# Usage: scripts/device-check.sh            (from anywhere in the checkout)
# Environment: KVSCOPE_JOBS (build jobs, default nproc), KVSCOPE_BENCH_ARGS
# (extra arguments for kvscope-gpu-bench, e.g. "--tokens 4096"),
# KVSCOPE_CHECK_BUDGET_S (seconds the whole check may take, default 480).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export PATH="/usr/local/cuda/bin:$PATH"
jobs="${KVSCOPE_JOBS:-$(nproc)}"
build=build/codec-only
start=$(date +%s)
budget="${KVSCOPE_CHECK_BUDGET_S:-480}"  # 8 minutes, the limit the check is designed for
step() { echo; echo "== $* ($(( $(date +%s) - start )) s)"; }

step "device"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv || true
else
  echo "nvidia-smi not found"
fi
command -v nvcc >/dev/null || { echo "device-check: nvcc not found (CUDA toolkit at /usr/local/cuda?)"; exit 1; }
nvcc --version | tail -n 2
cmake --version | head -n 1

step "configure (cmake --preset codec-only)"
# The preset builds tests; where GoogleTest is missing, configure again
# without them (the GPU checks then run through kvscope-gpu-bench --check).
generator_args=()
if ! command -v ninja >/dev/null; then
  generator_args=(-G "Unix Makefiles")  # the preset asks for Ninja
  echo "ninja not found: configuring the preset's settings with Makefiles"
fi
configure() {
  if [ ${#generator_args[@]} -eq 0 ]; then
    cmake --preset codec-only "$@"
  else
    cmake -S . -B "$build" "${generator_args[@]}" -DCMAKE_BUILD_TYPE=Release -DKVSCOPE_CODEC_ONLY=ON \
      -DKVSCOPE_BUILD_BENCHMARKS=OFF "$@"
  fi
}
have_tests=1
config_log="$(mktemp)"
trap 'rm -f "$config_log"' EXIT
if ! configure > "$config_log" 2>&1; then
  if grep -q "GTest" "$config_log"; then
    echo "GoogleTest not found: building without the GoogleTest suite"
    have_tests=0
    rm -rf "$build"
    configure -DKVSCOPE_BUILD_TESTS=OFF
  else
    cat "$config_log"
    exit 1
  fi
else
  tail -n 5 "$config_log"
fi
if ! cmake --build "$build" --target help | grep -qw kvscope_kernels; then
  echo "device-check: the kernels were not configured (CMake did not find nvcc?)"
  exit 1
fi

step "build (codec, kernels, their tests, kvscope-gpu-bench)"
cmake --build "$build" -j "$jobs"

step "device detection"
"$build/kernels/kvscope-gpu-bench" --backend || {
  echo "device-check: no usable CUDA device; nothing to check"
  exit 1
}

status=0
if [ "$have_tests" = 1 ]; then
  step "GPU tests (kernels_tests, GPU-vs-CPU checks; none may skip here)"
  log="$build/gpu-tests.log"
  "$build/tests/kernels/kernels_tests" --gtest_filter='Kernels/GpuCheck.*' 2>&1 | tee "$log" || status=1
  if grep -q "SKIPPED \]" "$log"; then
    echo "device-check: GPU tests skipped although a device is present"
    status=1
  fi
  step "other tests (ctest: common, kv, codec, kernel host logic)"
  # The repository checks (label repo: SPDX lines, layering) are not about
  # the device; CI runs them.
  ctest --test-dir "$build" --output-on-failure -j "$jobs" --timeout 300 -E 'GpuCheck' -LE repo || status=1
else
  step "GPU-vs-CPU checks (kvscope-gpu-bench --check)"
  "$build/kernels/kvscope-gpu-bench" --check || status=1
fi

# Each benchmark runs under what is left of the budget, so the whole check
# ends within it even on a slow machine (a timed-out step is a failure).
left() { echo $(( budget - ($(date +%s) - start) )); }
bench() {
  local name="$1"; shift
  if [ "$(left)" -le 10 ]; then
    echo "device-check: no time left for the $name benchmark (budget ${budget} s)"
    status=1
    return
  fi
  # shellcheck disable=SC2086
  timeout "$(left)" "$build/kernels/kvscope-gpu-bench" "$@" ${KVSCOPE_BENCH_ARGS:-} || {
    echo "device-check: $name benchmark failed or ran past the budget"
    status=1
  }
}
step "benchmark: 32 layers x 8 KV heads x 128 dim x 8192 tokens (Mistral-7B shape)"
bench mistral-7b --shape mistral-7b
step "benchmark: 80 layers x 8 KV heads x 128 dim x 8192 tokens (Llama-70B shape)"
bench llama-70b --shape llama-70b --reps 2 --check-tokens 512

step "done"
if [ "$status" = 0 ]; then
  echo "device-check: PASS"
else
  echo "device-check: FAIL"
fi
exit "$status"
