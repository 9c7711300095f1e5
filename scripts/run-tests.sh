#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Sets up (packages, model, build) and runs the whole test suite. Tests that
# need the default model fail rather than skip here (KVSCOPE_REQUIRE_MODEL=1),
# and so do the Redis tests without redis-server (KVSCOPE_REQUIRE_REDIS=1);
# those start and stop their own Redis servers on free loopback ports.
# When clang-14 is installed it then builds the `fuzz` preset (libFuzzer,
# ASan + UBSan) and runs every fuzz target for KVSCOPE_FUZZ_SECONDS (60) in
# parallel (ctest label `fuzz`); KVSCOPE_FUZZ=0 skips that stage. Tests run
# with an empty calibration folder (KVSCOPE_CALIBRATION_DIR), not the user's.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
cd "$root"
export KVSCOPE_REQUIRE_MODEL=1 KVSCOPE_REQUIRE_REDIS=1 QT_QPA_PLATFORM=offscreen
# The tests make the calibrations they need: the user's own (setup builds the
# default model's) must not change what they measure.
export KVSCOPE_CALIBRATION_DIR="$root/build/test-calibration"
rm -rf "$KVSCOPE_CALIBRATION_DIR"
jobs="${KVSCOPE_JOBS:-$(nproc)}"
ctest --preset release -j "$jobs" --timeout 900 "$@"

if [ "${KVSCOPE_FUZZ:-1}" != 0 ] && command -v clang++-14 >/dev/null; then
  KVSCOPE_SKIP_APT=1 "$root/scripts/setup.sh" --preset fuzz
  if [ -n "${KVSCOPE_FUZZ_SECONDS:-}" ]; then
    cmake -S "$root" -B build/fuzz -DKVSCOPE_FUZZ_SECONDS="$KVSCOPE_FUZZ_SECONDS" >/dev/null
  fi
  ctest --preset fuzz -j "$jobs"
fi
