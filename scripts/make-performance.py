#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Generates docs/performance.md from the Google Benchmark JSON in docs/performance/.

    scripts/make-performance.py            # the document from the committed JSON (no benchmark runs)
    scripts/make-performance.py --run      # run the benchmarks first, writing docs/performance/*.json
        [--build build/release] [--only codec,prefill,stats,thread_pool]

--run needs a release build with benchmarks (KVSCOPE_BUILD_BENCHMARKS=ON, the
default) and, for the codec and prefill benchmarks, the default model
(scripts/fetch-model.sh). Each JSON file records where and when it was
measured (Google Benchmark's context: host, CPUs, load average, date, plus the
CPU model and the command added here); the document prints that next to the
numbers. Nothing in the document is typed by hand: every number comes from a
JSON file, and a section whose file is missing says so.
"""
import argparse
import datetime
import json
import os
import re
import shlex
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "docs", "performance")
OUT = os.path.join(ROOT, "docs", "performance.md")
CODECS = ["fp16", "int8", "int4", "cachegen", "cachegen-lmcache", "kivi2", "zstd"]
CODEC_CACHE = "/tmp/kvscope-perf-gpl2k.safetensors"


# ---- running ------------------------------------------------------------------

def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def run_bench(name, exe, args, env=None, context=None):
    """Runs one benchmark program with JSON output to docs/performance/<name>.json; returns the path."""
    out = os.path.join(DATA, name + ".json")
    ctx = {"cpu_model": cpu_model(), "command": " ".join([os.path.relpath(exe, ROOT)] + args)}
    ctx.update(context or {})
    if env:
        ctx["environment"] = " ".join(f"{k}={v}" for k, v in env.items())
    cmd = [exe] + args + [f"--benchmark_out={out}", "--benchmark_out_format=json"]
    print("running:", " ".join(shlex.quote(c) for c in cmd), file=sys.stderr)
    subprocess.run(cmd, check=True, env=dict(os.environ, **(env or {})), cwd=ROOT)
    # Google Benchmark's --benchmark_context cannot carry '=' or ',' in a
    # value (a command line has both), so the extra context is added here.
    with open(out) as f:
        d = json.load(f)
    d["context"].update(ctx)
    with open(out, "w") as f:
        json.dump(d, f, indent=1)
        f.write("\n")
    return out


def merge_json(parts, out):
    """Concatenates the benchmarks of several runs (same program, other settings) into one file."""
    merged = None
    for path, label in parts:
        with open(path) as f:
            d = json.load(f)
        for b in d["benchmarks"]:
            b["setting"] = label
        if merged is None:
            merged = d
        else:
            merged["benchmarks"] += d["benchmarks"]
        os.remove(path)
    with open(out, "w") as f:
        json.dump(merged, f, indent=1)
        f.write("\n")


def run_all(build, only):
    os.makedirs(DATA, exist_ok=True)
    exe = lambda rel: os.path.join(build, rel)  # noqa: E731
    if "thread_pool" in only:
        run_bench("thread_pool", exe("tests/common/bench_thread_pool"), ["--benchmark_repetitions=3"])
    if "stats" in only:
        run_bench("stats", exe("tests/kv/bench_stats"), ["--benchmark_repetitions=3"])
    if "prefill" in only:
        # The default (OpenBLAS kernels picked from the CPU's features) and
        # Debian's generic fallback, to show what select_blas_kernels buys.
        settings = [("kernels picked by kvscope (default)", {}),
                    ("OpenBLAS generic Prescott kernels", {"KVSCOPE_KEEP_BLAS": "1", "OPENBLAS_CORETYPE": "Prescott"})]
        parts = [(run_bench(f"prefill-{i}", exe("tests/model/bench_prefill"), [], env=env), label)
                 for i, (label, env) in enumerate(settings)]
        merge_json(parts, os.path.join(DATA, "prefill.json"))
    if "codec" in only:
        cli = exe("app/cli/kvscope-cli")
        if os.path.exists(CODEC_CACHE):
            os.remove(CODEC_CACHE)  # prefill does not overwrite
        subprocess.run([cli, "prefill", "--context", "datasets/contexts/gpl-3.0.txt", "--max-tokens", "2048",
                        "--out", CODEC_CACHE], check=True, cwd=ROOT)
        run_bench("codec", exe("tests/codec/bench_codec"), ["--benchmark_repetitions=3"],
                  env={"KVSCOPE_BENCH_CACHE": CODEC_CACHE},
                  context={"cache": "default model, gpl-3.0 context, 2048 tokens"})


# ---- reading --------------------------------------------------------------------

def load(name):
    path = os.path.join(DATA, name + ".json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def iterations(d):
    """The per-repetition rows (not the mean/median/stddev aggregates)."""
    return [b for b in d["benchmarks"] if b.get("run_type", "iteration") == "iteration" and not b.get("error_occurred")]


def to_seconds(b, key="real_time"):
    scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[b.get("time_unit", "ns")]
    return b[key] * scale


def best(rows, key, larger=True):
    vals = [r[key] for r in rows if key in r]
    if not vals:
        return None
    return max(vals) if larger else min(vals)


def machine_row(name, d):
    c = d["context"]
    load = c.get("load_avg", [])
    cpus = c.get("num_cpus", 0)
    busy = bool(load) and cpus and load[0] > 0.5 * cpus
    load_text = " / ".join(f"{x:.2f}" for x in load) if load else "not recorded"
    if busy:
        load_text += f" (**busy**: above half of {cpus} CPUs, numbers are lower bounds)"
    return (f"| `{name}.json` | {c.get('date', '?')} | {c.get('cpu_model', '?')}, {cpus} CPUs at "
            f"{c.get('mhz_per_cpu', '?')} MHz (`{c.get('host_name', '?')}`) | {load_text} | "
            f"{c.get('library_build_type', '?')} |")


# ---- sections -------------------------------------------------------------------

def section_prefill(d):
    out = ["## Prefill of the default model (SmolLM2-135M-Instruct)", ""]
    if d is None:
        return out + ["Not measured (docs/performance/prefill.json is missing).", ""]
    out += [f"`{d['context'].get('command', 'bench_prefill')}`, one run per size, wall time (peak RSS is the "
            "whole process's):", "",
            "| setting | 512 tokens | 2048 tokens | peak RSS |", "| --- | --- | --- | --- |"]
    settings = []
    for b in iterations(d):
        if b.get("setting") not in settings:
            settings.append(b.get("setting"))
    for s in settings:
        rows = [b for b in iterations(d) if b.get("setting") == s]
        cells = []
        for n in (512, 2048):
            r = [b for b in rows if re.search(rf"/{n}(/|$)", b["name"])]
            cells.append(f"{to_seconds(r[0]):.2f} s ({r[0]['tokens_per_second']:.0f} tok/s)" if r else "")
        rss = max((b.get("peak_rss_mb", 0) for b in rows), default=0)
        bold = "**" if "default" in (s or "") else ""
        out.append(f"| {bold}{s or 'default'}{bold} | {cells[0]} | {cells[1]} | {rss:.0f} MB |")
    out += ["",
            "Why the defaults are what they are:",
            "- Debian 12's OpenBLAS does not recognise every Xeon model and falls back to its generic",
            "  Prescott SSE3 kernels (the second row). OpenBLAS reads `OPENBLAS_CORETYPE` only at load time, so",
            "  `kvscope`, `kvscope-cli` and the test programs call `kvscope::select_blas_kernels(argv)` first",
            "  thing: it sets the core type from the CPU's features (SkylakeX with AVX-512, Haswell with",
            "  AVX2+FMA) and re-executes the program. `KVSCOPE_KEEP_BLAS=1` or an explicit `OPENBLAS_CORETYPE`",
            "  turns this off. The golden-logit tests (tests/model/golden_test.cpp) pass with these kernels.",
            "- Torch's OpenMP threads spin-wait against OpenBLAS's threads when both use every core; matrix",
            "  products dominate, so the model runtime sets torch's intra-op threads to 1 and leaves the cores",
            "  to OpenBLAS (`LoadOptions::threads` overrides).", "",
            # Measured by hand with bench_prefill's BM_PrefillChannelWeights (not in prefill.json).
            "The app's prefill also measures the model's channel weights (`PrefillOptions::measure_channel_weights`;",
            '"Calibrate from this context" builds cachegen\'s channel weighting from them): one reduction of the',
            'queries per layer and one pass over the output projections, a fixed cost of about 26 ms on this',
            'machine (release build; `BM_PrefillChannelWeights` against `BM_Prefill` at 16 tokens, 40 interleaved repetitions:',
            'medians 199.8 ms and 173.6 ms; 2026-12-06, load average 1.4). At 512 and 2048 tokens the',
            'difference is below the run-to-run spread (3 repetitions each: medians 1.69 s against 2.25 s and',
            "10.1 s against 13.4 s, the measuring runs the faster ones), and so it is on the app's default",
            'context (kjv-genesis, 1687 tokens, 6 interleaved repetitions each, load average 4 to 6: medians',
            '11.4 s with the weights, 11.7 s without; runs from 10.2 to 13.5 s), so the app measures on every',
            'prefill.',
            ""]
    return out


def section_codec(d):
    out = ["## Codec throughput", ""]
    if d is None:
        return out + ["Not measured (docs/performance/codec.json is missing).", ""]
    rows = iterations(d)
    threads = sorted({int(m.group(1)) for b in rows for m in [re.search(r"^[a-z_]+/[^/]+/(\d+)", b["name"])] if m})
    out += [f"MB/s of fp16 KV (the cache's fp16 size per second of wall time; best of the repetitions) on "
            f"{d['context'].get('cache', 'the benchmark cache')}, every codec at its default settings:", "",
            f"    {d['context'].get('environment', '')} {d['context'].get('command', 'bench_codec')}".rstrip(), "",
            "(the cache comes from `kvscope-cli prefill --context datasets/contexts/gpl-3.0.txt --max-tokens 2048`). "
            "`decode` allocates a new cache each time (page faults included); `decode_into` decodes into a "
            "reused cache, a receiver's steady state.", ""]
    head = "| codec | bits/element | x vs int8 |"
    for what in ("encode", "decode", "decode_into"):
        for t in threads:
            head += f" {what} {t} thread{'s' if t > 1 else ''} |"
    out += [head, "|" + " --- |" * (3 + 3 * len(threads))]
    for codec in CODECS:
        mine = [b for b in rows if b["name"].split("/")[1] == codec]
        if not mine:
            continue
        line = f"| {codec} | {mine[0]['bits_per_element']:.3f} | {mine[0]['ratio_vs_int8']:.2f} |"
        for what in ("encode", "decode", "decode_into"):
            for t in threads:
                r = [b for b in mine if b["name"].startswith(f"{what}/{codec}/{t}/")]
                v = best(r, "fp16_MB/s")  # a rate counter: MB/s
                line += f" {v:.0f} |" if v is not None else " |"
        out.append(line)
    cg = [b for b in rows if b["name"].split("/")[1] == "cachegen"]
    if cg:
        b = cg[0]
        out += ["",
                "cachegen decodes 8 channels at a time. On CPUs with AVX2 the 8 range-decoder lanes run in vector",
                "registers (core/codec/src/cachegen_block_avx2.cpp: the division through doubles, table lookups",
                "by gather); without AVX2, or with `KVSCOPE_NO_SIMD=1`, a scalar loop does the same work. The two",
                "are bit-identical (tests/codec/simd_decode_test.cpp). The coded payload is",
                f"{b['payload_bpe']:.3f} bits per element against the symbols' entropy of {b['entropy_bpe']:.3f} "
                f"under the models used; tables and steps add {b['table_bpe']:.3f}, headers {b['header_bpe']:.3f}."]
    return out + [""]


def section_stats(d):
    out = ["## Cache statistics (the distributions panel)", ""]
    if d is None:
        return out + ["Not measured (docs/performance/stats.json is missing).", ""]
    out += [f"`kv::compute_stats` on a synthetic cache of the default model's shape (30 layers, 3 KV heads, "
            f"head_dim 64), `{d['context'].get('command', 'bench_stats')}`, best of the repetitions:", "",
            "| tokens | threads | channel histograms | time |", "| --- | --- | --- | --- |"]
    seen = {}
    for b in iterations(d):
        key = b["name"].split("/real_time")[0]
        seen[key] = min(seen.get(key, 1e30), to_seconds(b))
    for key, s in seen.items():
        parts = key.split("/")
        if len(parts) >= 4:
            out.append(f"| {parts[1]} | {'all' if parts[2] == '0' else parts[2]} | "
                       f"{'yes' if parts[3] == '1' else 'no'} | {s * 1e3:.1f} ms |")
    return out + [""]


def section_thread_pool(d):
    out = ["## parallel_for: one call", ""]
    if d is None:
        return out + ["Not measured (docs/performance/thread_pool.json is missing).", ""]
    out += ["One `parallel_for` of 64 items of about a microsecond each (the size of the codec's per-chunk",
            "loops) on the shared pool, against starting and joining threads on every call (what",
            f"`parallel_for` did before it had a pool), `{d['context'].get('command', 'bench_thread_pool')}`, "
            "best of the repetitions. CPU time is the whole process's (all threads, kernel time included,",
            "where starting threads shows); a busy machine disturbs it far less than wall time.", "",
            "| threads | wall: pool | wall: threads per call | CPU: pool | CPU: threads per call | CPU saved per call |",
            "| --- | --- | --- | --- | --- | --- |"]
    rows = iterations(d)
    threads = sorted({int(b["name"].split("/")[1]) for b in rows})
    for t in threads:
        pool = [b for b in rows if b["name"].startswith(f"BM_SharedPool/{t}/")]
        spawn = [b for b in rows if b["name"].startswith(f"BM_ThreadsPerCall/{t}/")]
        if not pool or not spawn:
            continue
        pw, sw = min(to_seconds(b) for b in pool), min(to_seconds(b) for b in spawn)
        pc, sc = min(to_seconds(b, "cpu_time") for b in pool), min(to_seconds(b, "cpu_time") for b in spawn)
        out.append(f"| {t} | {pw * 1e6:.0f} us | {sw * 1e6:.0f} us | {pc * 1e6:.0f} us | {sc * 1e6:.0f} us | "
                   f"{(sc - pc) * 1e6:.0f} us |")
    return out + [""]


def section_app(d):
    out = ["## The app (a tuning instrument)", ""]
    if d is None:
        return out + ["Not measured (docs/performance/app.json is missing; `KVSCOPE_BENCH_RECORD=1 "
                      "scripts/bench-app.sh` writes it).", ""]
    m = d["median"]

    def v(key, unit, scale=1.0, digits=2):
        x = m.get(key)
        return "not measured" if x is None else f"{x * scale:.{digits}f} {unit}"

    out += ["The app measures itself (`kvscope --timing`, app/gui/timing_report.h) under Xvfb at 1920x1080 on "
            "the default model and context, launched from the prefill an earlier launch kept: "
            f"`{d['context'].get('command', 'scripts/bench-app.sh')}`, median of {len(d['runs'])} launches "
            "(each run's numbers are in the JSON).", "",
            "| what | median | target |", "| --- | --- | --- |",
            f"| launch to first view: the cache's statistics and a first codec view (an estimate) | "
            f"{v('first_view_s', 's')} | |",
            f"| launch to first plot: statistics and the exact encode | {v('first_plot_s', 's')} | 3 s |",
            f"| retune to first redraw (cachegen, one layer's key bins; median of the retunes) | "
            f"{v('retune_first_view_ms', 'ms', digits=1)} | 100 ms |",
            f"| retune to first redraw, slowest retune | {v('retune_first_view_max_ms', 'ms', digits=1)} | |",
            f"| a change every stream feels (group_size) to first redraw | "
            f"{v('retune_all_streams_first_view_ms', 'ms', digits=1)} | 100 ms |",
            f"| undoing it (the remembered exact result) to redraw | {v('undo_first_view_ms', 'ms', digits=1)} | |",
            f"| retune to the exact size of the whole cache | {v('retune_exact_ms', 'ms', digits=0)} | |",
            f"| retune to its quality (KL, top-1, perplexity) shown | {v('retune_quality_s', 's')} | |",
            f"| streaming tab's background encoding of the chunks | {v('stream_prepare_s', 's')} | |",
            f"| simulated streaming run with its baselines (fp16, int8, text), wall time | "
            f"{v('stream_wall_s', 's')} | 2 s |", "",
            "A retune is drawn first from a real encode of part of the cache, labelled an estimate until the "
            "exact encode replaces it: when only some layers' bins changed (the default settings have one bin "
            "count per layer), those layers alone over every token, patched into the last exact encode (the "
            "same per-layer bytes as the exact one); a change every stream feels, 6 layers spread over the "
            "depth on 4 spans of 32 tokens, encoded at the new and the last settings, each layer of the last "
            "exact encode scaled as its nearest sampled layer changed; with no exact encode to scale, 4 spans "
            "of 64 tokens of every layer, scaled to the whole context. Views behind another tab recompute only "
            "when picked. The model loads after "
            "the kept prefill's first plots; quality follows once it has.", ""]
    return out


def generate():
    data = {n: load(n) for n in ("prefill", "codec", "stats", "thread_pool", "app")}
    out = ["# Performance", "",
           "<!-- Generated by scripts/make-performance.py from docs/performance/*.json: do not edit by hand. -->",
           "",
           "Every number below comes from the Google Benchmark JSON committed in docs/performance/. To measure",
           "again (release build with benchmarks, default model present), then commit the JSON and this file:",
           "", "    scripts/make-performance.py --run", "",
           "Timings depend on the machine and on what else runs on it; each file records both:", "",
           "KVScope is built RelWithDebInfo (`release` preset); the last column is how the Google Benchmark",
           "library itself was built (Debian ships a debug build, which does not slow the code measured).", "",
           "| file | recorded | machine | load average (1 / 5 / 15 min) at the start | Google Benchmark build |",
           "| --- | --- | --- | --- | --- |"]
    for name, d in data.items():
        if d is not None:
            out.append(machine_row(name, d))
    out += ["", "GPU throughput (decode, encode, streamed decode of core/codec's bitstream on a Mistral-7B- and",
            "a Llama-70B-shaped cache) is measured by `scripts/device-check.sh` on a GPU machine",
            "(kernels/README.md); this document has no GPU numbers until one has run there.", ""]
    out += section_prefill(data["prefill"])
    out += section_codec(data["codec"])
    out += section_stats(data["stats"])
    out += section_thread_pool(data["thread_pool"])
    out += section_app(data["app"])
    text = "\n".join(out).rstrip() + "\n"
    with open(OUT, "w") as f:
        f.write(text)
    print(f"wrote {os.path.relpath(OUT, ROOT)}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", action="store_true", help="run the benchmarks first (writes docs/performance/*.json)")
    ap.add_argument("--build", default=os.path.join(ROOT, "build", "release"))
    ap.add_argument("--only", default="codec,prefill,stats,thread_pool",
                    help="with --run: which benchmarks (comma-separated)")
    args = ap.parse_args()
    if args.run:
        run_all(args.build, set(args.only.split(",")))
    generate()


if __name__ == "__main__":
    sys.exit(main())
