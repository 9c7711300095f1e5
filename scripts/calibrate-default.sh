#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds the default model's calibration when the calibration folder has none
# for it: cachegen's symbol tables and channel weighting, the transform
# codec's bases, and the layer sensitivity cachegen's default bins were
# planned from, all from the TUNE contexts of datasets/splits.json at 1024
# tokens (the calibration docs/results.md measures with). Without one,
# cachegen's defaults run without channel weighting and ship their tables
# in every stream. Does nothing when `kvscope-cli doctor` finds a
# calibration of the default model.
#
# Folder: $KVSCOPE_CALIBRATION_DIR, else ~/.cache/kvscope/profiles.
# Environment: KVSCOPE_CLI (default: the source tree's build/release one, or
# in an installed tree <prefix>/bin/kvscope-cli).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cli="${KVSCOPE_CLI:-$root/build/release/app/cli/kvscope-cli}"
if [ -z "${KVSCOPE_CLI:-}" ] && [ ! -x "$cli" ]; then
  cli="$root/../../bin/kvscope-cli"  # installed: <prefix>/share/kvscope/scripts
fi

doctor="$("$cli" doctor --json)"
# "found" (the model has one), "no-model" (no model runtime or no default
# model: nothing to calibrate with) or "missing".
state="$(python3 -c '
import json, sys
d = json.loads(sys.argv[1])
ok = d["features"]["torch"] and d["default_model_present"]
print("found" if d["model_calibrations"] else "missing" if ok else "no-model")' "$doctor")"
case "$state" in
  found) exit 0 ;;
  no-model) echo "calibrate-default: no model runtime or default model here; no calibration built" >&2; exit 0 ;;
esac

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mapfile -t tune < <(python3 -c 'import json, sys; print("\n".join(json.load(open(sys.argv[1]))["splits"]["tune"]))' \
  "$root/datasets/splits.json")
echo "building the default model's calibration from ${tune[*]} (about a minute)..."
args=()
for id in "${tune[@]}"; do
  "$cli" prefill --context "$root/datasets/contexts/$id.txt" --max-tokens 1024 --out "$tmp/$id.safetensors" \
    --json >/dev/null
  args+=(--in "$tmp/$id.safetensors" --context "$id")
done
"$cli" calibrate "${args[@]}" --max-tokens 1024 --sensitivity "$root/docs/results/tune/sensitivity-defaults.kvssens"
