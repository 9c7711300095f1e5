#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Golden reference for a real Gemma 3 file: gemma-3-270m-q4_k_m.gguf
(scripts/fetch-extra-models.sh), whose tensors are Q4_K, Q6_K, Q5_0, Q8_0
and F32. Weights are dequantized by the `gguf` package (llama.cpp's Python
reader); the forward pass is float64 numpy written from transformers'
modeling_gemma3 (scaled embeddings, q/k norms, sandwich norms, GELU-tanh MLP,
sliding-window layers with RoPE base 10000, global layers with the file's
base), on llama.cpp's GGUF conventions (norm weights stored as 1 + w, Q/K
rows not permuted, five of every six layers sliding). Prompt ids come from
`sentencepiece` on the file's vocabulary (as make_tokenizer_golden.py builds
it) with BOS first.

  ~/.cache/kvscope-models-venv/bin/python tests/model/make_gemma3_golden.py
Writes tests/model/golden/gemma3_270m_forward.json.
"""
import hashlib
import json
import math
import os

import numpy as np
import gguf
from gguf import quants

import make_tokenizer_golden as tg

HERE = os.path.dirname(os.path.abspath(__file__))
PROMPT = "The capital of France is"
KEEP_LAYERS = [0, 5, 17]
TOP_K = 64


def main():
    path = tg.GEMMA
    r = gguf.GGUFReader(path)
    tensors = {t.name: t for t in r.tensors}

    def w(name):
        t = tensors[name]
        return np.asarray(quants.dequantize(t.data, t.tensor_type), dtype=np.float64).reshape(
            [int(d) for d in reversed(t.shape)])

    def num(key):
        f = r.fields[key]
        return f.parts[f.data[0]][0].item()

    a = "gemma3"
    L, H = num(a + ".block_count"), num(a + ".embedding_length")
    nh, nkv, hd = num(a + ".attention.head_count"), num(a + ".attention.head_count_kv"), num(a + ".attention.key_length")
    eps, theta, window = num(a + ".attention.layer_norm_rms_epsilon"), num(a + ".rope.freq_base"), num(
        a + ".attention.sliding_window")
    sp = tg.gemma_processor()
    ids = [num("tokenizer.ggml.bos_token_id")] + sp.encode(PROMPT)
    T = len(ids)
    pos = np.arange(T, dtype=np.float64)

    def rms(x, g):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * g

    def rotate_half(x):
        h = x.shape[-1] // 2
        return np.concatenate([-x[..., h:], x[..., :h]], axis=-1)

    emb = w("token_embd.weight")
    x = emb[ids] * math.sqrt(H)
    keys, values = {}, {}
    for l in range(L):
        p = "blk.%d." % l
        sliding = (l + 1) % 6 != 0
        h = rms(x, w(p + "attn_norm.weight"))
        q = (h @ w(p + "attn_q.weight").T).reshape(T, nh, hd).transpose(1, 0, 2)
        k = (h @ w(p + "attn_k.weight").T).reshape(T, nkv, hd).transpose(1, 0, 2)
        v = (h @ w(p + "attn_v.weight").T).reshape(T, nkv, hd).transpose(1, 0, 2)
        q = rms(q, w(p + "attn_q_norm.weight"))
        k = rms(k, w(p + "attn_k_norm.weight"))
        base = 10000.0 if sliding else theta
        inv = 1.0 / base ** (np.arange(0, hd, 2, dtype=np.float64) / hd)
        ang = np.concatenate([pos[:, None] * inv[None, :]] * 2, axis=-1)
        q = q * np.cos(ang) + rotate_half(q) * np.sin(ang)
        k = k * np.cos(ang) + rotate_half(k) * np.sin(ang)
        if l in KEEP_LAYERS:
            keys[l], values[l] = k, v
        i_idx, j_idx = np.arange(T)[:, None], np.arange(T)[None, :]
        masked = (j_idx > i_idx) | (sliding & (j_idx <= i_idx - window))
        g = nh // nkv
        out = np.empty((nh, T, hd))
        for head in range(nh):
            s = q[head] @ k[head // g].T / math.sqrt(hd)  # query_pre_attn_scalar = head_dim
            s = np.where(masked, -np.inf, s)
            s = np.exp(s - s.max(-1, keepdims=True))
            out[head] = (s / s.sum(-1, keepdims=True)) @ v[head // g]
        o = out.transpose(1, 0, 2).reshape(T, nh * hd) @ w(p + "attn_output.weight").T
        x = x + rms(o, w(p + "post_attention_norm.weight"))
        h = rms(x, w(p + "ffn_norm.weight"))
        gate, up = h @ w(p + "ffn_gate.weight").T, h @ w(p + "ffn_up.weight").T
        gelu = 0.5 * gate * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (gate + 0.044715 * gate ** 3)))
        x = x + rms((gelu * up) @ w(p + "ffn_down.weight").T, w(p + "post_ffw_norm.weight"))
    logits = rms(x[-1], w("output_norm.weight")) @ emb.T
    top = np.argsort(-logits)[:TOP_K]
    lse = float(np.log(np.exp(logits - logits.max()).sum()) + logits.max())
    with open(os.path.join(HERE, "golden", "gemma3_270m_forward.json"), "w") as f:
        json.dump({"producer": "tests/model/make_gemma3_golden.py: numpy float64, gguf %s dequantization"
                   % getattr(gguf, "__version__", "?"),
                   "model_sha256": hashlib.sha256(open(path, "rb").read()).hexdigest(),
                   "prompt": PROMPT, "prompt_ids": ids, "top_ids": top.tolist(),
                   "top_logits": [float(logits[i]) for i in top], "logsumexp": lse, "layers": KEEP_LAYERS,
                   "keys": {str(l): np.round(keys[l], 6).reshape(-1).tolist() for l in KEEP_LAYERS},
                   "values": {str(l): np.round(values[l], 6).reshape(-1).tolist() for l in KEEP_LAYERS}}, f)
    print("prompt ids", ids, "top-5", top[:5].tolist(), [sp.id_to_piece(int(i)) for i in top[:5]])


if __name__ == "__main__":
    main()
