#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Writes docs/cachegen-defaults.md: the measurements behind cachegen's defaults on the default model, taken
on the TUNE split of datasets/splits.json only (the held-out contexts are for docs/results.md).

    /usr/bin/python3 scripts/cachegen-defaults.py [--cli build/release/app/cli/kvscope-cli] [--from-csv]

Each study is one `kvscope-cli sweep --split tune` (1024 context tokens, 128 scored continuation tokens, the
mean over the three TUNE contexts), whose --summary-csv is kept as docs/results/tune/<study>.csv; the layer
sensitivity is `kvscope-cli sensitivity --split tune`, kept as docs/results/tune/sensitivity.kvssens (the
"cachegen.sensitivity" section bytes, docs/bitstream.md 4.1) and drawn in the app's Layer Sensitivity view.
--from-csv rebuilds the document from those files without running anything."""
import argparse
import csv
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cachegen_points import (OLD_DEFAULT, TUNE_STUDIES, DEFAULTS_SENSITIVITY_ARGS,  # noqa: E402
                             DEFAULTS_SENSITIVITY_FILE, DEFAULTS_TEXT, SENSITIVITY_ARGS, SENSITIVITY_SCORED,
                             SENSITIVITY_TOKENS, differs)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(ROOT, "docs/results/tune")
TOKENS = 1024
CONTINUATION = 128


def run(cmd):
    t = time.time()
    out = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, KVSCOPE_DATA_DIR=ROOT))
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stderr}")
    print(f"  {time.time() - t:6.1f} s  {' '.join(cmd[1:4])} ...", file=sys.stderr)
    return out.stdout


def common(tokens=TOKENS, scored=CONTINUATION):
    return ["--split", "tune", "--max-tokens", str(tokens), "--continuation-tokens", str(scored),
            "--greedy-tokens", "0", "--threads", "2", "--device", "cpu"]


def sensitivity_args():
    return common(SENSITIVITY_TOKENS, SENSITIVITY_SCORED) + SENSITIVITY_ARGS


def defaults_sensitivity_args():
    return common() + DEFAULTS_SENSITIVITY_ARGS


def sweep(cli, name, points, extra=()):
    args = [cli, "sweep", "--codecs", "cachegen", "--summary-csv", os.path.join(OUT_DIR, f"{name}.csv"),
            "--csv", os.path.join(OUT_DIR, f"{name}-contexts.csv")] + common() + list(extra)
    for p in points:
        args += ["--point", p]
    run(args)


def read(name):
    path = os.path.join(OUT_DIR, f"{name}.csv")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return list(csv.DictReader(f))


def read_sensitivity(path):
    """The cachegen.sensitivity section (docs/bitstream.md 4.1), read independently of the C++ code."""
    import struct
    b = open(path, "rb").read()
    version, layers, base, coarse, base_kl = struct.unpack_from("<HIHHd", b, 0)
    o = 18
    key = struct.unpack_from(f"<{layers}d", b, o)
    o += 8 * layers
    value = struct.unpack_from(f"<{layers}d", b, o)
    o += 8 * layers
    n = struct.unpack_from("<H", b, o)[0]
    params = b[o + 2:o + 2 + n].decode()
    return {"version": version, "layers": layers, "base_bins": base, "coarse_bins": coarse, "base_kl": base_kl,
            "key_kl": key, "value_kl": value, "params": params}


def bench_section(path):
    """What each mode costs in decode speed: tests/codec/bench_codec's JSON output."""
    import json
    data = json.load(open(path))
    ctx = data.get("context", {})
    rows = {}
    for b in data["benchmarks"]:
        if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "max":
            continue
        # "what/label/threads[/min_time:0.500]/real_time" (newer Google Benchmark adds min_time).
        name = re.sub(r"/min_time:[^/]+", "", b["name"].split("/real_time")[0])
        what, rest = name.split("/", 1)
        label, threads = rest.rsplit("/", 1)
        key = (label, threads)
        rows.setdefault(key, {})
        v = b.get("fp16_MB/s", 0) / 1e6 if b.get("fp16_MB/s", 0) > 1e5 else b.get("fp16_MB/s", 0)
        rows[key][what] = max(rows[key].get(what, 0), v)
        rows[key]["bits"] = b.get("bits_per_element", 0)
    lines = ["## What each mode costs: encode and decode speed", "",
             "`tests/codec/bench_codec` (Google Benchmark; best of the repetitions) on a real 2048-token cache of the "
             "default model (gpl-3.0), MB/s of fp16 cache per second, 1 thread; `decode_into` reuses the caller's "
             "cache (a receiver's steady state, the number the 310-370 MB/s target is about). "
             f"Machine: {ctx.get('num_cpus', '?')} CPUs, shared with other builds while it ran (load given in the "
             "commit that regenerated this file), so the numbers are noisy. `cachegen` is today's defaults with the "
             "calibration folder of make-results (channel weighting and calibrated tables); `cachegen[unweighted]` "
             "the same without the weighting, `cachegen[midpoints]` decoded to bin midpoints (layout version 4 "
             "instead of 5); `cachegen[v2]` the layout version 2 settings, then one version 3 feature at a time. "
             "The command: `KVSCOPE_CALIBRATION_DIR=build/results-calibration KVSCOPE_BENCH_CACHE=<cache> "
             "bench_codec --benchmark_filter='^(encode|decode|decode_into)/cachegen(.[a-z_0-9]+.)?/1/' "
             "--benchmark_repetitions=3 --benchmark_out=docs/results/bench-codec.json`.", "",
             "| codec / mode | threads | bits/element | encode MB/s | decode MB/s | decode_into MB/s |",
             "|---|---|---|---|---|---|"]
    for (label, threads), r in sorted(rows.items()):
        if not label.startswith("cachegen") or "lmcache" in label:
            continue
        lines.append(f"| {label} | {threads} | {r.get('bits', 0):.3f} | {r.get('encode', 0):.0f} | "
                     f"{r.get('decode', 0):.0f} | {r.get('decode_into', 0):.0f} |")
    return lines + [""]


def table(rows, reference):
    lines = ["| setting (change from the first row) | bits/element | x vs int8 | tables | steps | payload | KL | "
             "worst KL | top-1 | worst top-1 | dppl |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    reference = " ".join(rows[0]["params"].split(";")) if rows else reference
    for r in rows:
        p = " ".join(r["params"].split(";"))
        f = {k: float(r[k]) for k in ("bits_per_element", "ratio_vs_int8", "table_bpe", "step_bpe", "payload_bpe",
                                      "kl", "worst_kl", "top1_agreement", "worst_top1", "delta_ppl_pct")}
        star = " *" if r.get("pareto") == "1" else ""
        lines.append(f"| {differs(p, reference)}{star} | {f['bits_per_element']:.3f} | {f['ratio_vs_int8']:.2f} | "
                     f"{f['table_bpe']:.3f} | {f['step_bpe']:.3f} | {f['payload_bpe']:.3f} | {f['kl']:.4f} | "
                     f"{f['worst_kl']:.4f} | {100 * f['top1_agreement']:.1f}% | {100 * f['worst_top1']:.1f}% | "
                     f"{f['delta_ppl_pct']:+.2f}% |")
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cli", default=os.path.join(ROOT, "build/release/app/cli/kvscope-cli"))
    ap.add_argument("--out", default=os.path.join(ROOT, "docs/cachegen-defaults.md"))
    ap.add_argument("--from-csv", action="store_true", help="only rebuild the document from docs/results/tune")
    ap.add_argument("--only", help="comma-separated study names to run (the others are read from their CSVs)")
    a = ap.parse_args()
    os.makedirs(OUT_DIR, exist_ok=True)
    sens = os.path.join(OUT_DIR, "sensitivity.kvssens")
    sens_defaults = os.path.join(OUT_DIR, DEFAULTS_SENSITIVITY_FILE)
    t0 = time.time()
    if not a.from_csv:
        only = set(a.only.split(",")) if a.only else None
        if only is None:
            run([a.cli, "sensitivity"] + sensitivity_args() + ["--out", sens])
        # The channel weighting study needs the model's calibrated weighting (TUNE contexts); every other
        # point says channel_weighting=off.
        calib = tempfile.mkdtemp(prefix="kvscope-tune-calibration-")
        run([a.cli, "calibrate", "--max-tokens", str(TOKENS), "--out-dir", calib, "--json"]
            + [x for cid in ("kjv-genesis", "python-textwrap-code", "apache-2.0") for x in ("--context", cid)])
        os.environ["KVSCOPE_CALIBRATION_DIR"] = calib
        if only is None or "sensitivity-defaults" in only:  # needs the calibration's channel weighting
            run([a.cli, "sensitivity"] + defaults_sensitivity_args() + ["--out", sens_defaults])
        for name, _, _, points, extra in TUNE_STUDIES:
            if only is None or name in only:
                sweep(a.cli, name, points, [x.replace("@SENSITIVITY@", sens).replace(
                    "@SENSITIVITY_DEFAULTS@", sens_defaults) for x in extra])
        shutil.rmtree(calib, ignore_errors=True)
    lines = [
        "# How cachegen's defaults were chosen",
        "",
        f"Generated by `scripts/cachegen-defaults.py` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
        + ("" if a.from_csv else f" in {(time.time() - t0) / 60:.0f} minutes") + " from `docs/results/tune/`. "
        "Default model; the TUNE split of `datasets/splits.json` only (kjv-genesis, python-textwrap-code, "
        f"apache-2.0): the first {TOKENS} tokens of each context, {CONTINUATION} continuation tokens scored "
        "(teacher forcing) against the fp16 cache. Every number is the mean over the three contexts (worst KL "
        "and worst top-1: the worst context). KL (nats) is the primary quality measure; dppl over 128 tokens is "
        "noisy. Bits per element include every header, table and step; the tables, steps and payload columns "
        "split them (bits per element). * = on the study's KL Pareto front. Held-out numbers: docs/results.md.",
        "",
        DEFAULTS_TEXT,
        "",
    ]
    if os.path.exists(sens) and os.path.exists(sens_defaults):
        sv, sd = read_sensitivity(sens), read_sensitivity(sens_defaults)
        lines += ["## Layer sensitivity", "",
                  f"The KL increase when one layer's keys or values alone get {sd['coarse_bins']} bins, every other "
                  f"layer at {sd['base_bins']}, measured twice (docs/bitstream.md 4.1 is the file format; the app's "
                  "Layer Sensitivity view draws either and plans bins from it):", "",
                  "- at the defaults (keys before RoPE, calibrated channel weighting, centroid reconstruction; what "
                  "the default bins are planned from): `kvscope-cli sensitivity " + " ".join(
                      defaults_sensitivity_args()) + "` with the TUNE calibration in `KVSCOPE_CALIBRATION_DIR`, "
                  f"base KL {sd['base_kl']:.4f}; kept as `docs/results/tune/{DEFAULTS_SENSITIVITY_FILE}`;",
                  "- first, before pre-RoPE keys and the weighting were defaults (the plans of the studies below "
                  "that say so): `kvscope-cli sensitivity " + " ".join(sensitivity_args()) + "`, base KL "
                  f"{sv['base_kl']:.4f} (settings `{sv['params']}`); kept as "
                  "`docs/results/tune/sensitivity.kvssens`.", "",
                  "| layer | keys, at the defaults | values, at the defaults | keys, first | values, first |",
                  "|---|---|---|---|---|"]
        for l in range(sv["layers"]):
            lines.append(f"| {l} | {sd['key_kl'][l]:+.5f} | {sd['value_kl'][l]:+.5f} | {sv['key_kl'][l]:+.5f} | "
                         f"{sv['value_kl'][l]:+.5f} |")
        lines.append("")
    bench = os.path.join(ROOT, "docs/results/bench-codec.json")
    pending = []  # rows of untitled studies: they join the next titled study's table, first
    for name, title, text, points, _ in TUNE_STUDIES:
        rows = read(name)
        if not title:
            pending += rows or []
            continue
        if pending and rows is not None:
            rows = pending + rows
            for r in rows:  # the front of the joined table
                b, k = float(r["bits_per_element"]), float(r["kl"])
                r["pareto"] = "0" if any(float(o["bits_per_element"]) <= b and float(o["kl"]) < k for o in rows) else "1"
        pending = []
        lines += [f"## {title}", "", text, ""]
        if rows is None:
            lines += ["(not measured in this run)", ""]
            continue
        lines += [f"First row: `{rows[0]['params'].replace(';', ' ')}`.", ""] + table(rows, OLD_DEFAULT) + [""]
    if os.path.exists(bench):
        lines += bench_section(bench)
    with open(a.out, "w") as f:
        f.write("\n".join(lines))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
