#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Checks the independent decoder (kvsdecode.py, written from
docs/bitstream.md alone) against the C++ decoder, value by value, on the
corpus bitstream_make_corpus writes (every golden stream, fresh streams of
every codec and mode), and decodes the corpus's HDF5 exports with h5py plus
kvsdecode only (no KVScope code), comparing them with the same values and,
within each codec's documented bound, with the reference cache the file holds.

    test_decoder.py --corpus-tool PATH --golden DIR [--work DIR] [--only WHAT]

WHAT: streams | hdf5 (default: both). Exit 0 when everything matches.
"""

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kvsdecode  # noqa: E402


def load_f32(path, shape):
    layers, heads, tokens, dim = shape
    return np.fromfile(path, dtype="<f4").reshape(layers, 2, heads, tokens, dim)


def compare_exact(name, ours, theirs):
    """Bit-for-bit equality of float32 values; returns an error line or None."""
    if ours.shape != theirs.shape:
        return "%s: shape %s, C++ %s" % (name, ours.shape, theirs.shape)
    a = ours.view(np.uint32)
    b = theirs.view(np.uint32)
    diff = np.nonzero(a != b)
    if len(diff[0]):
        i = tuple(x[0] for x in diff)
        return "%s: %d values differ, first at %s: python %r, C++ %r" % (
            name, len(diff[0]), i, float(ours[i]), float(theirs[i]))
    return None


def error_bound(codec, params, orig, shape, values):
    """The codec's documented reconstruction bound, per value (docs/bitstream.md
    section 3), from the stream's own steps is codec-internal; here: a bound
    from the original values that every codec documents: fp16 rounding for
    fp16, half a step of the per-token (or per-group) step otherwise."""
    absmax = float(np.max(np.abs(orig))) if orig.size else 0.0
    if codec == "fp16":
        return np.abs(orig) * 2.0 ** -11 + 2.0 ** -25
    if codec in ("int8", "zstd"):
        return absmax / 127 * 0.5 * 1.002 + 1e-30
    if codec == "int4":
        return absmax / 7 * 0.5 * 1.002 + 1e-30
    if codec == "kivi2":
        return (float(np.max(orig)) - float(np.min(orig))) / 3 * 0.5 * 1.01 + np.abs(orig) * 2.0 ** -10 + 1e-30
    if codec == "transform":
        return None  # PCA under a bit budget: no per-value bound is documented
    # cachegen, cachegen-lmcache: step = absmax / M at most; M >= 1. Float
    # deltas quantize x - x'_anchor (up to twice absmax); keys before RoPE are
    # quantized in the rotated space, whose values reach sqrt(2) absmax and
    # whose errors RoPE mixes within pairs: a looser bound for either.
    if codec == "cachegen" and (params.get("delta_mode") == "float" or params.get("key_space") == "pre_rope"):
        return absmax * 3.0 + 1e-30
    return absmax * 0.5 * 1.002 + 1e-30


def stream_features(info):
    """The format features a stream uses (docs/bitstream.md), for the corpus's coverage check."""
    p, ch, out = info["params"], info["codec_header"], set()
    layers = info["shape"][0]
    if info["codec"] == "cachegen":
        v = info["codec_version"]
        out.add("cachegen-v%d" % v)
        if ch[1:2] == b"\x01":
            out.add("cachegen-calibration-" + ("pre_rope" if p.get("key_space") == "pre_rope" else "post_rope"))
        if v == 3:
            if int(p["sinks"]) > 0:
                out.add("cachegen-sinks")
            if p["delta_mode"] == "float":
                out.add("cachegen-float-deltas-" + p["scale"])
            if p["step_coding"] == "coded":
                out.add("cachegen-coded-steps")
            if int(p["table_bits"]) < 16 and ch[1:2] == b"\x00":
                out.add("cachegen-table-bits")
            if p["key_space"] == "pre_rope":
                out.add("cachegen-pre-rope" if info["rope_applied"] else "cachegen-pre-rope-without-rope")
                if info["rope_applied"] and info["positions"]:
                    out.add("cachegen-pre-rope-positions")
                if info["rope_applied"] and info["rope_inv_freq"]:
                    out.add("cachegen-pre-rope-tables")
        for kind in ("key", "value"):
            bins = [b for b in p[kind + "_bins"].split(",") if b]
            if not p[kind + "_layer_splits"] and layers >= 2 and len(bins) == layers:
                out.add("cachegen-per-layer-bins")
    elif info["codec"] == "transform":
        out.add("transform-" + ("calibration" if ch[0] == 0 else "shipped") + "-" + p["grouping"])
        if ch[1] == 1:
            out.add("transform-pre-rope")
        if int(p["recent_tokens"]) > 0:
            out.add("transform-recent")
        if info["codec_version"] >= 2 and float(p["key_weighting"]) > 0:
            out.add("transform-weighted-" + p["grouping"])
        if info["codec_version"] == 3:
            out.add("transform-gained-" + p["grouping"] + ("-shipped" if ch[0] == 1 else ""))
    return out


REQUIRED_FEATURES = {
    "cachegen-v1", "cachegen-v2", "cachegen-v3", "cachegen-calibration-pre_rope", "cachegen-calibration-post_rope",
    "cachegen-sinks", "cachegen-float-deltas-token", "cachegen-float-deltas-head", "cachegen-coded-steps",
    "cachegen-table-bits", "cachegen-pre-rope", "cachegen-pre-rope-without-rope", "cachegen-pre-rope-positions",
    "cachegen-pre-rope-tables", "cachegen-per-layer-bins", "transform-shipped-layer", "transform-shipped-head",
    "transform-calibration-layer", "transform-calibration-head", "transform-pre-rope", "transform-recent",
    "transform-weighted-layer", "transform-weighted-head", "transform-gained-layer", "transform-gained-head",
    "transform-gained-layer-shipped", "transform-gained-head-shipped"}


def check_golden_hashes(golden, failures):
    """Every golden stream decodes to the values whose hash expected.txt records."""
    n = 0
    with open(os.path.join(golden, "expected.txt")) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            name, size, expected = line.split()
            with open(os.path.join(golden, name), "rb") as g:
                data = g.read()
            if len(data) != int(size):
                failures.append("golden %s: %d bytes, expected.txt says %s" % (name, len(data), size))
            values, _ = kvsdecode.decode(data)
            if kvsdecode.fnv1a64(values.tobytes()) != expected:
                failures.append("golden %s: decoded values differ from expected.txt" % name)
            n += 1
    print("golden: %d streams match expected.txt" % n)
    return n


def append_to_last_section(data, extra):
    """The stream with `extra` appended to its last section's payload (length
    and section CRC updated, so only the payload's own rules can object)."""
    pos = 16 + struct.unpack_from("<I", data, 8)[0]
    last = None
    while pos < len(data):
        last = pos
        pos += 24 + struct.unpack_from("<I", data, pos + 16)[0]
    hdr = bytearray(data[last:last + 20])
    payload = data[last + 24:] + extra
    struct.pack_into("<I", hdr, 16, len(payload))
    crc = kvsdecode.crc32c(payload, kvsdecode.crc32c(bytes(hdr)))
    return data[:last] + bytes(hdr) + struct.pack("<I", crc) + payload


def check_transform_tamper(name, data, profile_dir, failures):
    """docs/bitstream.md section 2 "End of a stream": transform's coefficient
    stream is the rest of its chunk payload, so a byte appended to the payload
    is a byte appended to the stream, and the decoder must refuse it."""
    for extra in (b"\x5a", b"\x01", b"\x00"):
        try:
            kvsdecode.decode(append_to_last_section(data, extra), profile_dir)
        except kvsdecode.FormatError as e:
            if "trailing" in str(e) or "does not end" in str(e) or "0 byte" in str(e):
                continue
            failures.append("%s + %r: refused for another reason: %s" % (name, extra, e))
            continue
        failures.append("%s + %r: a byte appended to the coefficient stream decoded" % (name, extra))


def check_streams(corpus, manifest, failures):
    n = 0
    features = set()
    for item in manifest:
        name = item["name"]
        with open(os.path.join(corpus, item["kvc"]), "rb") as f:
            data = f.read()
        profile_dir = os.path.join(corpus, item["profile_dir"]) if "profile_dir" in item else None
        try:
            ours, info = kvsdecode.decode(data, profile_dir)
        except Exception as e:  # noqa: BLE001 - any failure is a finding
            failures.append("%s: the independent decoder failed: %r" % (name, e))
            continue
        features |= stream_features(info)
        if info["codec"] == "transform":
            check_transform_tamper(name, data, profile_dir, failures)
        theirs = load_f32(os.path.join(corpus, item["f32"]), item["shape"])
        err = compare_exact(name, ours, theirs)
        if err:
            failures.append(err)
        for key in ("rope_inv_freq", "layer_window"):
            if key in item and info[key] != item[key]:
                failures.append("%s: header %s differs from the C++ reader's" % (name, key))
        if "orig" in item:
            orig = load_f32(os.path.join(corpus, item["orig"]), item["shape"])
            bound = error_bound(item["codec"], item["params"], orig, item["shape"], ours)
            over = np.abs(ours.astype(np.float64) - orig) > bound if bound is not None else np.zeros(1, bool)
            if np.any(over):
                failures.append("%s: %d values outside the codec's error bound" % (name, int(np.sum(over))))
        n += 1
    extended = sum(1 for m in manifest if m.get("rope_inv_freq"))
    print("streams: %d decoded by the independent decoder, compared with C++ (%d with extended cache info)"
          % (n, extended))
    if extended == 0:
        failures.append("no stream with extended cache info in the corpus")
    missing = REQUIRED_FEATURES - features
    if missing:
        failures.append("the corpus has no stream with " + ", ".join(sorted(missing)))
    if not kvsdecode.CODED_STEP_METHODS.get(1):
        failures.append("no chunk in the corpus has range-coded steps (coded steps method 1)")
    print("streams: features covered: " + ", ".join(sorted(features)))
    return n


def check_hdf5(corpus, manifest, failures):
    import h5py  # Debian's python3-h5py

    n = 0
    for item in manifest:
        if "h5" not in item:
            continue
        name = item["name"]
        path = os.path.join(corpus, item["h5"])
        with h5py.File(path, "r") as f:
            if f.attrs["format"] != "kvscope-encoded-cache":
                failures.append(name + ": /@format")
                continue
            count = int(f["levels"].attrs["count"])
            ref = f["reference/cache"][...].astype(np.float32) if "reference/cache" in f else None
            profile_dir = None
            if "calibration" in f:
                # The profile is stored under its hash, where the stream's header points.
                profile_dir = tempfile.mkdtemp(prefix="kvsdecode-profiles-")
                blob = f["calibration/profile"][...].tobytes()
                with open(os.path.join(profile_dir, kvsdecode.fnv1a64(blob) + ".kvsprof"), "wb") as out:
                    out.write(blob)
            for level in range(count):
                group = f["levels/%d" % level]
                blob = group["bitstream"][...].tobytes()
                if kvsdecode.crc32c(blob) != int(group["bitstream"].attrs["crc32c"]):
                    failures.append("%s: level %d bitstream crc32c" % (name, level))
                rows = group["sections"][...]
                if b"".join(blob[int(r["offset"]):int(r["offset"]) + int(r["length"])] for r in rows) != blob:
                    failures.append("%s: sections do not tile the bitstream" % name)
                try:
                    ours, info = kvsdecode.decode(blob, profile_dir)
                except Exception as e:  # noqa: BLE001
                    failures.append("%s.h5 level %d: the independent decoder failed: %r" % (name, level, e))
                    continue
                theirs = load_f32(os.path.join(corpus, item["f32"]), item["shape"])
                err = compare_exact(name + ".h5", ours, theirs)
                if err:
                    failures.append(err)
                bound = error_bound(item["codec"], item["params"], ref, item["shape"], ours) if ref is not None else None
                if bound is not None:
                    # The reference is stored as fp16: allow its rounding too.
                    bound = bound + np.abs(ref) * 2.0 ** -11
                    if np.any(np.abs(ours - ref) > bound):
                        failures.append("%s.h5: values outside the codec's bound from /reference/cache" % name)
                n += 1
            if profile_dir:
                shutil.rmtree(profile_dir, ignore_errors=True)
    print("hdf5: %d levels decoded with h5py + the independent decoder" % n)
    return n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus-tool", required=True)
    ap.add_argument("--golden", required=True)
    ap.add_argument("--work")
    ap.add_argument("--only", choices=["streams", "hdf5"])
    args = ap.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="kvscope-bitstream-py-")
    try:
        subprocess.run([args.corpus_tool, work, args.golden], check=True, stdout=subprocess.DEVNULL)
        with open(os.path.join(work, "manifest.json")) as f:
            manifest = json.load(f)
        failures = []
        counts = {}
        if args.only in (None, "streams"):
            check_golden_hashes(args.golden, failures)
            counts["streams"] = check_streams(work, manifest, failures)
            goldens = sum(1 for m in manifest if m["name"].startswith("golden-"))
            if goldens < 15:
                failures.append("only %d golden streams in the corpus" % goldens)
        if args.only in (None, "hdf5"):
            counts["hdf5"] = check_hdf5(work, manifest, failures)
            if counts["hdf5"] < 5:
                failures.append("only %d HDF5 levels checked" % counts["hdf5"])
        for line in failures:
            print("FAIL " + line)
        return 1 if failures else 0
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
