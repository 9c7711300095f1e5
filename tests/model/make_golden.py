#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Golden references for the model runtime, from implementations independent
of KVScope's C++ code:

- token ids: Hugging Face `tokenizers` (Rust) with a byte-level BPE built from
  the GGUF's vocabulary and merges and SmolLM2's pre-tokenizer
  (Digits(individual_digits) + ByteLevel), as SmolLM2's tokenizer.json has it;
- logits and K/V: a float64 numpy forward pass written here, on weights
  dequantized by the `gguf` package (llama.cpp's own Python reader). It
  applies RoPE the way llama.cpp does on the GGUF's permuted Q/K rows
  (interleaved pairs), so it checks KVScope's un-permutation too; keys are
  reported in Hugging Face channel order (rotate_half pairs i, i+d/2).

Run once (network needed for pip only):
  python3 -m venv /tmp/kvs-venv && /tmp/kvs-venv/bin/pip install gguf tokenizers numpy
  /tmp/kvs-venv/bin/python tests/model/make_golden.py [MODEL.gguf]
Writes tests/model/golden/smollm2_tokens.json and smollm2_forward.json.
CI compares against those files without Python.
"""
import hashlib
import json
import os
import sys

import numpy as np
import gguf
from gguf import quants
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, AddedToken

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = sys.argv[1] if len(sys.argv) > 1 else os.path.expanduser(
    "~/.cache/kvscope/models/SmolLM2-135M-Instruct.Q4_1.gguf")

# Varied text: Unicode (accents, CJK, emoji), digits, code, whitespace runs,
# contractions, a special token written literally.
TOKEN_TEXT = (
    "Hello, world! It's 2024-06-30 and the price is $1,234.56 (≈ €1.1k).\n"
    "Ünïcödé: naïve café, 日本語のテキスト, Ελληνικά, русский, emoji 🚀🔥👍🏽.\n"
    "def f(x):\n    return x**2  # squares\n\tindented\twith tabs\n\n\n"
    "   leading spaces, trailing spaces   \n"
    "Numbers: 3.14159 1000000 007 and contractions: we'll, I'm, they've, don't.\n"
    "<|im_start|>user\nWhat's 12*34?<|im_end|>\n"
    "URL https://example.com/a?b=c&d=e  mixed_CASE snake_case camelCase\u00a0nbsp"
)
LOGIT_PROMPT = "The capital of France is"
KEEP_LAYERS = [0, 15, 29]
TOP_K = 64


def field(reader, key):
    f = reader.fields[key]
    if f.types[0] == gguf.GGUFValueType.ARRAY:
        if f.types[1] == gguf.GGUFValueType.STRING:
            return [bytes(f.parts[i]).decode("utf-8") for i in f.data]
        return [f.parts[i][0].item() for i in f.data]
    if f.types[0] == gguf.GGUFValueType.STRING:
        return bytes(f.parts[f.data[0]]).decode("utf-8")
    return f.parts[f.data[0]][0].item()


def build_tokenizer(reader):
    tokens = field(reader, "tokenizer.ggml.tokens")
    merges = field(reader, "tokenizer.ggml.merges")
    types = field(reader, "tokenizer.ggml.token_type")
    vocab = {t: i for i, t in enumerate(tokens)}
    bpe = models.BPE(vocab=vocab, merges=[tuple(m.split(" ", 1)) for m in merges])
    tok = Tokenizer(bpe)
    assert field(reader, "tokenizer.ggml.pre") == "smollm"
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t, ty in zip(tokens, types) if ty == 3])
    return tok


def tensor(reader, name):
    for t in reader.tensors:
        if t.name == name:
            w = quants.dequantize(t.data, t.tensor_type)
            return np.asarray(w, dtype=np.float64).reshape([int(d) for d in reversed(t.shape)])
    raise KeyError(name)


def rms(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def rope_interleaved(x, pos, theta):
    # llama.cpp "normal" RoPE on GGUF-permuted rows: pairs (2i, 2i+1).
    d = x.shape[-1]
    inv = theta ** (-np.arange(0, d, 2, dtype=np.float64) / d)
    ang = pos[:, None] * inv[None, :]  # [T, d/2]
    c, s = np.cos(ang), np.sin(ang)
    x0, x1 = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = x0 * c - x1 * s
    out[..., 1::2] = x0 * s + x1 * c
    return out


def interleaved_to_hf(x):
    # channel 2i+s (GGUF) -> s*d/2 + i (HF)
    d = x.shape[-1]
    return np.concatenate([x[..., 0::2], x[..., 1::2]], axis=-1)


def forward(reader, ids):
    a = field(reader, "general.architecture")
    L = field(reader, f"{a}.block_count")
    nh = field(reader, f"{a}.attention.head_count")
    nkv = field(reader, f"{a}.attention.head_count_kv")
    H = field(reader, f"{a}.embedding_length")
    hd = H // nh
    eps = field(reader, f"{a}.attention.layer_norm_rms_epsilon")
    theta = field(reader, f"{a}.rope.freq_base")
    emb = tensor(reader, "token_embd.weight")
    T = len(ids)
    pos = np.arange(T, dtype=np.float64)
    x = emb[ids]
    keys, values = {}, {}
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for l in range(L):
        p = f"blk.{l}."
        h = rms(x, tensor(reader, p + "attn_norm.weight"), eps)
        q = (h @ tensor(reader, p + "attn_q.weight").T).reshape(T, nh, hd).transpose(1, 0, 2)
        k = (h @ tensor(reader, p + "attn_k.weight").T).reshape(T, nkv, hd).transpose(1, 0, 2)
        v = (h @ tensor(reader, p + "attn_v.weight").T).reshape(T, nkv, hd).transpose(1, 0, 2)
        q = rope_interleaved(q, pos, theta)
        k = rope_interleaved(k, pos, theta)
        if l in KEEP_LAYERS:
            keys[l] = interleaved_to_hf(k)
            values[l] = v
        g = nh // nkv
        out = np.empty((nh, T, hd))
        for head in range(nh):
            s = q[head] @ k[head // g].T / np.sqrt(hd) + mask
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            out[head] = s @ v[head // g]
        x = x + out.transpose(1, 0, 2).reshape(T, nh * hd) @ tensor(reader, p + "attn_output.weight").T
        h = rms(x, tensor(reader, p + "ffn_norm.weight"), eps)
        gate = h @ tensor(reader, p + "ffn_gate.weight").T
        up = h @ tensor(reader, p + "ffn_up.weight").T
        x = x + (gate / (1 + np.exp(-gate)) * up) @ tensor(reader, p + "ffn_down.weight").T
    out_w = emb
    for t in reader.tensors:
        if t.name == "output.weight":
            out_w = tensor(reader, "output.weight")
    logits = rms(x[-1], tensor(reader, "output_norm.weight"), eps) @ out_w.T
    return logits, keys, values


def main():
    reader = gguf.GGUFReader(MODEL)
    sha = hashlib.sha256(open(MODEL, "rb").read()).hexdigest()
    tok = build_tokenizer(reader)
    enc = tok.encode(TOKEN_TEXT)
    golden_dir = os.path.join(HERE, "golden")
    os.makedirs(golden_dir, exist_ok=True)
    with open(os.path.join(golden_dir, "smollm2_tokens.json"), "w") as f:
        json.dump({"producer": "tokenizers %s (Hugging Face), BPE from GGUF metadata" % __import__("tokenizers").__version__,
                   "model_sha256": sha, "text": TOKEN_TEXT, "ids": enc.ids,
                   "decoded": tok.decode(enc.ids, skip_special_tokens=False)}, f, ensure_ascii=False, indent=1)
    ids = tok.encode(LOGIT_PROMPT).ids
    logits, keys, values = forward(reader, np.array(ids))
    top = np.argsort(-logits)[:TOP_K]
    lse = float(np.log(np.exp(logits - logits.max()).sum()) + logits.max())
    with open(os.path.join(golden_dir, "smollm2_forward.json"), "w") as f:
        json.dump({
            "producer": "numpy float64 reference forward (tests/model/make_golden.py), gguf %s dequantization" % gguf.__version__ if hasattr(gguf, "__version__") else "numpy float64 reference forward, gguf package dequantization",
            "model_sha256": sha,
            "prompt": LOGIT_PROMPT, "prompt_ids": ids,
            "top_ids": top.tolist(), "top_logits": [float(logits[i]) for i in top],
            "logsumexp": lse,
            "layers": KEEP_LAYERS,
            "keys": {str(l): np.round(keys[l], 6).reshape(-1).tolist() for l in KEEP_LAYERS},
            "values": {str(l): np.round(values[l], 6).reshape(-1).tolist() for l in KEEP_LAYERS},
        }, f)
    print("tokens:", len(enc.ids), "prompt ids:", ids, "top-5:", top[:5].tolist(), [tok.decode([int(i)]) for i in top[:5]])


if __name__ == "__main__":
    main()
