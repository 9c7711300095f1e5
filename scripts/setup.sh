#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# One-time (and idempotent) setup on Debian 12: installs the packages the
# build and tests need, fetches the default model, configures and builds;
# the release preset then builds the default model's calibration when there
# is none (scripts/calibrate-default.sh). A second run with everything
# present only does the incremental build.
#
#   scripts/setup.sh [--preset NAME] [--no-build]
#
# Environment: KVSCOPE_MODEL_DIR (model cache folder), KVSCOPE_SKIP_APT=1
# (assume the packages are there), KVSCOPE_JOBS (parallel build jobs).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
preset=release
build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --preset) preset="$2"; shift 2 ;;
    --no-build) build=0; shift ;;
    *) echo "usage: $0 [--preset NAME] [--no-build]" >&2; exit 2 ;;
  esac
done

packages=(
  build-essential cmake ninja-build ccache pkg-config git unzip file
  qt6-base-dev qt6-svg-dev qt6-qpa-plugins libqcustomplot-dev
  libtorch-dev libopenblas0-pthread
  libhdf5-dev hdf5-tools python3-h5py python3-numpy python3-pip
  libgtest-dev libgmock-dev libbenchmark-dev
  libzstd-dev nlohmann-json3-dev libcli11-dev libasio-dev libpcre2-dev
  libhiredis-dev libxxhash-dev redis-server
  xvfb xauth fonts-dejavu-core imagemagick
  clang-14 libclang-rt-14-dev
  appstream desktop-file-utils dpkg-dev librsvg2-bin shared-mime-info
)

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi

if [ "${KVSCOPE_SKIP_APT:-0}" != 1 ]; then
  missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
  # libtorch must use OpenBLAS, not the reference BLAS (30x slower matmuls).
  openblas=/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3
  if [ -e "$openblas" ] && [ "$(readlink -f /etc/alternatives/libblas.so.3-x86_64-linux-gnu 2>/dev/null)" != "$openblas" ]; then
    "${sudo_cmd[@]}" update-alternatives --set libblas.so.3-x86_64-linux-gnu "$openblas" >/dev/null
  fi
fi

"$here/fetch-model.sh"

if [ "$build" = 1 ]; then
  cd "$root"
  # Paths relative to the checkout, so every clone (CI's too) shares ccache hits.
  export CCACHE_BASEDIR="$root" CCACHE_NOHASHDIR=1
  export CCACHE_MAXSIZE="${CCACHE_MAXSIZE:-20G}"
  if [ ! -f "build/$preset/CMakeCache.txt" ]; then
    cmake --preset "$preset" >/dev/null
  fi
  jobs="${KVSCOPE_JOBS:-$(nproc)}"
  cmake --build --preset "$preset" -j "$jobs"
  if [ "$preset" = release ]; then
    "$here/calibrate-default.sh"
  fi
fi
