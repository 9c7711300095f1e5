#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Golden data for KVScope's GGUF dequantizers (core/io/src/ggml_dequantize.cpp).

For every supported ggml type, random blocks (random bytes, with each block's
fp16/fp32 scale fields replaced by finite random values) are dequantized by
the `gguf` Python package's numpy implementation (llama.cpp's own Python
reader, written independently of KVScope's C++). Q8_K has no dequantizer in
that package: its reference is the one-line formula of ggml's
dequantize_row_q8_K (x = d * q) evaluated here in numpy.

Writes tests/model/golden/dequant/<TYPE>.bin (the blocks as a GGUF tensor
stores them) and <TYPE>.f32 (the expected float32 values, little-endian),
plus manifest.json. Tests read only the committed files.

  python3 -m venv ~/.cache/kvscope-models-venv
  ~/.cache/kvscope-models-venv/bin/pip install gguf numpy
  ~/.cache/kvscope-models-venv/bin/python tests/model/make_dequant_golden.py
"""
import json
import os

import numpy as np
import gguf
from gguf import quants
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType as T

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "golden", "dequant")
VALUES = 1024  # per type: 4 super-blocks of 256, or 32 blocks of 32

# Byte offsets of fp16 scale fields inside one block, per type (ggml's block structs).
HALF_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
    T.IQ4_NL: [0], T.IQ4_XS: [0],
}
TYPES = [T.F32, T.F16, T.BF16, T.Q8_0, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q2_K, T.Q3_K,
         T.Q4_K, T.Q5_K, T.Q6_K, T.Q8_K, T.IQ4_NL, T.IQ4_XS]


def random_blocks(rng, qtype):
    block, size = GGML_QUANT_SIZES[qtype]
    n_blocks = VALUES // block
    if qtype == T.F32:
        return rng.standard_normal(VALUES).astype("<f4").view(np.uint8)
    if qtype == T.F16:
        return rng.standard_normal(VALUES).astype("<f2").view(np.uint8)
    if qtype == T.BF16:
        f = rng.standard_normal(VALUES).astype("<f4").view("<u4")
        return (f >> 16).astype("<u2").view(np.uint8)
    raw = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)
    if qtype == T.Q8_K:
        raw[:, 0:4] = (rng.uniform(-0.05, 0.05, size=(n_blocks, 1))).astype("<f4").view(np.uint8)
    for off in HALF_FIELDS.get(qtype, []):
        # Scales as real files have them: small, of either sign, one block with zero.
        d = rng.uniform(-0.02, 0.02, size=(n_blocks, 1)).astype("<f2")
        if off == HALF_FIELDS[qtype][-1] and len(HALF_FIELDS[qtype]) > 1:
            d[0, 0] = 0  # a block whose min/dmin is zero
        raw[:, off:off + 2] = d.view(np.uint8)
    return raw.reshape(-1)


def reference(qtype, data):
    if qtype == T.Q8_K:
        blocks = data.reshape(-1, GGML_QUANT_SIZES[qtype][1])
        d = blocks[:, 0:4].copy().view("<f4").astype(np.float32)
        q = blocks[:, 4:4 + 256].view(np.int8).astype(np.float32)
        return (d * q).reshape(-1)
    return np.asarray(quants.dequantize(data, qtype), dtype=np.float32).reshape(-1)


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20261206)
    manifest = {"producer": "tests/model/make_dequant_golden.py with gguf %s (numpy dequantizers)"
                % getattr(gguf, "__version__", "?"), "values": VALUES, "types": {}}
    for qtype in TYPES:
        data = random_blocks(rng, qtype)
        ref = reference(qtype, data)
        assert ref.size == VALUES and np.all(np.isfinite(ref)), qtype.name
        data.tofile(os.path.join(OUT, qtype.name + ".bin"))
        ref.astype("<f4").tofile(os.path.join(OUT, qtype.name + ".f32"))
        manifest["types"][qtype.name] = {
            "ggml_type": int(qtype), "bytes": int(data.size),
            "reference": "formula in this script" if qtype == T.Q8_K else "gguf.quants.dequantize"}
        print(qtype.name, data.size, "bytes", float(np.abs(ref).max()))
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)


if __name__ == "__main__":
    main()
