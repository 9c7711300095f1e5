#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Sets up (packages, model, build) and launches the KVScope desktop app on the
# default model and context. Extra arguments go to the app.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
exec "$root/build/release/app/gui/kvscope" "$@"
