#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Generates docs/results.md (and docs/results/*.csv) from kvscope-cli.

    /usr/bin/python3 scripts/make-results.py [--cli build/release/app/cli/kvscope-cli]
        [--max-tokens 1024] [--contexts id,id,...] [--no-tasks]

Every codec at its default settings on every dataset context (one prefill per
context, reused by all codecs: `kvscope-cli sweep`), retrieval-task accuracy
on the passkey and line-retrieval tasks, and the cachegen size-quality curve
and cachegen's rate-distortion front, ablation and 2048-token numbers on the
HELD-OUT split of datasets/splits.json (cachegen's defaults were tuned on the
TUNE split: docs/cachegen-defaults.md). Nothing in the document is typed by
hand: every number comes from the CSV files `kvscope-cli sweep` writes."""
import argparse
import concurrent.futures
import csv
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cachegen_points import (ABLATION_BASE, ABLATION_ADD, ABLATION_NEW, ABLATION_REMOVE,  # noqa: E402
                             DEFAULTS_SENSITIVITY_FILE, FINAL_POINTS, RD_PLAN_LEVELS, RD_POINTS, TARGETS)


def cli(args, exe):
    t = time.time()
    out = subprocess.run([exe] + args, capture_output=True, text=True, env=dict(os.environ, KVSCOPE_DATA_DIR=ROOT))
    if out.returncode != 0:
        sys.exit(f"kvscope-cli {' '.join(args)} failed:\n{out.stderr}")
    print(f"  {time.time() - t:6.1f} s  kvscope-cli {' '.join(args)}", file=sys.stderr)
    return out.stdout


NUMERIC = ("context_tokens", "continuation_tokens", "encoded_bytes", "bits_per_element", "ratio_vs_fp16",
           "ratio_vs_int8", "ppl_ref", "ppl", "delta_ppl_pct", "top1_agreement", "kl", "greedy_match",
           "task_accuracy", "task_accuracy_ref", "task_count")


def read_csv(path):
    """Rows of a `kvscope-cli sweep --csv` file with numbers parsed and params as a dict; [] if absent."""
    if not os.path.exists(path):
        return []
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            for k in NUMERIC:
                r[k] = float(r[k])
            r["params"] = dict(kv.split("=", 1) for kv in r["params"].split(";") if kv)
            rows.append(r)
    return rows


def fmt_pct(x):
    return f"{100 * x:.1f}%"


def build_calibration(exe, calib_dir, tokens, sensitivity=None, plan_levels=()):
    """The default model's calibration from the TUNE contexts: cachegen tables at the codec's defaults, the
    channel weighting (queries measured on the same contexts) and transform bases; then one more file per plan
    level whose tables are counted at that level's bins (what `kvscope-cli calibrate --set` with the plan's
    bins gives a user), so every plan point can take calibrated tables (profile=auto picks the file that
    fits)."""
    import shutil
    import tempfile
    shutil.rmtree(calib_dir, ignore_errors=True)
    tune = json.load(open(os.path.join(ROOT, "datasets/splits.json")))["splits"]["tune"]
    with tempfile.TemporaryDirectory() as tmp:
        caches = []
        for cid in tune:
            path = os.path.join(tmp, f"{cid}.safetensors")
            ctx = os.path.join(ROOT, "datasets/contexts", f"{cid}.txt")
            cli(["prefill", "--context", ctx, "--max-tokens", str(tokens or 0), "--out", path, "--json"], exe)
            caches += ["--in", path]
        base = (["calibrate"] + caches + [x for cid in tune for x in ("--context", cid)]
                + ["--max-tokens", str(tokens or 0), "--out-dir", calib_dir, "--json"])
        # The default file keeps the sensitivity the default bins were planned from (the app draws it).
        cli(base + (["--sensitivity", sensitivity] if sensitivity else []), exe)
        for level in plan_levels:
            sets = cli(["plan", "--sensitivity", sensitivity, "--level", level], exe).split()
            cli(base + sets, exe)


def fmt_params(p, reference=None):
    """A point's parameters as text, only those that differ from `reference` (a dict) when given; long
    per-layer bin lists are shortened to their first entries."""
    items = [(k, v) for k, v in p.items() if reference is None or reference.get(k) != v]
    short = lambda v: v if len(v) <= 24 else ",".join(v.split(",")[:4]) + f",... ({v.count(',') + 1} layers)"
    return " ".join(f"{k}={short(v)}" for k, v in items) or "(defaults)"


def rd_row(r, label):
    return (f"| {label} | {r['bits_per_element']:.3f} | {r['ratio_vs_int8']:.2f} | {r['header_bpe']:.3f} | "
            f"{r['table_bpe']:.3f} | {r['step_bpe']:.3f} | {r['payload_bpe']:.3f} | {r['kl']:.4f} | "
            f"{r['worst_kl']:.4f} | {fmt_pct(r['top1_agreement'])} | {fmt_pct(r['worst_top1'])} | "
            f"{r['delta_ppl_pct']:+.2f}% | {fmt_pct(r['greedy_match'])} |")


RD_HEADER = ["| setting | bits/element | x vs int8 | headers | tables | steps | payload | KL | worst KL | top-1 | "
             "worst top-1 | dppl | greedy |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]


def cachegen_sections(rd, ablation, final, per_ctx, held_out, tune, final_tokens, final_scored):
    """The cachegen part of the document: targets, front, ablation, 2048-token numbers."""
    L = []
    defaults = next((r for r in rd if not r["params"] or r["params"] == rd[0]["params"]), None)
    # The points come from several sweeps: the front is recomputed over all of them.
    for r in rd:
        r["pareto"] = not any(q is not r and q["bits_per_element"] <= r["bits_per_element"] and q["kl"] <= r["kl"]
                              and (q["bits_per_element"] < r["bits_per_element"] or q["kl"] < r["kl"]) for q in rd)
    cg = [r for cid in held_out if cid in per_ctx for r in per_ctx[cid] if r["codec"] == "cachegen"]
    L.append("## cachegen: targets, rate-distortion front, ablation (held-out contexts)\n")
    L.append(f"Held-out contexts: {', '.join(held_out)} (cachegen's defaults were chosen on {', '.join(tune)}: "
             "docs/cachegen-defaults.md). KL (nats, mean over the scored tokens) is the primary quality measure; "
             "bits per element count every header, table and step, split into the headers, tables, steps and "
             "payload columns. Worst KL / worst top-1: the worst held-out context.\n")
    if defaults or cg:
        ratio = None
        if defaults:  # the held-out mean of cachegen's defaults (first point of the rd-heldout sweep)
            bits, kl, top1 = defaults["bits_per_element"], defaults["kl"], defaults["top1_agreement"]
            ratio = defaults["ratio_vs_int8"]
        else:
            n = len(cg)
            bits = sum(r["bits_per_element"] for r in cg) / n
            kl = sum(r["kl"] for r in cg) / n
            top1 = sum(r["top1_agreement"] for r in cg) / n
        L.append("### Targets (held-out mean at 1024 tokens, cachegen at its defaults)\n")
        a_ok = bits <= TARGETS["a_bits"] and kl <= TARGETS["a_kl"] and top1 >= TARGETS["a_top1"]
        L.append(f"- (a) <= {TARGETS['a_bits']} bits/element (>= 3.5x vs int8) with KL <= {TARGETS['a_kl']} and "
                 f"top-1 >= {100 * TARGETS['a_top1']:.0f}%: measured {bits:.3f} bits/element "
                 f"({ratio if ratio else 8.09 / bits if bits else 0:.2f}x vs int8), KL {kl:.4f}, top-1 {fmt_pct(top1)}: "
                 f"**{'met' if a_ok else 'not met'}**.")
        good = [r for r in rd if r["kl"] <= TARGETS["a_kl"] and r["top1_agreement"] >= TARGETS["a_top1"]]
        if not a_ok and good:
            g = min(good, key=lambda r: r["bits_per_element"])
            L.append(f"  The smallest measured point with that quality takes {g['bits_per_element']:.3f} bits/element "
                     f"({g['ratio_vs_int8']:.2f}x vs int8; KL {g['kl']:.4f}, top-1 {fmt_pct(g['top1_agreement'])}; "
                     f"`{fmt_params(g['params'], defaults['params'] if defaults else None)}`).")
        if not a_ok and rd:
            # Why: the bits at which the front crosses each of (a)'s two quality bounds (linear interpolation
            # between the measured points around the crossing; KL in log).
            front = sorted((r for r in rd if r["pareto"]), key=lambda r: r["bits_per_element"])

            def crossing(ok, value, log=False):
                f = (lambda v: math.log(v)) if log else (lambda v: v)
                for lo, hi in zip(front, front[1:]):
                    if not ok(lo) and ok(hi):
                        a, b = f(value(lo)), f(value(hi))
                        t = (f(TARGETS["a_kl"] if log else TARGETS["a_top1"]) - a) / (b - a) if b != a else 1.0
                        return lo["bits_per_element"] + t * (hi["bits_per_element"] - lo["bits_per_element"])
                return front[0]["bits_per_element"] if front and ok(front[0]) else None

            kl_bits = crossing(lambda r: r["kl"] <= TARGETS["a_kl"], lambda r: r["kl"], log=True)
            top1_bits = crossing(lambda r: r["top1_agreement"] >= TARGETS["a_top1"], lambda r: r["top1_agreement"])
            if kl_bits is not None and top1_bits is not None:
                binding = "top-1" if top1_bits > kl_bits else "KL"
                L.append(f"  Why: along the front, KL reaches {TARGETS['a_kl']} at about {kl_bits:.2f} bits/element and "
                         f"top-1 reaches {100 * TARGETS['a_top1']:.0f}% at about {top1_bits:.2f} (interpolated between "
                         f"measured points); the {binding} bound is the one that needs more bits (top-1 counts "
                         f"whole tokens, so it is the noisier of the two).")
        below = [r for r in rd if r["kl"] <= TARGETS["b_kl"]]
        best = min(below, key=lambda r: r["bits_per_element"]) if below else None
        if best:
            b_ok = best["bits_per_element"] <= TARGETS["b_bits"]
            L.append(f"- (b) <= {TARGETS['b_bits']} bits/element at KL <= {TARGETS['b_kl']}: the smallest measured "
                     f"point with mean KL <= {TARGETS['b_kl']} takes {best['bits_per_element']:.3f} bits/element "
                     f"(KL {best['kl']:.4f}; `{fmt_params(best['params'], defaults['params'] if defaults else None)}`): "
                     f"**{'met' if b_ok else 'not met'}**.")
            small = [r for r in rd if r["bits_per_element"] <= TARGETS["b_bits"] * 1.01]
            if not b_ok and small:
                s = min(small, key=lambda r: r["kl"])
                L.append(f"  The measured point nearest {TARGETS['b_bits']} bits/element ({s['bits_per_element']:.3f}) "
                         f"reaches KL {s['kl']:.4f} (`{fmt_params(s['params'], defaults['params'] if defaults else None)}`).")
        L.append("")
    if rd:
        L.append(f"### Rate-distortion front (held-out mean, 1024 tokens)\n")
        L.append("Every measured point, by size; * = on the front (no other point is both smaller and lower in KL). "
                 "Settings are given as their difference from the defaults.\n")
        L += RD_HEADER
        base = defaults["params"] if defaults else {}
        for r in sorted(rd, key=lambda r: r["bits_per_element"]):
            label = ("**defaults**" if r is defaults else fmt_params(r["params"], base)) + (" *" if r["pareto"] else "")
            L.append(rd_row(r, label))
        L.append("")
    if ablation:
        L.append("### Ablation (held-out mean, 1024 tokens)\n")
        L.append("Each feature measured on its own: added to the previous default (layout version 2, first row), "
                 "and removed from the new default.\n")
        labels = [label for label, _ in ablation]
        unmeasured = [label for label, _ in ABLATION_ADD if label not in labels]
        if unmeasured:
            L.append(f"Not measured on the held-out contexts in this run: {', '.join(unmeasured)} "
                     "(`--only ablation-add-heldout`); the same features on the TUNE contexts: "
                     "docs/cachegen-defaults.md.\n")
        L += RD_HEADER
        for label, r in ablation:
            L.append(rd_row(r, label))
        L.append("")
    if final:
        L.append(f"### {final_tokens}-token contexts, {final_scored} scored tokens (held-out mean)\n")
        L.append(f"The first {final_tokens} tokens of each held-out context (fewer where the text is shorter), "
                 f"then {final_scored} continuation tokens scored.\n")
        cachegen_rows = [r for r in final if r["codec"] == "cachegen"]
        if not cachegen_rows:
            L.append("cachegen at 2048 tokens was not measured in this run (`--only final-2048-heldout`); the "
                     "1024-token numbers above are its held-out measurement.\n")
        L += RD_HEADER
        for (label, _), r in zip(FINAL_POINTS, cachegen_rows):
            L.append(rd_row(r, label))
        for r in final:
            if r["codec"] != "cachegen":
                L.append(rd_row(r, r["codec"]))
        L.append("")
    return L


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cli", default=os.path.join(ROOT, "build/release/app/cli/kvscope-cli"))
    ap.add_argument("--max-tokens", type=int, default=1024, help="context tokens kept per context (0 = all)")
    ap.add_argument("--continuation-tokens", type=int, default=64)
    ap.add_argument("--greedy-tokens", type=int, default=32)
    ap.add_argument("--contexts", help="comma-separated context ids (default: all in datasets/index.json)")
    ap.add_argument("--no-tasks", action="store_true", help="skip the retrieval tasks")
    ap.add_argument("--from-csv", action="store_true",
                    help="do not run anything: build the document from docs/results/*.csv of an earlier run "
                         "(contexts without a CSV are listed as not measured)")
    ap.add_argument("--jobs", type=int, default=1, help="sweeps run at once (one process each)")
    ap.add_argument("--keep-existing", action="store_true",
                    help="skip sweeps whose CSV file already exists, and keep the calibration built by the "
                         "interrupted run (to finish it)")
    ap.add_argument("--only", help="comma-separated names of the cachegen sweeps to run (rd-heldout, "
                    "rd-plans-heldout, ablation-base-heldout, ablation-add-heldout, ablation-remove-heldout, final-2048-heldout, "
                    "final-2048-heldout-int); the others' CSV files are read as they are")
    ap.add_argument("--cachegen-only", action="store_true",
                    help="run only cachegen's held-out sweeps (front, ablation, 2048 tokens); the every-codec "
                         "tables use docs/results/defaults-*.csv where they exist and are left out otherwise")
    ap.add_argument("--threads", type=int, default=0, help="codec threads per sweep (0 = all cores)")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs/results.md"))
    args = ap.parse_args()

    index = json.load(open(os.path.join(ROOT, "datasets/index.json")))
    default_ctx = index["default_context"]
    ctx_ids = args.contexts.split(",") if args.contexts else [c["id"] for c in index["contexts"]]
    codecs = json.loads(cli(["codecs", "--json"], args.cli))
    codec_names = [c["name"] for c in (codecs["codecs"] if isinstance(codecs, dict) else codecs)]
    doctor = json.loads(cli(["doctor", "--json"], args.cli))
    common = ["--max-tokens", str(args.max_tokens), "--continuation-tokens", str(args.continuation_tokens),
              "--greedy-tokens", str(args.greedy_tokens), "--threads", str(args.threads), "--device", "cpu", "--json"]
    csv_dir = os.path.join(os.path.dirname(args.out), "results")
    os.makedirs(csv_dir, exist_ok=True)

    started = time.time()
    # cachegen's default tables come from the model's calibration where that is smaller (profile=auto): build
    # it from the TUNE contexts only, in a folder of this run, so every number below is reproducible.
    calib_dir = os.path.join(ROOT, "build", "results-calibration")  # rebuilt by every run, not committed
    os.environ["KVSCOPE_CALIBRATION_DIR"] = calib_dir
    if not args.from_csv and "cachegen" in codec_names and not (args.keep_existing and os.path.isdir(calib_dir)):
        build_calibration(args.cli, calib_dir, args.max_tokens,
                          os.path.join(csv_dir, "tune", DEFAULTS_SENSITIVITY_FILE), RD_PLAN_LEVELS)
    jobs = {}
    for cid in ([] if args.cachegen_only else ctx_ids):
        extra = []
        if cid == default_ctx and not args.no_tasks:
            extra = ["--tasks", "passkey,line-retrieval"]
        jobs[cid] = ["sweep", "--context", cid, "--codecs", ",".join(codec_names),
                     "--csv", os.path.join(csv_dir, f"defaults-{cid}.csv")] + extra + common
    splits = json.load(open(os.path.join(ROOT, "datasets/splits.json")))["splits"]
    held_out, tune = splits["held-out"], splits["tune"]
    final_tokens, final_scored = 2048, 256

    def sweep_points(name, points, extra):
        args = ["sweep", "--split", "held-out", "--codecs", "cachegen",
                "--csv", os.path.join(csv_dir, f"{name}.csv"),
                "--summary-csv", os.path.join(csv_dir, f"{name}-summary.csv")] + extra
        for p in points:
            args += ["--point", p]
        return args

    if "cachegen" in codec_names:
        jobs["__rd__"] = sweep_points("rd-heldout", RD_POINTS, common)
        sens = os.path.join(csv_dir, "tune", DEFAULTS_SENSITIVITY_FILE)
        plan = ["--sensitivity", sens] + [x for lv in RD_PLAN_LEVELS for x in ("--plan-level", lv)]
        jobs["__rd_plans__"] = sweep_points("rd-plans-heldout", ["profile=auto"], common + plan)
        jobs["__ablation_base__"] = sweep_points("ablation-base-heldout", [p for _, p in ABLATION_BASE], common)
        jobs["__ablation_add__"] = sweep_points("ablation-add-heldout", [p for _, p in ABLATION_ADD], common)
        jobs["__ablation_remove__"] = sweep_points("ablation-remove-heldout", [p for _, p in ABLATION_REMOVE], common)
        final_common = ["--max-tokens", str(final_tokens), "--continuation-tokens", str(final_scored),
                        "--greedy-tokens", str(args.greedy_tokens), "--threads", str(args.threads), "--device",
                        "cpu", "--json"]
        jobs["__final__"] = sweep_points("final-2048-heldout", [p for _, p in FINAL_POINTS], final_common)
        jobs["__final_int__"] = ["sweep", "--split", "held-out", "--codecs", "int8,int4",
                                 "--csv", os.path.join(csv_dir, "final-2048-heldout-int.csv"),
                                 "--summary-csv", os.path.join(csv_dir, "final-2048-heldout-int-summary.csv")
                                 ] + final_common
    # Most informative first (the cachegen front and final numbers, then the default context with the tasks),
    # so a run cut short by the deadline still has them.
    first = ["__rd__", "__ablation_base__", "__ablation_add__", "__ablation_remove__", "__final__", "__rd_plans__", "__final_int__"]
    order = first + [k for k in jobs if k not in first]
    jobs = {k: jobs[k] for k in order if k in jobs}
    csv_name = lambda v: os.path.basename(v[v.index("--csv") + 1])[:-len(".csv")]
    if args.keep_existing:
        jobs = {k: v for k, v in jobs.items() if not os.path.exists(v[v.index("--csv") + 1])}
    if args.only:
        jobs = {k: v for k, v in jobs.items() if k.startswith("__") and csv_name(v) in args.only.split(",")}
    if not args.from_csv:
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            for f in [pool.submit(cli, v, args.cli) for v in jobs.values()]:
                f.result()
    # The CSV files are the canonical data: the document is built from them.
    per_ctx = {}
    for cid in ctx_ids:
        rows = read_csv(os.path.join(csv_dir, f"defaults-{cid}.csv"))
        if rows:
            per_ctx[cid] = rows
    def read_summary(name):
        path = os.path.join(csv_dir, f"{name}-summary.csv")
        if not os.path.exists(path):
            return []
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        for r in rows:
            for k, v in r.items():
                if k not in ("codec", "params"):
                    r[k] = float(v)
            r["params"] = dict(kv.split("=", 1) for kv in r["params"].split(";") if kv)
        return rows

    rd = read_summary("rd-heldout") + read_summary("rd-plans-heldout")
    # The ablation's rows in ABLATION_ADD, ABLATION_NEW, ABLATION_REMOVE order (label, summary row or None).
    new_rows = read_summary("rd-heldout")[:len(ABLATION_NEW)]
    ablation = [(label, r) for parts in ((ABLATION_BASE, read_summary("ablation-base-heldout")),
                                         (ABLATION_ADD, read_summary("ablation-add-heldout")),
                                         (ABLATION_NEW, new_rows),
                                         (ABLATION_REMOVE, read_summary("ablation-remove-heldout")))
                for (label, _), r in zip(parts[0], parts[1])]
    final = read_summary("final-2048-heldout") + read_summary("final-2048-heldout-int")
    missing = [cid for cid in ctx_ids if cid not in per_ctx]
    ctx_ids = [cid for cid in ctx_ids if cid in per_ctx]
    elapsed = time.time() - started
    run_path = os.path.join(csv_dir, "run.json")
    if args.from_csv and os.path.exists(run_path):
        run = json.load(open(run_path))
    else:
        run = {"command": " ".join(["/usr/bin/python3", "scripts/make-results.py"]
                                   + [a for a in sys.argv[1:] if a != "--from-csv"]),
               "threads": args.threads, "jobs": args.jobs}
        if args.only:
            run["only"] = args.only
        if not args.from_csv:
            run.update(elapsed_s=round(elapsed, 1), finished_utc=f"{datetime.datetime.utcnow():%Y-%m-%d %H:%M}")
            with open(run_path, "w") as f:
                json.dump(run, f, indent=1)

    L = []
    L.append("# Results: size and quality of every codec on the default model\n")
    L.append(f"Generated by `scripts/make-results.py` on {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC "
             f"({platform.machine()}, {os.cpu_count()} CPU cores, model on CPU)"
             + (f" in {elapsed / 60:.1f} minutes" if not args.from_csv else " from the CSV files of an earlier run"
                + (f" (finished {run['finished_utc']} UTC after {run['elapsed_s'] / 60:.1f} minutes)"
                   if "elapsed_s" in run else ""))
             + "; "
             "every number below is read from the CSV that `kvscope-cli sweep --csv` wrote. Raw points: `docs/results/*.csv`.\n")
    L.append(f"- Model: `{os.path.basename(doctor.get('default_model', ''))}` (SmolLM2-135M-Instruct, 30 layers, 3 KV heads, head_dim 64).")
    L.append(f"- Contexts: the first {args.max_tokens or 'all'} tokens of each dataset context "
             f"(`datasets/index.json`; contexts are truncated to keep the run affordable on the 2-core build machine), "
             f"followed by a held-out continuation of {args.continuation_tokens} tokens. The cache covers context tokens "
             "0..N-2; the model is fed token N-1 and the continuation (teacher forcing), so every continuation token is scored.")
    L.append("- Reference: the original cache rounded to fp16 (what a serving stack holds). Quality = the model continuing "
             "from the decoded cache vs from the reference: relative perplexity change of the continuation (dppl), top-1 "
             f"next-token agreement, mean KL (nats), greedy match = common prefix of {args.greedy_tokens} greedy tokens.")
    L.append("- Size: encoded bytes with every header and table, as bits per element and ratios vs fp16 and vs the paper's "
             "8-bit per-token quantization baseline (`int8_reference_bytes`).\n")

    L.append(f"- Command: `{run['command']}` (codec threads per sweep: {run['threads'] or 'all cores'}, "
             f"{run['jobs']} sweep(s) at once).")
    if "only" not in run and " --only " in run["command"]:
        run["only"] = run["command"].split(" --only ")[1].split()[0]
    if run.get("only"):
        others = sorted(f[:-len("-summary.csv")] for f in os.listdir(csv_dir)
                        if f.endswith("-summary.csv") and f[:-len("-summary.csv")] not in run["only"].split(","))
        L.append(f"  That command measured {run['only'].replace(',', ', ')}; the other CSV files here "
                 f"({', '.join(others)}) come from earlier runs of this script with the same settings "
                 f"(`--only NAME` reruns one).")
    L.append(f"- Caveats of this run: contexts are cut at {args.max_tokens or 'no'} tokens, so cachegen's per-object "
             f"symbol tables still weigh on its bits/element (they fall as contexts grow); {args.continuation_tokens} "
             "scored tokens still leave dppl noisy (it can be negative), so top-1 agreement and KL are the steadier "
             "quality signals." + ("" if any(r["task_count"] for rows in per_ctx.values() for r in rows) else
                          " Retrieval tasks were not run in this pass (`--no-tasks`): "
                          "`kvscope-cli sweep --tasks passkey,line-retrieval` measures them."))
    if missing and not ctx_ids:
        L.append("- The every-codec tables were not measured in this run (`--cachegen-only`: cachegen's held-out sweeps "
                 "only, to fit the shared 2-core machine); the script without that option measures them.")
    elif missing:
        L.append(f"- Not measured (the shared 2-core machine ran out of time before the deadline): {', '.join(missing)}. "
                 "Rerun the script on an idle machine to fill them in.")
    L.append("")
    if ctx_ids:
        L += every_codec_sections(index, default_ctx, codec_names, ctx_ids, per_ctx, tune)
    L += cachegen_sections(rd, ablation, final, per_ctx, held_out, tune, final_tokens, final_scored)
    # The transform codec's own section (scripts/transform-results.py writes it; its curves need a
    # calibration and longer contexts than this script's run).
    transform_md = os.path.join(csv_dir, "transform.md")
    if os.path.exists(transform_md):
        L.append(open(transform_md).read().rstrip() + "\n")
    with open(args.out, "w") as f:
        f.write("\n".join(L) + "\n")
    print("wrote", args.out, file=sys.stderr)


def every_codec_sections(index, default_ctx, codec_names, ctx_ids, per_ctx, tune):
    """Every codec at its defaults: the mean over the measured contexts, then one table per context."""
    L = []
    L.append("## Every codec at its default settings\n")
    L.append(f"Mean over all {len(ctx_ids)} contexts (per-context tables below; cachegen's defaults were tuned on "
             f"{', '.join(tune)}, so the held-out means in the next section are the numbers to quote):\n")
    L.append("| codec | bits/element | x vs fp16 | x vs int8 | dppl | top-1 | KL | greedy match | retrieval (ref) |")
    L.append("|---|---|---|---|---|---|---|---|---|")
    for name in codec_names:
        rows = [r for cid in ctx_ids for r in per_ctx[cid] if r["codec"] == name]
        if not rows:
            continue
        mean = lambda k: sum(r[k] for r in rows) / len(rows)
        task_rows = [r for r in rows if r["task_count"]]
        ret = (f"{fmt_pct(task_rows[0]['task_accuracy'])} ({fmt_pct(task_rows[0]['task_accuracy_ref'])})"
               if task_rows else "-")
        L.append(f"| {name} | {mean('bits_per_element'):.3f} | {mean('ratio_vs_fp16'):.2f} | {mean('ratio_vs_int8'):.2f} | "
                 f"{mean('delta_ppl_pct'):+.2f}% | {fmt_pct(mean('top1_agreement'))} | {mean('kl'):.4f} | "
                 f"{fmt_pct(mean('greedy_match'))} | {ret} |")
    L.append("")
    if any(r["task_count"] for r in per_ctx.get(default_ctx, [])):
        n = int(next(r["task_count"] for r in per_ctx[default_ctx] if r["task_count"]))
        counts = ", ".join(f"{t['count']} {t['id']}" for t in index.get("tasks", []))
        L.append(f"Retrieval: {n} tasks ({counts}; `datasets/tasks/`, measured with {default_ctx}'s sweep), each task context prefilled, "
                 "compressed with the codec, decoded, then the question fed and 8 tokens generated greedily; a task is "
                 "solved when the answer string is in the output. In brackets: the same model from the uncompressed "
                 "(fp16) cache, the ceiling for any codec with this 135M-parameter model.\n")

    for cid in ctx_ids:
        meta = next(c for c in index["contexts"] if c["id"] == cid)
        rows = per_ctx[cid]
        L.append(f"### {cid} ({meta['kind']}; {int(rows[0]['context_tokens'])} context tokens, ppl_ref {rows[0]['ppl_ref']:.3f})\n")
        L.append("| codec | bits/element | x vs fp16 | x vs int8 | ppl | dppl | top-1 | KL | greedy match |")
        L.append("|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            L.append(f"| {r['codec']} | {r['bits_per_element']:.3f} | {r['ratio_vs_fp16']:.2f} | {r['ratio_vs_int8']:.2f} | "
                     f"{r['ppl']:.3f} | {r['delta_ppl_pct']:+.2f}% | {fmt_pct(r['top1_agreement'])} | {r['kl']:.4f} | "
                     f"{fmt_pct(r['greedy_match'])} |")
        L.append("")
    return L


if __name__ == "__main__":
    main()
