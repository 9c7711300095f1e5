#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Range coder against DEFLATE on the transform codec's coded components (issue #15: KVTC codes its
quantized coefficients with DEFLATE; KVScope's own range coder should beat it on the same values).

For each HELD-OUT context: the first --tokens tokens are prefilled, encoded by `transform` with the
calibration scripts/transform-results.py made (its basis from the TUNE contexts) at several budgets,
and decoded by the independent decoder (tests/bitstream_py/kvsdecode.py), which hands over every chunk's
quantized coefficients and the bytes of its range-coded stream. DEFLATE (zlib, level 9) then compresses
the same coefficients, written as zigzag varints and as 16-bit integers (the smaller counts), one
stream per chunk as the range coder has. Side information (steps, component parameters, sinks) is the
same for both and left out. Writes docs/results/transform-deflate.json, which transform-results.py
puts in docs/results/transform.md.

    /usr/bin/python3 scripts/transform-deflate.py [--tokens 512] [--bits 1,2,3]"""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "bitstream_py"))
import kvsdecode  # noqa: E402

CALIBRATION_DIR = os.path.expanduser("~/.cache/kvscope/transform-results")


def cli(exe, args):
    env = dict(os.environ, KVSCOPE_DATA_DIR=ROOT, KVSCOPE_CALIBRATION_DIR=CALIBRATION_DIR)
    out = subprocess.run([exe] + args, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit(f"kvscope-cli {' '.join(args)} failed:\n{out.stderr}")
    return out.stdout


def varints(values):
    out = bytearray()
    for v in values:
        z = 2 * v if v >= 0 else -2 * v - 1
        while z >= 0x80:
            out.append((z & 0x7F) | 0x80)
            z >>= 7
        out.append(z)
    return bytes(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cli", default=os.path.join(ROOT, "build/release/app/cli/kvscope-cli"))
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--bits", default="1,2,3")
    args = ap.parse_args()
    run = json.load(open(os.path.join(ROOT, "docs/results/transform-run.json")))
    calibration = os.path.join(CALIBRATION_DIR, run["calibration"]["hash"] + ".kvsprof")
    if not os.path.exists(calibration):
        sys.exit(f"{calibration} is missing: run scripts/transform-results.py first")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for cid in run["held_out"]:
            cache = os.path.join(tmp, cid + ".safetensors")
            cli(args.cli, ["prefill", "--context", os.path.join(ROOT, "datasets/contexts", cid + ".txt"),
                           "--max-tokens", str(args.tokens), "--out", cache])
            for bits in args.bits.split(","):
                kvc = os.path.join(tmp, f"{cid}-{bits}.kvc")
                cli(args.cli, ["encode", "--in", cache, "--codec", "transform", "--set", f"calibration={calibration}",
                               "--set", f"bits={bits}", "--out", kvc])
                totals = {"range": 0, "deflate_varint": 0, "deflate_int16": 0, "coefficients": 0}

                def hook(range_bytes, q):
                    totals["range"] += range_bytes
                    totals["coefficients"] += len(q)
                    totals["deflate_varint"] += len(zlib.compress(varints(q), 9))
                    clipped = [max(-32768, min(32767, v)) for v in q]
                    totals["deflate_int16"] += len(zlib.compress(struct.pack(f"<{len(q)}h", *clipped), 9))

                kvsdecode.TransformDecoder.coefficient_hook = hook
                kvsdecode.decode(open(kvc, "rb").read(), CALIBRATION_DIR)
                kvsdecode.TransformDecoder.coefficient_hook = None
                deflate = min(totals["deflate_varint"], totals["deflate_int16"])
                rows.append({"context": cid, "tokens": args.tokens, "bits": float(bits), **totals,
                             "deflate": deflate, "range_vs_deflate": totals["range"] / deflate if deflate else None})
                print(f"{cid} bits={bits}: range {totals['range']} B, DEFLATE {deflate} B "
                      f"({totals['coefficients']} coefficients)", file=sys.stderr)
    out = os.path.join(ROOT, "docs/results/transform-deflate.json")
    with open(out, "w") as f:
        json.dump({"command": " ".join(["/usr/bin/python3", "scripts/transform-deflate.py"] + sys.argv[1:]),
                   "calibration": run["calibration"]["hash"], "rows": rows}, f, indent=1)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
