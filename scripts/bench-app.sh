#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Speed of the desktop app as a tuning instrument, measured by the app itself
# (kvscope --timing, app/gui/timing_report.h) under Xvfb at 1920x1080 on the
# default model and context: launch to first view and first plot (from the
# prefill kept by an earlier launch), retune to first redraw / exact size /
# quality, and a simulated streaming run with its baselines. Prints each
# run's "timing:" line, then the median of every number over the runs.
#   scripts/bench-app.sh [BUILD_DIR]          (default build/release)
#   KVSCOPE_BENCH_RUNS=3                       measured launches
#   KVSCOPE_BENCH_WARMUP=1                     one launch first, not counted
#                                              (prefills and keeps the context)
# docs/performance.md, "The app", says what each number means and the targets.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$root/build/release}"
app="$build/app/gui/kvscope"
runs="${KVSCOPE_BENCH_RUNS:-3}"
warmup="${KVSCOPE_BENCH_WARMUP:-1}"
if [[ ! -x "$app" ]]; then
  echo "bench-app: $app not found; build the kvscope target first" >&2
  exit 1
fi
command -v xvfb-run >/dev/null || {
  echo "bench-app: xvfb-run not found (apt-get install xvfb)" >&2
  exit 1
}
export KVSCOPE_DATA_DIR="$root"
log="$(mktemp -d)"
trap 'rm -rf "$log"' EXIT

launch() {
  timeout 600 xvfb-run -a -s "-screen 0 1920x1080x24" "$app" -qwindowgeometry 1920x1080+0+0 \
    --default-layout --timing --run-stream --quit-after-timing 2>/dev/null | tee "$1" | grep -E "^(ready|retune|stream:)" || true
  grep -q "^timing:" "$1" || {
    echo "bench-app: the app printed no timing line (see above)" >&2
    exit 1
  }
}

if [[ "$warmup" != 0 ]]; then
  echo "== warm-up launch (not counted)"
  launch "$log/warmup"
fi
echo "== $runs measured launch(es); load: $(cut -d' ' -f1-3 /proc/loadavg)"
for i in $(seq 1 "$runs"); do
  launch "$log/run$i"
  grep "^timing:" "$log/run$i"
done
echo "== median of $runs run(s); load after: $(cut -d' ' -f1-3 /proc/loadavg)"
cat "$log"/run* | grep "^timing:" | python3 -c '
import statistics, sys
rows = [dict(kv.split("=", 1) for kv in line.split()[1:]) for line in sys.stdin]
keys = [k for k in rows[0] if k != "incomplete"]
out = []
for k in keys:
    vals = [float(r[k]) for r in rows if r.get(k, "na") != "na"]
    out.append("%s=%s" % (k, ("%g" % statistics.median(vals)) if vals else "na"))
print("timing median: " + " ".join(out))
if any("incomplete" in r for r in rows):
    print("bench-app: some runs were incomplete", file=sys.stderr)
    sys.exit(1)
'
