#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Takes the README screenshots from the real app under Xvfb at 1920x1080 (and
# one at 1366x768, the smallest screen the window is laid out for) and prints
# the timings the app measures (--timing): launch to first plot, re-encode +
# redraw after each retune, quality in the loop, rate-distortion points and
# the streaming run's wall time.
#   docs/screenshots/take.sh [BUILD_DIR]   (default build/release)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${1:-$root/build/release}"
out="${KVSCOPE_SHOT_DIR:-$root/docs/screenshots}"
log="$(mktemp -d)"
export KVSCOPE_DATA_DIR="$root"
app="$build/app/gui/kvscope"

# shot NAME WxH LOGNAME WAIT_PATTERN EXTRA_WAIT_S APP_ARGS...
shot() {
  local name="$1" size="$2" logname="$3" pattern="$4" extra="$5"
  shift 5
  xvfb-run -a -s "-screen 0 ${size}x24" bash -c '
    set -e
    app="$1"; size="$2"; logf="$3"; pattern="$4"; extra="$5"; png="$6"; shift 6
    "$app" -qwindowgeometry "${size}+0+0" --default-layout --timing "$@" >"$logf" 2>&1 &
    pid=$!
    for i in $(seq 1 900); do grep -q "$pattern" "$logf" && break; sleep 0.5; done
    sleep "$extra"
    import -window root "$png"
    kill $pid
    wait $pid || true
  ' _ "$app" "$size" "$log/$logname" "$pattern" "$extra" "$out/$name" "$@"
}

# Tuning: distributions beside the codec panel, after the retune
# measurements (5 changes, each once the previous one's quality is shown,
# ending on the starting settings) and their quality readouts.
shot distributions-tuning.png 1920x1080 tuning "^timing:" 2
# The codec panel with the rate-distortion view: every codec at defaults and
# a key_bins sweep, the current settings starred.
shot tuning.png 1920x1080 rd "^rate-distortion sweep: done" 4 --show rdDock --measure-rd
# Streaming: the default scenario with its baselines and delivered quality.
shot streaming.png 1920x1080 stream "^stream: done" 12 --show streamDock --run-stream
shot pipeline.png 1920x1080 pipeline "^ready" 3 --show pipelineDock
# The smallest supported screen.
shot layout-1366x768.png 1366x768 small "^ready" 6 --show streamDock

for f in tuning rd stream pipeline small; do
  grep -E "ready|re-encode|retune|quality|rate-distortion|stream|timing" "$log/$f" | sed "s/^/$f: /" || true
done
rm -rf "$log"
