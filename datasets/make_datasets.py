#!/usr/bin/python3
"""Regenerates KVScope's evaluation datasets (datasets/contexts, datasets/tasks,
datasets/index.json) from Debian packages and fixed seeds.

    /usr/bin/python3 datasets/make_datasets.py [--work DIR]

Contexts come from freely licensed text in Debian 12 packages (see
datasets/README.md for provenance and licences); the script fetches them with
`apt-get download` and unpacks them with `dpkg -x` into DIR (default: a
temporary folder), so nothing is installed. Tasks (passkey retrieval, line
retrieval) are synthetic, generated with fixed seeds. Running it twice gives
byte-identical files for the same package versions."""
import argparse
import glob
import json
import os
import random
import re
import subprocess
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGES = ["bible-kjv", "bible-kjv-text", "python3.11-doc", "libpython3.11-minimal"]


def fetch(work):
    root = os.path.join(work, "root")
    versions = {}
    for pkg in PACKAGES:
        debs = glob.glob(os.path.join(work, pkg + "_*.deb"))
        if not debs:
            subprocess.run(["apt-get", "download", pkg], cwd=work, check=True)
            debs = glob.glob(os.path.join(work, pkg + "_*.deb"))
        deb = sorted(debs)[-1]
        versions[pkg] = os.path.basename(deb).split("_")[1]
        subprocess.run(["dpkg", "-x", deb, root], check=True)
    versions["base-files"] = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", "base-files"], capture_output=True, text=True, check=True
    ).stdout
    return root, versions


def bible(root, ref):
    """Verses `ref` (e.g. 'gen1:1-3:24') as prose: one paragraph per chapter."""
    out = subprocess.run(
        [os.path.join(root, "usr/bin/bible"), "-p", os.path.join(root, "usr/lib"), "-f", ref],
        capture_output=True, text=True, check=True,
    ).stdout
    chapters = []
    current = None
    for line in out.splitlines():
        m = re.match(r"^([0-9]?[A-Za-z]+)(\d+):(\d+) (.*)$", line)
        if not m:
            continue
        book, chap, text = m.group(1), int(m.group(2)), m.group(4).strip()
        if current is None or current[0] != chap:
            current = (chap, [])
            chapters.append(current)
        current[1].append(text)
    return "\n\n".join(f"Chapter {c}\n\n" + " ".join(v) for c, v in chapters) + "\n"


def rst_until(path, max_chars):
    """The start of a reStructuredText file, cut at the last section heading before max_chars."""
    text = open(path, encoding="utf-8").read()
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    heads = [m.start() for m in re.finditer(r"\n[^\n]+\n[=\-~^*]{3,}\n", cut)]
    return cut[: heads[-1] + 1] if heads else cut[: cut.rfind("\n\n") + 1]


def code_until(path, max_chars):
    """The start of a Python source file, cut before the last top-level definition within max_chars."""
    text = open(path, encoding="utf-8").read()
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    defs = [m.start() for m in re.finditer(r"\n(?=(def|class) )", cut)]
    return cut[: defs[-1] + 1]


def contexts(root, versions):
    doc = os.path.join(root, "usr/share/doc/python3.11/html/_sources/tutorial")
    kjv = f"bible-kjv {versions['bible-kjv']} + bible-kjv-text {versions['bible-kjv-text']} (Debian 12), read with its `bible` program"
    pydoc = f"python3.11-doc {versions['python3.11-doc']} (Debian 12), usr/share/doc/python3.11/html/_sources/tutorial/"
    return [
        dict(id="python-appetite", title="Python tutorial: Whetting Your Appetite", kind="technical",
             text=rst_until(os.path.join(doc, "appetite.rst.txt"), 40000),
             source=pydoc + "appetite.rst.txt", licence="PSF-2.0 (Python documentation licence)"),
        dict(id="kjv-genesis", title="King James Bible: Genesis 1-2", kind="prose",
             text=bible(root, "gen1:1-2:25"), source=kjv + ": Genesis 1:1-2:25", licence="public domain"),
        dict(id="apache-2.0", title="Apache License 2.0 (full text)", kind="legal",
             text=open("/usr/share/common-licenses/Apache-2.0", encoding="utf-8").read(),
             source=f"base-files {versions['base-files']} (Debian 12): /usr/share/common-licenses/Apache-2.0",
             licence="verbatim copying permitted (the licence text itself)"),
        dict(id="kjv-job-dialogue", title="King James Bible: Job 3-10 (dialogue of Job, Eliphaz and Bildad)", kind="dialogue",
             text=bible(root, "job3:1-10:22"), source=kjv + ": Job 3:1-10:22", licence="public domain"),
        dict(id="python-textwrap-code", title="CPython 3.11 Lib/textwrap.py (source code)", kind="code",
             text=code_until(os.path.join(root, "usr/lib/python3.11/textwrap.py"), 40000),
             source=f"libpython3.11-minimal {versions['libpython3.11-minimal']} (Debian 12): usr/lib/python3.11/textwrap.py",
             licence="PSF-2.0"),
        dict(id="python-controlflow", title="Python tutorial: More Control Flow Tools (first sections)", kind="technical",
             text=rst_until(os.path.join(doc, "controlflow.rst.txt"), 26000),
             source=pydoc + "controlflow.rst.txt (cut at a section boundary)", licence="PSF-2.0 (Python documentation licence)"),
        dict(id="gpl-3.0", title="GNU General Public License v3 (full text)", kind="legal",
             text=open("/usr/share/common-licenses/GPL-3", encoding="utf-8").read(),
             source=f"base-files {versions['base-files']} (Debian 12): /usr/share/common-licenses/GPL-3",
             licence="verbatim copying permitted (the licence text itself)"),
    ]


FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "


def passkey_tasks():
    """Passkey retrieval (Mohtashami & Jaggi 2023 style): a 5-digit key hidden at a depth in filler text."""
    rng = random.Random(20261128)
    tasks = []
    for repeats in (24, 48):  # about 550 and 1100 tokens of filler
        for depth in (0.0, 0.25, 0.5, 0.75, 1.0):
            key = rng.randint(10000, 99999)
            at = round(depth * repeats)
            needle = f"The pass key is {key}. Remember it. {key} is the pass key. "
            context = ("There is an important info hidden inside a lot of irrelevant text. "
                       "Find it and memorize it. I will quiz you about the important information there.\n\n"
                       + FILLER * at + needle + FILLER * (repeats - at))
            tasks.append(dict(id=f"passkey-{repeats}-{int(depth * 100)}", kind="passkey", depth=depth,
                              context=context, question="\nWhat is the pass key? The pass key is", answer=str(key)))
    return tasks


def line_tasks():
    """LongChat-style line retrieval: numbered lines with random register contents; ask for one line's value."""
    rng = random.Random(7071)
    tasks = []
    for lines in (30, 60):  # about 500 and 1000 tokens
        for i in range(5):
            values = [rng.randint(10000, 99999) for _ in range(lines)]
            target = rng.randint(1, lines)
            body = "".join(f"line {n}: REGISTER_CONTENT is <{v}>\n" for n, v in enumerate(values, 1))
            context = ("Below is a record of lines I want you to remember. Each line begins with 'line <line index>' "
                       "and contains a '<REGISTER_CONTENT>' at the end of the line as a numerical value. For each "
                       "line index, memorize its corresponding <REGISTER_CONTENT>. At the end of the record, I will "
                       "ask you to retrieve the corresponding <REGISTER_CONTENT> of a certain line index.\n" + body)
            tasks.append(dict(id=f"lines-{lines}-{i}", kind="line_retrieval", line=target, context=context,
                              question=f"\nWhat is the REGISTER_CONTENT in line {target}? The REGISTER_CONTENT in line {target} is <",
                              answer=str(values[target - 1])))
    return tasks


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--work", help="download/unpack folder (default: a temporary folder)")
    args = ap.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="kvscope-datasets-")
    os.makedirs(work, exist_ok=True)
    root, versions = fetch(work)

    os.makedirs(os.path.join(HERE, "contexts"), exist_ok=True)
    os.makedirs(os.path.join(HERE, "tasks"), exist_ok=True)
    index = {"version": 1, "default_context": "kjv-genesis", "generator": "datasets/make_datasets.py",
             "contexts": [], "tasks": []}
    for c in contexts(root, versions):
        rel = f"contexts/{c['id']}.txt"
        with open(os.path.join(HERE, rel), "w", encoding="utf-8") as f:
            f.write(c["text"])
        index["contexts"].append({k: c[k] for k in ("id", "title", "kind", "source", "licence")}
                                 | {"file": rel, "chars": len(c["text"]),
                                    "bytes": len(c["text"].encode("utf-8")), "approx_tokens": round(len(c["text"]) / 4)})
    for name, tasks, desc in (
        ("passkey", passkey_tasks(), "5-digit pass key hidden at depth 0..1 in filler text"),
        ("line-retrieval", line_tasks(), "LongChat-style: value of one numbered line among 30 or 60"),
    ):
        rel = f"tasks/{name}.jsonl"
        with open(os.path.join(HERE, rel), "w", encoding="utf-8") as f:
            for t in tasks:
                f.write(json.dumps(t, sort_keys=True) + "\n")
        index["tasks"].append({"id": name, "file": rel, "count": len(tasks), "description": desc,
                               "metric": "exact answer string in the greedy output"})
    with open(os.path.join(HERE, "index.json"), "w", encoding="utf-8") as f:
        json.dump(index, f, indent=2)
        f.write("\n")
    print("wrote", len(index["contexts"]), "contexts and", sum(t["count"] for t in index["tasks"]), "tasks")


if __name__ == "__main__":
    main()
