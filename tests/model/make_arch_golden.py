#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Golden references for the architectures beyond Llama (Qwen3, Gemma 2,
Gemma 3, Phi-3): a float64 numpy forward pass written here from the
Hugging Face transformers definitions of each model (modeling_qwen3,
modeling_gemma2, modeling_gemma3, modeling_phi3), independent of KVScope's
C++ code, run on tiny models whose weights both sides generate from the same
portable formula (tests/model/tiny_model.h: portable_uniform).

For each architecture it records the dimensions (the C++ test builds its tiny
model from them), the token ids, the last position's logits and every
layer's keys (after RoPE, rotate_half channel order) and values.

Conventions where KVScope's cache differs from transformers' tensors:
- Phi-3 LongRoPE multiplies cos and sin by an attention factor, so
  transformers' keys are the rotated keys times that factor. KVScope caches
  the pure rotation (and applies the factor's square to the scores), so the
  keys recorded here are transformers' keys divided by the factor.

  python3 -m venv ~/.cache/kvscope-models-venv
  ~/.cache/kvscope-models-venv/bin/pip install numpy
  ~/.cache/kvscope-models-venv/bin/python tests/model/make_arch_golden.py
Writes tests/model/golden/architectures.json.
"""
import json
import math
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
TOKENS = [72, 101, 258, 259, 32, 116, 257, 33, 10, 261, 50, 51]
VOCAB = 262

# The tiny models (TinyDims fields). Windows shorter than the 12 tokens and
# small soft-caps so that every feature changes the result.
CONFIGS = {
    "qwen3": dict(arch="qwen3", layers=2, hidden=64, heads=4, kv_heads=2, head_dim=32, intermediate=96,
                  rope_theta=1e6, rms_eps=1e-6, tied=False),
    "gemma2": dict(arch="gemma2", layers=2, hidden=64, heads=4, kv_heads=2, head_dim=16, intermediate=96,
                   rope_theta=10000.0, rms_eps=1e-6, tied=True, attn_softcap=2.0, final_softcap=3.0,
                   query_pre_attn_scalar=16.0, sliding_window=4),
    "gemma3": dict(arch="gemma3", layers=6, hidden=64, heads=4, kv_heads=1, head_dim=32, intermediate=96,
                   rope_theta=1e6, rms_eps=1e-6, tied=True, query_pre_attn_scalar=32.0, sliding_window=4,
                   rope_local_theta=10000.0, rope_linear_factor=8.0),
    "phi3": dict(arch="phi3", layers=2, hidden=64, heads=4, kv_heads=2, head_dim=16, intermediate=96,
                 rope_theta=10000.0, rms_eps=1e-5, tied=False, sliding_window=8, context_length=256,
                 original_context=64),
}

M64 = (1 << 64) - 1


def portable_uniform(name, n):
    h = 0xcbf29ce484222325
    for c in name.encode():
        h = ((h ^ c) * 0x100000001b3) & M64
    z = (np.arange(n, dtype=np.uint64) + np.uint64(h) + np.uint64(0x9E3779B97F4A7C15))
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(40)).astype(np.float32) * np.float32(1.0 / 16777216.0) - np.float32(0.5)


def weight(name, shape, kind="matrix"):
    u = portable_uniform(name, int(np.prod(shape)))
    if kind == "norm":
        v = np.float32(1.0) + np.float32(0.2) * u
    elif kind == "rope":
        v = np.float32(1.0) + np.float32(4.0) * (u + np.float32(0.5))
    else:
        v = np.float32(0.7) * u
    return v.astype(np.float64).reshape(shape)


def rms(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def rotate_half(x):
    h = x.shape[-1] // 2
    return np.concatenate([-x[..., h:], x[..., :h]], axis=-1)


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def silu(x):
    return x / (1.0 + np.exp(-x))


def forward(c):
    a = c["arch"]
    L, H, nh, nkv, hd, I = c["layers"], c["hidden"], c["heads"], c["kv_heads"], c["head_dim"], c["intermediate"]
    eps = c["rms_eps"]
    gemma = a in ("gemma2", "gemma3")
    ids = np.array(TOKENS)
    T = len(ids)
    pos = np.arange(T, dtype=np.float64)
    emb = weight("token_embd", (VOCAB, H))
    x = emb[ids]
    if gemma:
        x = x * math.sqrt(H)  # Gemma*Model: hidden_states * hidden_size**0.5
    window = c.get("sliding_window", 0)
    keys, values = [], []
    for l in range(L):
        p = f"blk.{l}."
        # Which layers slide: Gemma 2 even layers, Gemma 3 all but every 6th, Phi-3 all.
        if a == "gemma2":
            sliding = window > 0 and l % 2 == 0
        elif a == "gemma3":
            sliding = window > 0 and (l + 1) % 6 != 0
        else:
            sliding = window > 0
        h = rms(x, weight(p + "attn_norm", (H,), "norm"), eps)
        q = (h @ weight(p + "attn_q", (nh * hd, H)).T).reshape(T, nh, hd).transpose(1, 0, 2)
        k = (h @ weight(p + "attn_k", (nkv * hd, H)).T).reshape(T, nkv, hd).transpose(1, 0, 2)
        v = (h @ weight(p + "attn_v", (nkv * hd, H)).T).reshape(T, nkv, hd).transpose(1, 0, 2)
        if a in ("qwen3", "gemma3"):
            q = rms(q, weight(p + "attn_q_norm", (hd,), "norm"), eps)
            k = rms(k, weight(p + "attn_k_norm", (hd,), "norm"), eps)
        # Rotary embedding (default / linear / longrope as transformers' rope init functions).
        base = c["rope_theta"]
        if a == "gemma3" and sliding:
            base = c["rope_local_theta"]
        inv = 1.0 / base ** (np.arange(0, hd, 2, dtype=np.float64) / hd)
        attn_factor = 1.0
        if a == "gemma3" and not sliding and c.get("rope_linear_factor"):
            inv = inv / c["rope_linear_factor"]
        if a == "phi3" and c.get("original_context"):
            inv = inv / weight("rope_factors_short", (hd // 2,), "rope")
            factor = c["context_length"] / c["original_context"]
            attn_factor = math.sqrt(1 + math.log(factor) / math.log(c["original_context"]))
        ang = pos[:, None] * inv[None, :]
        emb_ang = np.concatenate([ang, ang], axis=-1)
        cos, sin = np.cos(emb_ang) * attn_factor, np.sin(emb_ang) * attn_factor
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        keys.append(k / attn_factor)
        values.append(v)
        scale = c["query_pre_attn_scalar"] ** -0.5 if gemma else hd ** -0.5
        g = nh // nkv
        i_idx, j_idx = np.arange(T)[:, None], np.arange(T)[None, :]
        masked = j_idx > i_idx
        if sliding:
            masked = masked | (j_idx <= i_idx - window)
        out = np.empty((nh, T, hd))
        for head in range(nh):
            s = q[head] @ k[head // g].T * scale
            if c.get("attn_softcap"):
                s = np.tanh(s / c["attn_softcap"]) * c["attn_softcap"]
            s = np.where(masked, -np.inf, s)
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            out[head] = s @ v[head // g]
        o = out.transpose(1, 0, 2).reshape(T, nh * hd) @ weight(p + "attn_output", (H, nh * hd)).T
        if gemma:
            o = rms(o, weight(p + "post_attention_norm", (H,), "norm"), eps)
        x = x + o
        h = rms(x, weight(p + "ffn_norm", (H,), "norm"), eps)
        gate = h @ weight(p + "ffn_gate", (I, H)).T
        up = h @ weight(p + "ffn_up", (I, H)).T
        m = ((gelu_tanh(gate) if gemma else silu(gate)) * up) @ weight(p + "ffn_down", (H, I)).T
        if gemma:
            m = rms(m, weight(p + "post_ffw_norm", (H,), "norm"), eps)
        x = x + m
    out_w = emb if c["tied"] else weight("output", (VOCAB, H))
    logits = rms(x[-1], weight("output_norm", (H,), "norm"), eps) @ out_w.T
    if c.get("final_softcap"):
        logits = np.tanh(logits / c["final_softcap"]) * c["final_softcap"]
    return logits, keys, values


def main():
    out = {"producer": "tests/model/make_arch_golden.py (numpy %s, float64)" % np.__version__,
           "tokens": TOKENS, "models": {}}
    for name, c in CONFIGS.items():
        logits, keys, values = forward(c)
        out["models"][name] = {
            "dims": c,
            "logits": [round(float(v), 7) for v in logits],
            "keys": [[round(float(v), 7) for v in k.reshape(-1)] for k in keys],
            "values": [[round(float(v), 7) for v in v_.reshape(-1)] for v_ in values],
        }
        print(name, "argmax", int(np.argmax(logits)), "max |logit|", float(np.abs(logits).max()))
    with open(os.path.join(HERE, "golden", "architectures.json"), "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
