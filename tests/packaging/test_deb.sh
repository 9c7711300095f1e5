#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds the .deb with CPack from a configured and built tree, unpacks it into
# a temporary root, checks what it contains and validates its desktop
# integration, then runs the unpacked kvscope-cli (which must find its data
# relative to itself, inside that root). Any failed check fails the test.
#
#   test_deb.sh CPACK BUILD_DIR SOURCE_DIR VERSION WITH_GUI(ON|OFF) WORK_DIR
#
# WORK_DIR is emptied first; the package (WORK_DIR/out) and the unpacked root
# (WORK_DIR/root) stay there for test_deb_dataset.sh.
set -euo pipefail
if [ $# -ne 6 ]; then
  echo "usage: $0 CPACK BUILD_DIR SOURCE_DIR VERSION WITH_GUI WORK_DIR" >&2
  exit 2
fi
cpack="$1" build="$2" src="$3" version="$4" gui="$5" work="$6"
app_id=io.github.kvscope.KVScope

rm -rf "$work"
mkdir -p "$work"
work="$(realpath "$work")"
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
pass() { echo "ok:   $*"; }
need() { command -v "$1" >/dev/null || { echo "FAIL: $1 not found (Debian: $2; run scripts/setup.sh)" >&2; exit 1; }; }
need dpkg-deb dpkg
need dpkg-shlibdeps dpkg-dev
need desktop-file-validate desktop-file-utils
need appstreamcli appstream
need update-mime-database shared-mime-info

# ---- 1. build the package ---------------------------------------------------
if ! (cd "$work" && "$cpack" -G DEB --config "$build/CPackConfig.cmake" -B "$work/out") >"$work/cpack.log" 2>&1; then
  cat "$work/cpack.log" >&2
  echo "FAIL: cpack -G DEB failed" >&2
  exit 1
fi
debs=("$work"/out/kvscope_*.deb)
if [ ${#debs[@]} -ne 1 ] || [ ! -f "${debs[0]}" ]; then
  ls -l "$work/out" >&2
  echo "FAIL: expected exactly one kvscope_*.deb" >&2
  exit 1
fi
deb="${debs[0]}"
echo "package: $(basename "$deb") ($(stat -c %s "$deb") bytes)"

# ---- 2. control fields --------------------------------------------------------
field() { dpkg-deb -f "$deb" "$1"; }
[ "$(field Package)" = kvscope ] && pass "Package: kvscope" || fail "Package is '$(field Package)'"
[ "$(field Version)" = "$version" ] && pass "Version: $version" || fail "Version is '$(field Version)', project says $version"
[ "$(field Architecture)" = "$(dpkg --print-architecture)" ] && pass "Architecture: $(field Architecture)" ||
  fail "Architecture is '$(field Architecture)'"
[ "$(field Section)" = science ] && pass "Section: science" || fail "Section is '$(field Section)'"
[ -n "$(field Maintainer)" ] && pass "Maintainer: $(field Maintainer)" || fail "no Maintainer"
[ -n "$(field Homepage)" ] && pass "Homepage: $(field Homepage)" || fail "no Homepage"
[ "$(field Description | wc -l)" -gt 2 ] && pass "Description has a long text" || fail "Description too short"
depends="$(field Depends)"
echo "Depends: $depends"
# Computed by dpkg-shlibdeps: the C/C++ runtime must be there, with versions.
for lib in 'libc6 (>=' 'libstdc++6 (>='; do
  [[ "$depends" == *"$lib"* ]] && pass "Depends has $lib" || fail "Depends lacks '$lib' (dpkg-shlibdeps not run?)"
done
if [ "$gui" = ON ]; then
  [[ "$depends" == *libqt6widgets6* ]] && pass "Depends has libqt6widgets6" || fail "Depends lacks libqt6widgets6"
fi
if dpkg-deb -c "$deb" | grep -q '\./\.cache\|/root/\|/home/'; then fail "package contains files from a home folder"; fi

# ---- 3. unpack and check the files ------------------------------------------
root="$work/root"
dpkg-deb -x "$deb" "$root"
share="$root/usr/share"
expect_exec() { [ -x "$root/$1" ] && [ -f "$root/$1" ] && pass "$1" || fail "missing executable $1"; }
expect_file() { [ -s "$root/$1" ] && pass "$1" || fail "missing $1"; }
expect_exec usr/bin/kvscope-cli
expect_exec usr/bin/kvscope-fetch-model
expect_exec usr/share/kvscope/scripts/fetch-model.sh
expect_exec usr/share/kvscope/scripts/calibrate-default.sh
expect_file usr/share/kvscope/docs/results/tune/sensitivity-defaults.kvssens
expect_file usr/share/kvscope/resources/models.sha256
for page in kvscope-cli kvscope kvscope-fetch-model; do expect_file "usr/share/man/man1/$page.1.gz"; done
# Debian policy 12.5: a machine-readable copyright file naming both licences (LICENSE).
copyright="usr/share/doc/kvscope/copyright"
expect_file "$copyright"
if [ -f "$root/$copyright" ]; then
  head -n 1 "$root/$copyright" | grep -q '^Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/' &&
    grep -q '^License: Apache-2.0$' "$root/$copyright" && grep -q '^License: GPL-3.0-or-later$' "$root/$copyright" &&
    pass "$copyright: DEP-5, Apache-2.0 and GPL-3.0-or-later" || fail "$copyright is not DEP-5 with both licences"
fi
if [ "$gui" = ON ]; then
  expect_exec usr/bin/kvscope
  expect_file "usr/share/applications/$app_id.desktop"
  expect_file "usr/share/metainfo/$app_id.metainfo.xml"
  expect_file "usr/share/mime/packages/$app_id.xml"
  expect_file "usr/share/icons/hicolor/scalable/apps/$app_id.svg"
  for size in 16 22 24 32 48 64 128 256; do
    png="usr/share/icons/hicolor/${size}x${size}/apps/$app_id.png"
    if [ -s "$root/$png" ]; then
      # PNG IHDR: width and height are big-endian 32-bit at bytes 16 and 20.
      dims="$(od -An -tu1 -j16 -N8 "$root/$png" | awk '{print $1*16777216+$2*65536+$3*256+$4 "x" $5*16777216+$6*65536+$7*256+$8}')"
      [ "$dims" = "${size}x${size}" ] && pass "$png ($dims)" || fail "$png is $dims, not ${size}x${size}"
    else
      fail "missing $png"
    fi
  done
fi
# Everything in the source's resources/, datasets/ and docs/ is installed.
for dir in resources datasets docs; do
  [ -d "$src/$dir" ] || { echo "note: no $dir/ in the source tree"; continue; }
  count=0
  while IFS= read -r -d '' f; do
    rel="${f#"$src/$dir/"}"
    [ -f "$share/kvscope/$dir/$rel" ] || fail "$dir/$rel not installed under share/kvscope/$dir"
    count=$((count + 1))
  done < <(find "$src/$dir" -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0)
  echo "checked: $count files of $dir/ installed"
done
# The installed dataset index names only files that are installed.
index="$share/kvscope/datasets/index.json"
if [ -f "$src/datasets/index.json" ]; then
  if out="$(/usr/bin/python3 - "$index" <<'EOF'
import json, os, sys
path = sys.argv[1]
d = json.load(open(path))
base = os.path.dirname(path)
entries = d.get("contexts", []) + d.get("tasks", [])
missing = [e["file"] for e in entries if not os.path.isfile(os.path.join(base, e["file"]))]
ids = [c["id"] for c in d.get("contexts", [])]
if missing or d.get("default_context") not in ids or not entries:
    sys.exit(f"missing {missing}, default_context {d.get('default_context')!r} in {ids}")
print(len(entries))
EOF
  )"; then
    pass "datasets/index.json: $out entries, all files installed"
  else
    fail "installed datasets/index.json: $out"
  fi
fi
for bin in kvscope-cli kvscope; do
  [ -f "$root/usr/bin/$bin" ] || continue
  if ldd "$root/usr/bin/$bin" | grep -q 'not found'; then
    ldd "$root/usr/bin/$bin" | grep 'not found' >&2
    fail "$bin has unresolved shared libraries"
  else
    pass "$bin: all shared libraries resolve"
  fi
  if file -L "$root/usr/bin/$bin" | grep -q 'not stripped'; then fail "$bin is not stripped"; fi
done

# ---- 4. validators on the installed files -------------------------------------
if [ "$gui" = ON ]; then
  desktop="$share/applications/$app_id.desktop"
  if out="$(desktop-file-validate "$desktop" 2>&1)"; then
    pass "desktop-file-validate${out:+ ($out)}"
  else
    echo "$out" >&2
    fail "desktop-file-validate"
  fi
  exec_bin="$(sed -n 's/^Exec=\([^ ]*\).*/\1/p' "$desktop")"
  [ -x "$root/usr/bin/$exec_bin" ] && pass "Exec=$exec_bin is installed" || fail "Exec=$exec_bin is not in usr/bin"
  icon="$(sed -n 's/^Icon=//p' "$desktop")"
  [ "$icon" = "$app_id" ] && pass "Icon=$icon" || fail "Icon is '$icon', expected $app_id"
  grep -q '^MimeType=.*application/x-kvscope-workspace;' "$desktop" && grep -q '^MimeType=.*application/x-hdf5;' "$desktop" &&
    pass "desktop entry handles workspaces and HDF5" || fail "desktop entry MimeType lacks the workspace or HDF5 type"

  metainfo="$share/metainfo/$app_id.metainfo.xml"
  if out="$(appstreamcli validate --no-net "$metainfo" 2>&1)"; then
    pass "appstreamcli validate --no-net"
  else
    echo "$out" >&2
    fail "appstreamcli validate --no-net"
  fi
  grep -q "<launchable type=\"desktop-id\">$app_id.desktop</launchable>" "$metainfo" &&
    pass "metainfo launches $app_id.desktop" || fail "metainfo launchable does not name $app_id.desktop"
  grep -q "<release version=\"$version\"" "$metainfo" && pass "metainfo release $version" ||
    fail "metainfo has no <release version=\"$version\">"
  grep -q "<project_license>GPL-3.0-or-later AND Apache-2.0</project_license>" "$metainfo" &&
    pass "metainfo project_license" || fail "metainfo project_license is not 'GPL-3.0-or-later AND Apache-2.0' (LICENSE)"

  # The MIME package compiles and maps *.kvscope; x-hdf5 resolves to HDF.
  mkdir -p "$work/tmp/mime/packages"
  [ -f /usr/share/mime/packages/freedesktop.org.xml ] && cp /usr/share/mime/packages/freedesktop.org.xml "$work/tmp/mime/packages/"
  cp "$share/mime/packages/$app_id.xml" "$work/tmp/mime/packages/"
  if update-mime-database "$work/tmp/mime" >/dev/null 2>"$work/tmp/mime.log" &&
    grep -q '^50:application/x-kvscope-workspace:\*\.kvscope$' "$work/tmp/mime/globs2"; then
    pass "MIME: *.kvscope is application/x-kvscope-workspace"
  else
    cat "$work/tmp/mime.log" >&2
    fail "MIME package does not compile or does not map *.kvscope"
  fi
  if [ -f /usr/share/mime/packages/freedesktop.org.xml ]; then
    grep -q '^application/x-hdf5 application/x-hdf$' "$work/tmp/mime/aliases" && pass "MIME: application/x-hdf5 is an alias of application/x-hdf" ||
      fail "MIME: application/x-hdf5 does not resolve to the *.h5 type"
  fi
fi

# ---- 5. man pages -------------------------------------------------------------
cli="$root/usr/bin/kvscope-cli"
manpage="$(zcat "$share/man/man1/kvscope-cli.1.gz")"
if command -v groff >/dev/null; then
  for page in kvscope-cli kvscope kvscope-fetch-model; do
    if warn="$(zcat "$share/man/man1/$page.1.gz" | groff -man -ww -z 2>&1)" && [ -z "$warn" ]; then
      pass "$page.1 formats without warnings"
    else
      echo "$warn" >&2
      fail "$page.1 has groff warnings"
    fi
  done
fi
# Every command the installed binary has is documented.
commands="$("$cli" --help | awk '/^Subcommands:/{s=1; next} s && /^  [a-z]/{print $1} s && !/^ /{s=0}')"
[ -n "$commands" ] || fail "kvscope-cli --help lists no commands"
for c in $commands; do
  grep -qF ".SS \"kvscope\\-cli $c\"" <<<"$manpage" && pass "man page documents '$c'" || fail "man page lacks command '$c'"
done

# ---- 6. run the installed CLI ---------------------------------------------------
run() { env -u KVSCOPE_DATA_DIR -u KVSCOPE_MODEL "$@"; }
out="$(run "$cli" --version)" && [[ "$out" == *"$version"* ]] && pass "kvscope-cli --version: $out" ||
  fail "kvscope-cli --version printed '$out'"
json="$(run "$cli" doctor --json)" || fail "kvscope-cli doctor --json failed"
data_dir="$(printf '%s' "$json" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["data_dir"])')"
[ "$data_dir" = "$share/kvscope" ] && pass "doctor: data_dir is $data_dir" ||
  fail "doctor: data_dir is '$data_dir', expected $share/kvscope (installed layout not found)"
help="$(run env KVSCOPE_MODEL="$work/no-such-model.gguf" "$cli" doctor)"
[[ "$help" == *"$root/usr/bin/kvscope-fetch-model"* ]] && pass "missing-model message points to kvscope-fetch-model" ||
  fail "missing-model message does not name the installed kvscope-fetch-model: $help"

# The wrapper finds the installed fetch script and its pinned hash: with the
# verified model already in place it must succeed without downloading.
model_dir="${KVSCOPE_MODEL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kvscope/models}"
model="$model_dir/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ -f "$model" ]; then
  mkdir -p "$work/tmp/models"
  ln -s "$model" "$work/tmp/models/"
  if out="$(KVSCOPE_MODEL_DIR="$work/tmp/models" timeout 60 "$root/usr/bin/kvscope-fetch-model" 2>&1)" && [ -z "$out" ]; then
    pass "kvscope-fetch-model verifies the present model against the installed hash"
  else
    fail "kvscope-fetch-model with the model present: $out"
  fi
else
  echo "note: default model absent, kvscope-fetch-model not exercised"
fi

rm -rf "$work/out/_CPack_Packages" "$work/tmp"
if [ "$failures" -ne 0 ]; then
  echo "$failures check(s) failed" >&2
  exit 1
fi
echo "all package checks passed"
