#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Adds the SPDX licence line to every tracked source file that lacks it.

Which licence a file carries depends on its path (LICENSE explains why):
the desktop app links QCustomPlot (GPL-3.0), so app/gui, its tests and its
screenshots are GPL-3.0-or-later; everything else (the core libraries, the
codec, the kernels, the CLI, tools and scripts) is Apache-2.0, which
GPL-3.0 can include, so the app as a whole is GPL-3.0-or-later.

The line goes first, or right after a shebang line, in the file's comment
syntax ("// " for C++/CUDA, "# " for Python, shell, CMake). Idempotent: a
file that already has an SPDX-License-Identifier line in its first five
lines is left alone (even with another licence: that is reported by --check,
not rewritten).

Usage:
  scripts/add-spdx.py [--root DIR] [PATH...]   add the line to PATHs (default: every tracked source)
  scripts/add-spdx.py --check [--root DIR]     list sources without the right line; exit 1 if any
"""

import argparse
import os
import subprocess
import sys

# (path prefix, licence): the first matching prefix wins.
LICENCE_BY_PATH = [
    ("app/gui/", "GPL-3.0-or-later"),
    ("tests/gui/", "GPL-3.0-or-later"),
    ("docs/screenshots/", "GPL-3.0-or-later"),
    ("", "Apache-2.0"),
]

C_STYLE = (".cpp", ".cc", ".c", ".h", ".hpp", ".cu", ".cuh", ".h.in")
HASH_STYLE = (".py", ".sh", ".cmake")
TAG = "SPDX-License-Identifier:"
# Files that are data or generated, not source, even with a source suffix.
SKIP_PREFIXES = ("tests/codec/golden/", "datasets/", "docs/results/", "docs/performance/")


def licence_for(path):
    for prefix, licence in LICENCE_BY_PATH:
        if path.startswith(prefix):
            return licence
    raise AssertionError("LICENCE_BY_PATH has no catch-all entry")


def comment_prefix(path, first_line):
    name = os.path.basename(path)
    if name.endswith(C_STYLE):
        return "// "
    if name.endswith(HASH_STYLE) or name == "CMakeLists.txt":
        return "# "
    if "." not in name and first_line.startswith("#!"):
        return "# "  # an extensionless script
    return None


def tracked_files(root):
    try:
        out = subprocess.run(["git", "-C", root, "ls-files", "-z"], check=True, capture_output=True).stdout
        return [p for p in out.decode().split("\0") if p]
    except (OSError, subprocess.CalledProcessError):
        files = []  # not a git checkout (a source tarball): walk it
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".") and not d.startswith("build")]
            for f in filenames:
                files.append(os.path.relpath(os.path.join(dirpath, f), root))
        return sorted(files)


def read_text(full):
    try:
        with open(full, encoding="utf-8") as f:
            return f.read()
    except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
        return None


def sources(root, paths=None):
    """(path, comment prefix, text) of every source file under root."""
    for path in paths if paths else tracked_files(root):
        path = os.path.normpath(path)
        if path.startswith(SKIP_PREFIXES):
            continue
        text = read_text(os.path.join(root, path))
        if text is None:
            continue
        prefix = comment_prefix(path, text.split("\n", 1)[0])
        if prefix:
            yield path, prefix, text


def existing_tag(text):
    for line in text.split("\n")[:5]:
        if TAG in line:
            return line.split(TAG, 1)[1].strip()
    return None


def with_line(text, line):
    if text.startswith("#!"):
        first, _, rest = text.partition("\n")
        return first + "\n" + line + "\n" + rest
    return line + "\n" + text


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    parser.add_argument("--check", action="store_true", help="only report; exit 1 when a file lacks the line")
    parser.add_argument("paths", nargs="*", help="files relative to the root (default: all tracked sources)")
    args = parser.parse_args()

    problems, added = [], 0
    for path, prefix, text in sources(args.root, args.paths):
        want = licence_for(path)
        have = existing_tag(text)
        if have == want:
            continue
        if have is not None:
            problems.append(f"{path}: SPDX-License-Identifier is {have}, expected {want}")
            continue
        if args.check:
            problems.append(f"{path}: no SPDX-License-Identifier line (expected {want})")
            continue
        with open(os.path.join(args.root, path), "w", encoding="utf-8") as f:
            f.write(with_line(text, f"{prefix}{TAG} {want}"))
        added += 1
    for p in problems:
        print(p)
    if args.check:
        print(f"{len(problems)} source file(s) without the right SPDX line"
              + ("" if problems else ": all good") + " (fix: scripts/add-spdx.py)")
    else:
        print(f"added the SPDX line to {added} file(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
