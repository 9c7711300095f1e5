#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs the kvscope-cli unpacked by test_deb.sh (fixture) over the default
# dataset context it installed: prefill a short prefix with the default
# model, then stats, encode (cachegen), inspect, decode and a simulated
# stream (preset profile and ladder from the installed resources) on that
# cache. The binary must find everything relative to itself
# (KVSCOPE_DATA_DIR unset).
#
#   test_deb_dataset.sh WORK_DIR
#
# Exit 77 (ctest: skipped) when the default model is absent, unless
# KVSCOPE_REQUIRE_MODEL=1, where that is a failure.
set -euo pipefail
trap 'echo "FAIL: line $LINENO: $BASH_COMMAND" >&2' ERR
if [ $# -ne 1 ]; then
  echo "usage: $0 WORK_DIR" >&2
  exit 2
fi
work="$(realpath "$1")"
root="$work/root"
cli="$root/usr/bin/kvscope-cli"
data="$root/usr/share/kvscope"
py=/usr/bin/python3
[ -x "$cli" ] || { echo "FAIL: $cli missing (did packaging.deb run?)" >&2; exit 1; }
tmp="$work/dataset-run"
rm -rf "$tmp"
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
run() { env -u KVSCOPE_DATA_DIR -u KVSCOPE_MODEL "$cli" "$@"; }
json_get() { "$py" -c 'import json,sys; d=json.load(sys.stdin)
for k in sys.argv[1:]: d=d[k]
print(d)' "$@"; }

doctor="$(run doctor --json)"
if [ "$(json_get default_model_present <<<"$doctor")" != True ]; then
  msg="default model absent ($(json_get default_model <<<"$doctor"))"
  if [ "${KVSCOPE_REQUIRE_MODEL:-0}" = 1 ]; then echo "FAIL: $msg" >&2; exit 1; fi
  echo "skipped: $msg"
  exit 77
fi

# The context named default_context in the installed datasets/index.json.
context="$("$py" - "$data/datasets/index.json" <<'EOF'
import json, os, sys
index = sys.argv[1]
d = json.load(open(index))
c = next(c for c in d["contexts"] if c["id"] == d["default_context"])
print(os.path.join(os.path.dirname(index), c["file"]))
EOF
)"
[ -s "$context" ] || { echo "FAIL: installed default context $context missing" >&2; exit 1; }
echo "context: $context"

tokens=64
out="$(run prefill --context "$context" --max-tokens "$tokens" --out "$tmp/cache.safetensors" --json)"
[ "$(json_get tokens <<<"$out")" = "$tokens" ] || { echo "FAIL: prefill: $out" >&2; exit 1; }
echo "ok:   prefill: $tokens tokens of $(basename "$context")"

out="$(run stats --in "$tmp/cache.safetensors" --json)"
[ "$(json_get shape tokens <<<"$out")" = "$tokens" ] || { echo "FAIL: stats: $out" >&2; exit 1; }
echo "ok:   stats: $(json_get shape layers <<<"$out") layers x $tokens tokens"

out="$(run encode --in "$tmp/cache.safetensors" --out "$tmp/cache.kvc" --codec cachegen --json)"
"$py" -c 'import json,sys; d=json.load(sys.stdin); assert d["codec"] == "cachegen" and 0 < d["encoded_bytes"], d' <<<"$out" ||
  { echo "FAIL: encode: $out" >&2; exit 1; }
echo "ok:   encode cachegen: $(json_get encoded_bytes <<<"$out") of $(json_get original_bytes <<<"$out") bytes"

run inspect "$tmp/cache.kvc" --json >/dev/null || { echo "FAIL: inspect" >&2; exit 1; }
echo "ok:   inspect"

out="$(run decode --in "$tmp/cache.kvc" --out "$tmp/decoded.safetensors" --json)"
[ "$(json_get tokens <<<"$out")" = "$tokens" ] || { echo "FAIL: decode: $out" >&2; exit 1; }
echo "ok:   decode: $tokens tokens back"
# HDF5 export (the *.h5 files the desktop entry opens) and back.
run encode --in "$tmp/cache.safetensors" --out "$tmp/cache.h5" --codec cachegen --text "$context" --json >/dev/null
# HDF5 signature at offset 0 or after a user block (512, 1024, 2048, ...).
is_hdf5=0
for off in 0 512 1024 2048 4096; do
  [ "$(od -An -tx1 -j "$off" -N8 "$tmp/cache.h5" | tr -d ' ')" = 894844460d0a1a0a ] && is_hdf5=1
done
[ "$is_hdf5" = 1 ] || { echo "FAIL: encode --out cache.h5 did not write an HDF5 file" >&2; exit 1; }
out="$(run decode --in "$tmp/cache.h5" --out "$tmp/from-h5.safetensors" --json)"
[ "$(json_get tokens <<<"$out")" = "$tokens" ] || { echo "FAIL: decode of .h5: $out" >&2; exit 1; }
echo "ok:   HDF5 export and decode: $tokens tokens back"

# Streaming reads a bandwidth-profile preset and the default codec ladder
# from the installed resources/.
out="$(run stream --cache "$tmp/cache.safetensors" --profile wifi-drop --slo 1 --simulate --chunk-tokens 32 \
  --compute-profile 2000 --json)"
"$py" -c 'import json,sys; d=json.load(sys.stdin); assert d["profile"] == "wifi-drop" and d["ladder"] == "default" and len(d["chunks"]) == 2, d' <<<"$out" ||
  { echo "FAIL: stream: $out" >&2; exit 1; }
echo "ok:   stream (simulated, preset wifi-drop, default ladder): 2 chunks"
echo "installed kvscope-cli ran on dataset context $(basename "$context")"
