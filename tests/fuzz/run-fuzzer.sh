#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# One bounded libFuzzer run:  run-fuzzer.sh FUZZER WORK_DIR SECONDS
# Starts from the seeds the fuzzer writes into WORK_DIR/corpus, runs SECONDS,
# and prints the executions and coverage it reached. Fails (non-zero) on any
# crash, sanitizer report, leak, timeout (10 s per input), RSS above 2 GiB or
# single allocation above 1 GiB; the input is kept as WORK_DIR/crash-*.
set -euo pipefail
fuzzer="$1"; work="$2"; seconds="$3"
rm -rf "$work"
mkdir -p "$work/corpus"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$(dirname "${BASH_SOURCE[0]}")/lsan.supp}"
set +e
"$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
  -print_final_stats=1 -artifact_prefix="$work/" "$work/corpus" >"$work/log.txt" 2>&1
rc=$?
set -e
grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb|^stat::new_units_added|cov: " "$work/log.txt" | tail -4
if [ $rc -ne 0 ]; then
  echo "$(basename "$fuzzer"): FAILED (exit $rc); last lines of $work/log.txt:"
  tail -40 "$work/log.txt"
  ls "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-* 2>/dev/null || true
fi
exit $rc
