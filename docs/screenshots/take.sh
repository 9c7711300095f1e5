#!/usr/bin/env bash
# Takes the README screenshots from the real app under Xvfb and prints the
# launch-to-first-plot and re-encode timings the app measures (--timing).
#   docs/screenshots/take.sh [BUILD_DIR]   (default build/release)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${1:-$root/build/release}"
out="${KVSCOPE_SHOT_DIR:-$root/docs/screenshots}"
log="$(mktemp)"
export KVSCOPE_DATA_DIR="$root"
xvfb-run -a -s "-screen 0 1600x1350x24" bash -c '
  set -e
  "$0" -qwindowgeometry 1600x1350+0+0 --default-layout --timing --run-stream >"$1" 2>&1 &
  app=$!
  for i in $(seq 1 600); do grep -q "^ready" "$1" && break; sleep 0.5; done
  sleep 7   # the re-encode measurements run 1.5 s apart after ready
  import -window root "$2/distributions-tuning.png"
  for i in $(seq 1 600); do grep -q "^stream: done" "$1" && break; sleep 0.5; done
  sleep 2
  import -window root "$2/streaming.png"
  kill $app
  wait $app || true
  "$0" -qwindowgeometry 1600x1350+0+0 --default-layout --timing --show pipelineDock >"$1.pipeline" 2>&1 &
  app=$!
  for i in $(seq 1 600); do grep -q "^ready" "$1.pipeline" && break; sleep 0.5; done
  sleep 3
  import -window root "$2/pipeline.png"
  kill $app
  wait $app || true
  # Tuning alone, large enough to read: the codec panel fills a smaller window.
  "$0" -qwindowgeometry 1100x1250+0+0 --default-layout --timing --only codecDock >"$1.tuning" 2>&1 &
  app=$!
  for i in $(seq 1 600); do grep -q "^ready" "$1.tuning" && break; sleep 0.5; done
  sleep 7   # after the re-encode measurements
  import -window root -crop 1100x1250+0+0 +repage "$2/tuning.png"
  kill $app
' "$build/app/gui/kvscope" "$log" "$out"
cat "$log" | grep -E "ready|re-encode|stream" || true
cat "$log.tuning" | grep -E "ready|re-encode" | sed "s/^/tuning-only launch: /" || true
rm -f "$log" "$log.pipeline" "$log.tuning"
