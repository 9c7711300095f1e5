#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The layering rules of docs/architecture.md ("Layers", "Rules") that a
script can check, over the tracked sources of a checkout:

- a library includes KVScope headers only of itself and the layers below it;
- no Qt (or QCustomPlot) header in core/, kernels/ or app/cli/;
- no libtorch header outside core/model/src/ (so none can meet Qt's macros);
- comments cite documents that are in the repository: no citation of the
  design notes that never were (issue #19).

Usage: check_layers.py [ROOT]   prints each violation as path:line: rule; exit 1 if any.
"""

import os
import re
import subprocess
import sys

# KVScope header folders (kvscope/<area>/...) each library may include.
ALLOWED = {
    "core/common/": {"common"},
    "core/kv/": {"common", "kv"},
    "core/codec/": {"common", "kv", "codec"},
    "core/io/": {"common", "kv", "codec", "io"},
    "core/model/": {"common", "kv", "codec", "io", "model"},
    "core/stream/": {"common", "kv", "codec", "stream"},
    "core/eval/": {"common", "kv", "codec", "io", "model", "eval"},
    "kernels/": {"common", "kv", "codec", "kernels"},
}
# Header-only adapters a layer offers to front ends that link the layer above.
EXCEPTIONS = {
    # A Recomputer over kvscope::model for the CLI and GUI; kvscope_stream
    # itself never compiles it (docs/architecture.md, "Layers").
    ("core/stream/include/kvscope/stream/model_recomputer.h", "model"),
}
NO_QT = ("core/", "kernels/", "app/cli/")
TORCH_OK = ("core/model/src/",)
SOURCE_SUFFIXES = (".cpp", ".h", ".cu", ".cuh", ".hpp", ".cc", ".h.in")
KVSCOPE_INCLUDE = re.compile(r'^\s*#\s*include\s+"kvscope/([a-z_]+)/')
QT_INCLUDE = re.compile(r"^\s*#\s*include\s+<(Q[A-Za-z]*|qcustomplot\.h)[>/]")
TORCH_INCLUDE = re.compile(r"^\s*#\s*include\s+<(torch|ATen|c10)/")
MISSING_DOC = "DESIGN" + ".md"  # spelled apart so this file does not match itself


def tracked(root):
    out = subprocess.run(["git", "-C", root, "ls-files", "-z"], capture_output=True)
    if out.returncode == 0:
        return [p for p in out.stdout.decode().split("\0") if p]
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and not d.startswith("build")]
        files += [os.path.relpath(os.path.join(dirpath, f), root) for f in filenames]
    return files


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    problems = []
    for path in tracked(root):
        try:
            with open(os.path.join(root, path), encoding="utf-8") as f:
                lines = f.read().split("\n")
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue
        for n, line in enumerate(lines, 1):
            if MISSING_DOC in line:
                problems.append(f"{path}:{n}: cites {MISSING_DOC}, which is not in the repository "
                                "(cite docs/architecture.md, docs/bitstream.md or docs/hdf5-format.md)")
        if not path.endswith(SOURCE_SUFFIXES):
            continue
        layer = next((p for p in ALLOWED if path.startswith(p)), None)
        for n, line in enumerate(lines, 1):
            m = KVSCOPE_INCLUDE.match(line)
            if m and layer and m.group(1) not in ALLOWED[layer] and (path, m.group(1)) not in EXCEPTIONS:
                problems.append(f"{path}:{n}: {layer} may not include kvscope/{m.group(1)}/ "
                                f"(a layer above it; allowed: {', '.join(sorted(ALLOWED[layer]))})")
            if QT_INCLUDE.match(line) and path.startswith(NO_QT):
                problems.append(f"{path}:{n}: Qt header outside app/gui")
            if TORCH_INCLUDE.match(line) and not path.startswith(TORCH_OK):
                problems.append(f"{path}:{n}: libtorch header outside core/model/src")
    for p in problems:
        print(p)
    print(f"{len(problems)} layering problem(s)" + ("" if problems else ": the layers hold"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
