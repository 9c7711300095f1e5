#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Peak resident memory and prefill speed of the default model and of
# synthetic models with the shapes of Llama-3.2-1B and Llama-3.1-8B (random
# Q4_K_M-style weights, written once by scripts/make-synthetic-model.py into
# $KVSCOPE_SYNTHETIC_DIR, default ~/.cache/kvscope/synthetic: about 0.8 and
# 4.6 GiB). Each measurement is its own process, so peak RSS is that model's.
#
#   scripts/bench-models.sh [build/release/app/cli/kvscope-cli] [REPEATS]
#
# Prints one JSON line per run (kvscope-cli model bench --json). The machine
# should be otherwise idle: check `uptime` before, and repeat for the spread.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cli="${1:-$here/../build/release/app/cli/kvscope-cli}"
repeats="${2:-1}"
dir="${KVSCOPE_SYNTHETIC_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kvscope/synthetic}"
mkdir -p "$dir"
py=python3
if ! "$py" -c "import numpy" 2>/dev/null; then py=/usr/bin/python3; fi
for shape in llama-3.2-1b llama-3.1-8b; do
  f="$dir/$shape.Q4_K_M.gguf"
  [ -f "$f" ] || "$py" "$here/make-synthetic-model.py" "$shape" "$f"
done
echo "# $(date -u +%FT%TZ) $(uptime)"
for i in $(seq "$repeats"); do
  "$cli" model bench --json --tokens 2048
  "$cli" model bench --json --tokens 2048 --weights file
  "$cli" model bench --json --tokens 2048 --model "$dir/llama-3.2-1b.Q4_K_M.gguf"
  "$cli" model bench --json --tokens 512 --model "$dir/llama-3.1-8b.Q4_K_M.gguf"
done
