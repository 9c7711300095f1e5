#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Writes a synthetic GGUF model with the shapes of a real one and random
Q4_K_M-style weights, for memory and speed measurements of the loader
(scripts/bench-models.sh). The numbers are random, so the model's text is
meaningless; what matters is that every tensor has the real shape and type.

Q4_K_M mix as llama.cpp's quantizer makes it: Q4_K for most matrices; Q6_K
for the output projection (and a tied embedding), and for attn_v and
ffn_down in the layers llama.cpp gives more bits (the first and last eighth
and every third in between); norms in F32. Weights are zero-mean with a
standard deviation near 0.02.

  python3 scripts/make-synthetic-model.py llama-3.2-1b ~/.cache/kvscope/synthetic/llama-3.2-1b.Q4_K_M.gguf
  python3 scripts/make-synthetic-model.py llama-3.1-8b /tmp/llama-3.1-8b.Q4_K_M.gguf

Needs only numpy. Files are streamed tensor by tensor (the 8B shape is about
4.6 GiB); keep them out of the repository.
"""
import struct
import sys

import numpy as np

SHAPES = {
    # name: layers, hidden, heads, kv_heads, head_dim, intermediate, vocab, tied, rope theta, llama3 factor
    "llama-3.2-1b": dict(layers=16, hidden=2048, heads=32, kv_heads=8, head_dim=64, intermediate=8192,
                         vocab=128256, tied=True, theta=500000.0, factor=32.0),
    "llama-3.1-8b": dict(layers=32, hidden=4096, heads=32, kv_heads=8, head_dim=128, intermediate=14336,
                         vocab=128256, tied=False, theta=500000.0, factor=8.0),
}
Q4_K, Q6_K, F32 = 12, 14, 0
BLOCK = {Q4_K: 144, Q6_K: 210}
ALIGN = 32


def more_bits(i, n):
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def gguf_string(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def kv(key, vtype, value):
    out = gguf_string(key) + struct.pack("<I", vtype)
    if vtype == 4:
        out += struct.pack("<I", value)
    elif vtype == 6:
        out += struct.pack("<f", value)
    elif vtype == 7:
        out += struct.pack("<B", 1 if value else 0)
    elif vtype == 8:
        out += gguf_string(value)
    elif vtype == 9:  # array: (element type, list)
        et, items = value
        out += struct.pack("<IQ", et, len(items))
        if et == 8:
            out += b"".join(gguf_string(x) for x in items)
        elif et == 5:
            out += np.asarray(items, dtype="<i4").tobytes()
    return out


def byte_token(b):
    direct = (33 <= b <= 126) or (0xA1 <= b <= 0xAC) or (0xAE <= b <= 0xFF)
    if direct:
        return chr(b)
    n = sum(1 for k in range(b) if not ((33 <= k <= 126) or (0xA1 <= k <= 0xAC) or (0xAE <= k <= 0xFF)))
    return chr(256 + n)


def q4_k_blocks(rng, n):
    blocks = rng.integers(0, 256, size=(n, 144), dtype=np.uint8)
    # All eight sub-blocks get scale = min = v, and dmin = 7.5 d: zero mean.
    v = rng.integers(16, 48, size=n, dtype=np.uint8)
    lo = (v & 63) | ((v >> 4) << 6)
    blocks[:, 4:12] = lo[:, None]
    blocks[:, 12:16] = ((v & 15) | ((v & 15) << 4))[:, None]
    d = np.full(n, 1.4e-4, dtype="<f2")
    blocks[:, 0:2] = d.view(np.uint8).reshape(n, 2)
    blocks[:, 2:4] = np.full(n, 1.05e-3, dtype="<f2").view(np.uint8).reshape(n, 2)
    return blocks


def q6_k_blocks(rng, n):
    blocks = rng.integers(0, 256, size=(n, 210), dtype=np.uint8)
    blocks[:, 192:208] = rng.integers(32, 96, size=(n, 16), dtype=np.uint8)  # int8 scales > 0
    blocks[:, 208:210] = np.full(n, 2.0e-5, dtype="<f2").view(np.uint8).reshape(n, 2)
    return blocks


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in SHAPES:
        sys.exit("usage: make-synthetic-model.py {%s} OUT.gguf" % ",".join(SHAPES))
    s = SHAPES[sys.argv[1]]
    L, H, nh, nkv, hd, I, V = s["layers"], s["hidden"], s["heads"], s["kv_heads"], s["head_dim"], s["intermediate"], s["vocab"]
    tensors = []  # (name, ne list, type)
    tensors.append(("token_embd.weight", [H, V], Q6_K if s["tied"] else Q4_K))
    tensors.append(("output_norm.weight", [H], F32))
    tensors.append(("rope_freqs.weight", [hd // 2], F32))
    if not s["tied"]:
        tensors.append(("output.weight", [H, V], Q6_K))
    for i in range(L):
        p = "blk.%d." % i
        hi = Q6_K if more_bits(i, L) else Q4_K
        tensors += [(p + "attn_norm.weight", [H], F32), (p + "attn_q.weight", [H, nh * hd], Q4_K),
                    (p + "attn_k.weight", [H, nkv * hd], Q4_K), (p + "attn_v.weight", [H, nkv * hd], hi),
                    (p + "attn_output.weight", [nh * hd, H], Q4_K), (p + "ffn_norm.weight", [H], F32),
                    (p + "ffn_gate.weight", [H, I], Q4_K), (p + "ffn_up.weight", [H, I], Q4_K),
                    (p + "ffn_down.weight", [I, H], hi)]

    def nbytes(ne, t):
        n = int(np.prod(ne))
        return n * 4 if t == F32 else n // 256 * BLOCK[t]

    vocab = [byte_token(b) for b in range(256)] + ["tok%d" % i for i in range(V - 256)]
    a = "llama"
    meta = [
        kv("general.architecture", 8, a), kv("general.name", 8, "synthetic-" + sys.argv[1]),
        kv("general.file_type", 4, 15),  # MOSTLY_Q4_K_M
        kv(a + ".block_count", 4, L), kv(a + ".context_length", 4, 131072), kv(a + ".embedding_length", 4, H),
        kv(a + ".feed_forward_length", 4, I), kv(a + ".attention.head_count", 4, nh),
        kv(a + ".attention.head_count_kv", 4, nkv), kv(a + ".rope.freq_base", 6, s["theta"]),
        kv(a + ".attention.layer_norm_rms_epsilon", 6, 1e-5), kv(a + ".vocab_size", 4, V),
        kv("tokenizer.ggml.model", 8, "gpt2"), kv("tokenizer.ggml.pre", 8, "llama-bpe"),
        kv("tokenizer.ggml.tokens", 9, (8, vocab)), kv("tokenizer.ggml.token_type", 9, (5, [1] * V)),
        kv("tokenizer.ggml.merges", 9, (8, [])), kv("tokenizer.ggml.bos_token_id", 4, 256),
        kv("tokenizer.ggml.eos_token_id", 4, 257),
    ]
    header = struct.pack("<IIQQ", 0x46554747, 3, len(tensors), len(meta)) + b"".join(meta)
    offset = 0
    infos = []
    for name, ne, t in tensors:
        infos.append(gguf_string(name) + struct.pack("<I", len(ne)) + struct.pack("<%dQ" % len(ne), *ne)
                     + struct.pack("<IQ", t, offset))
        offset += (nbytes(ne, t) + ALIGN - 1) // ALIGN * ALIGN
    header += b"".join(infos)
    header += b"\0" * ((-len(header)) % ALIGN)
    rng = np.random.default_rng(1)
    # Llama 3 RoPE frequency divisors for factor f (low 1, high 4, original 8192).
    inv = 1.0 / s["theta"] ** (np.arange(0, hd, 2) / hd)
    wavelen = 2 * np.pi / inv
    lo_w, hi_w = 8192 / 1.0, 8192 / 4.0
    smooth = (8192 / wavelen - 1.0) / (4.0 - 1.0)
    factors = np.where(wavelen < hi_w, 1.0, np.where(wavelen > lo_w, s["factor"],
                                                      1.0 / ((1 - smooth) / s["factor"] + smooth)))
    with open(sys.argv[2], "wb") as f:
        f.write(header)
        for name, ne, t in tensors:
            n = int(np.prod(ne))
            if name == "rope_freqs.weight":
                data = factors.astype("<f4").tobytes()
            elif t == F32:
                data = np.ones(n, dtype="<f4").tobytes()
            else:
                # Large tensors in pieces of 64k blocks so memory stays small.
                make = q4_k_blocks if t == Q4_K else q6_k_blocks
                for start in range(0, n // 256, 1 << 16):
                    f.write(make(rng, min(1 << 16, n // 256 - start)).tobytes())
                data = b""
            f.write(data)
            f.write(b"\0" * ((-nbytes(ne, t)) % ALIGN))
    print("wrote", sys.argv[2], "(%d tensors)" % len(tensors))


if __name__ == "__main__":
    main()
