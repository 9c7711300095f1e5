#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Writes tests/kv/data/stats_golden.json: a small synthetic KV cache and its
statistics computed independently with numpy, following the definitions in
core/kv/include/kvscope/kv/stats.h. Run with Debian's /usr/bin/python3 (numpy).
Deterministic: fixed seed, no inputs."""
import json
import os

import numpy as np

LAYERS, HEADS, TOKENS, DIM = 2, 2, 23, 4
CFG = {"histogram_bins": 8, "entropy_bins": 8, "group_size": 5, "outlier_factor": 3.0}

rng = np.random.default_rng(20261128)
t = np.arange(TOKENS)[None, None, None, :, None]
base = np.sin(0.3 * (t + 1) * (np.arange(DIM)[None, None, None, None, :] + 1))
cache = base + 0.3 * rng.standard_normal((LAYERS, 2, HEADS, TOKENS, DIM))
cache[1, 0, 1, :, 2] *= 20.0  # an outlier key channel in layer 1 (channel 1*DIM+2 = 6)
cache[0, 1, 0, :, 1] = 0.0    # an all-zero value channel (entropy 0, correlation 0)
cache = cache.astype(np.float32)


def series(x, name):
    x = x.astype(np.float64)
    if name == "raw":
        return x
    if name == "anchor_delta":
        g = CFG["group_size"]
        idx = np.arange(len(x))
        anchors = idx - idx % g
        keep = anchors != idx
        return x[keep] - x[anchors[keep]]
    return np.diff(x)


def moments(v):
    if v.size == 0:
        return {"count": 0, "mean": 0, "std": 0, "min": 0, "max": 0, "kurtosis": 0}
    m = v.mean()
    var = ((v - m) ** 2).mean()
    k = ((v - m) ** 4).mean() / var**2 - 3.0 if var > 0 else 0.0
    return {"count": int(v.size), "mean": m, "std": np.sqrt(var), "min": v.min(), "max": v.max(), "kurtosis": k}


def hist(v, lo, hi, bins):
    counts = np.zeros(bins, dtype=np.int64)
    for x in v:
        b = 0 if not hi > lo else int(np.clip(np.floor((x - lo) / (hi - lo) * bins), 0, bins - 1))
        counts[b] += 1
    return counts.tolist()


def entropy(symbols):
    if symbols.size == 0:
        return 0.0
    _, c = np.unique(symbols, return_counts=True)
    p = c / c.sum()
    return float(-(p * np.log2(p)).sum())


def corr(x):
    x = x.astype(np.float64)
    if len(x) < 2:
        return 0.0
    a, b = x[:-1], x[1:]
    if a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


NAMES = ["raw", "anchor_delta", "prev_delta"]
M = CFG["entropy_bins"] // 2 - 1
tensors = []
for l in range(LAYERS):
    for k in range(2):
        chans = []
        allv = {n: [] for n in NAMES}
        for h in range(HEADS):
            for d in range(DIM):
                x = cache[l, k, h, :, d]
                absmax = np.abs(x.astype(np.float64)).max()
                step = absmax / M
                ch = {"moments": {}, "entropy_bits": {}, "histograms": {}}
                for n in NAMES:
                    v = series(x, n)
                    allv[n].append(v)
                    ch["moments"][n] = moments(v)
                    ch["entropy_bits"][n] = entropy(np.rint(v / step)) if step > 0 else 0.0
                    ch["histograms"][n] = hist(v, v.min(), v.max(), CFG["histogram_bins"]) if v.size else []
                ch["adjacent_correlation"] = corr(x)
                ch["absmax"] = float(absmax)
                chans.append(ch)
        ts = {"layer": l, "kind": k, "moments": {}, "histograms": {}, "entropy_bits": {}, "channels": chans}
        for n in NAMES:
            v = np.concatenate(allv[n])
            ts["moments"][n] = moments(v)
            ts["histograms"][n] = hist(v, v.min(), v.max(), CFG["histogram_bins"])
            ts["entropy_bits"][n] = float(np.mean([c["entropy_bits"][n] for c in chans]))
        ts["adjacent_correlation"] = float(np.mean([c["adjacent_correlation"] for c in chans]))
        absmaxes = np.array([c["absmax"] for c in chans])
        med = float(np.median(absmaxes))
        ts["median_channel_absmax"] = med
        ts["outlier_channels"] = [int(i) for i in np.nonzero(absmaxes > CFG["outlier_factor"] * med)[0]]
        tensors.append(ts)


def plain(o):
    if isinstance(o, dict):
        return {k: plain(v) for k, v in o.items()}
    if isinstance(o, list):
        return [plain(v) for v in o]
    if isinstance(o, (np.floating, float)):
        return float(o)
    if isinstance(o, (np.integer,)):
        return int(o)
    return o


out = {
    "generator": "tests/kv/make_stats_golden.py",
    "shape": {"layers": LAYERS, "kv_heads": HEADS, "tokens": TOKENS, "head_dim": DIM},
    "config": CFG,
    # float32 values in the KVCache layout [layer][kind][head][token][dim], as exact decimal strings
    "values": [float(v) for v in cache.reshape(-1)],
    "tensors": plain(tensors),
}
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "stats_golden.json")
with open(path, "w") as f:
    json.dump(out, f, indent=1)
print("wrote", path)
