#!/usr/bin/env bash
# Sets up (packages, model, build) and runs the whole test suite. Tests that
# need the default model fail rather than skip here (KVSCOPE_REQUIRE_MODEL=1),
# and so do the Redis tests without redis-server (KVSCOPE_REQUIRE_REDIS=1);
# those start and stop their own Redis servers on free loopback ports.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
cd "$root"
export KVSCOPE_REQUIRE_MODEL=1 KVSCOPE_REQUIRE_REDIS=1 QT_QPA_PLATFORM=offscreen
ctest --preset release -j "${KVSCOPE_JOBS:-$(nproc)}" --timeout 900 "$@"
