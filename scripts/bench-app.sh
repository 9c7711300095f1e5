#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
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
#   KVSCOPE_BENCH_RECORD=1                     also write docs/performance/app.json
#                                              (then scripts/make-performance.py)
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
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
echo "== $runs measured launch(es); load: $load_before"
for i in $(seq 1 "$runs"); do
  launch "$log/run$i"
  grep "^timing:" "$log/run$i"
done
echo "== median of $runs run(s); load after: $(cut -d' ' -f1-3 /proc/loadavg)"
cat "$log"/run* | grep "^timing:" | LOAD_BEFORE="$load_before" RECORD="${KVSCOPE_BENCH_RECORD:-0}" \
  OUT="$root/docs/performance/app.json" python3 -c '
import datetime, json, os, socket, statistics, sys
rows = [dict(kv.split("=", 1) for kv in line.split()[1:]) for line in sys.stdin]
keys = [k for k in rows[0] if k != "incomplete"]
median = {}
for k in keys:
    vals = [float(r[k]) for r in rows if r.get(k, "na") != "na"]
    median[k] = statistics.median(vals) if vals else None
print("timing median: " + " ".join("%s=%s" % (k, "na" if v is None else "%g" % v) for k, v in median.items()))
if os.environ["RECORD"] == "1":
    cpu, mhz = "?", "?"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name") and cpu == "?":
            cpu = line.split(":", 1)[1].strip()
        if line.startswith("cpu MHz") and mhz == "?":
            mhz = str(round(float(line.split(":", 1)[1])))
    context = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "host_name": socket.gethostname(), "cpu_model": cpu, "num_cpus": os.cpu_count(),
               "mhz_per_cpu": mhz, "load_avg": [float(x) for x in os.environ["LOAD_BEFORE"].split()],
               "library_build_type": "not used", "command": "scripts/bench-app.sh"}
    with open(os.environ["OUT"], "w") as f:
        json.dump({"context": context, "runs": rows, "median": median}, f, indent=2)
        f.write("\n")
    print("wrote " + os.environ["OUT"])
if any("incomplete" in r for r in rows):
    print("bench-app: some runs were incomplete", file=sys.stderr)
    sys.exit(1)
'
