#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Tokenizer golden data from independent reference implementations.

Two small vocabularies are trained on the repository's text contexts
(datasets/contexts) so the tests need no downloaded model, each in the form
its model family ships it:
- qwen3_tokenizer.json: a Qwen2/Qwen3-style byte-level BPE (the Qwen2
  pre-tokenizer regex, ByteLevel without regex, NFC normalizer, ChatML special
  tokens) trained and run by Hugging Face `tokenizers`;
- spm_bpe.json: a SentencePiece BPE model with byte fallback (the Llama 2 /
  Phi-3 and Gemma tokenizer family) trained and run by Google's
  `sentencepiece`, exported as GGUF stores it (pieces, scores, token types).
  Phi-3 / Llama 2 encode with a dummy-prefix space, Gemma without.

tokenizer_golden.json holds, for varied texts (non-ASCII, emoji, CJK, digits,
tabs, newlines and runs of spaces), the ids each reference produces.

When the Gemma 3 270M GGUF is present (in ~/.cache/kvscope/models, see
scripts/fetch-extra-models.sh), its real vocabulary is also run through
`sentencepiece` (a ModelProto built from the GGUF's pieces, scores and types)
and the ids saved to gemma3_tokens.json for a test labelled "model".

  python3 -m venv ~/.cache/kvscope-models-venv
  ~/.cache/kvscope-models-venv/bin/pip install tokenizers sentencepiece gguf numpy
  ~/.cache/kvscope-models-venv/bin/python tests/model/make_tokenizer_golden.py
"""
import glob
import io
import json
import os

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as sp_pb2
import tokenizers
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(HERE, "golden", "tokenizers")
GEMMA = os.path.join(os.environ.get("KVSCOPE_MODEL_DIR", os.path.expanduser("~/.cache/kvscope/models")),
                     "gemma-3-270m-q4_k_m.gguf")

QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")

TEXTS = [
    "Hello, world! It's 2024-06-30 and the price is $1,234.56 (≈ €1.1k).",
    "Ünïcödé: naïve café, 日本語のテキスト, Ελληνικά, русский, emoji 🚀🔥👍🏽.",
    "def f(x):\n    return x**2  # squares\n\tindented\twith tabs\n\n\n",
    "   leading spaces, trailing spaces   \n  two  spaces   three    four     five",
    "Numbers: 3.14159 1000000 007 and contractions: we'll, I'm, they've, don't, SHE'S.",
    "In the beginning God created the heaven and the earth. And the earth was without form, and void.",
    "Licensed under the Apache License, Version 2.0 (the \"License\"); you may not use this file.",
    "<|im_start|>user\nWhat's 12*34?<|im_end|>\n<|im_start|>assistant\n408<|im_end|>",
    "mixed_CASE snake_case camelCase\u00a0nbsp\u2003em-space zero\u200bwidth",
    "",
    " ",
    "\n",
    "a" * 300 + " " + "ab" * 150,
]


def corpus_lines():
    lines = []
    for path in sorted(glob.glob(os.path.join(ROOT, "datasets", "contexts", "*.txt"))):
        with open(path, encoding="utf-8") as f:
            lines.extend(f.read().splitlines())
    return [l for l in lines if l.strip()]


def qwen3_style(lines):
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1500, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    tok.train_from_iterator(lines, trainer)
    return tok


def spm_model(lines):
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=buf, model_type="bpe", vocab_size=1000,
        byte_fallback=True, character_coverage=1.0, split_digits=True, allow_whitespace_only_pieces=True,
        normalization_rule_name="identity", remove_extra_whitespaces=False, add_dummy_prefix=True,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, num_threads=1, minloglevel=2)
    return buf.getvalue()


def with_dummy_prefix(model_bytes, on):
    proto = sp_pb2.ModelProto()
    proto.ParseFromString(model_bytes)
    proto.normalizer_spec.add_dummy_prefix = on
    return spm.SentencePieceProcessor(model_proto=proto.SerializeToString())


def piece_type(sp, i):
    if sp.is_unknown(i):
        return 2
    if sp.is_control(i):
        return 3
    if sp.is_byte(i):
        return 6
    if sp.is_unused(i):
        return 5
    return 1


def gemma_processor():
    """sentencepiece on the Gemma 3 GGUF's vocabulary (pieces, scores, types)."""
    import gguf
    r = gguf.GGUFReader(GEMMA)

    def field(key):
        f = r.fields[key]
        if f.types[1] == gguf.GGUFValueType.STRING:
            return [bytes(f.parts[i]).decode("utf-8") for i in f.data]
        return [f.parts[i][0].item() for i in f.data]

    tokens, scores, types = field("tokenizer.ggml.tokens"), field("tokenizer.ggml.scores"), field(
        "tokenizer.ggml.token_type")
    proto = sp_pb2.ModelProto()
    proto.trainer_spec.model_type = sp_pb2.TrainerSpec.BPE
    proto.trainer_spec.byte_fallback = True
    proto.normalizer_spec.name = "identity"
    proto.normalizer_spec.add_dummy_prefix = False
    proto.normalizer_spec.remove_extra_whitespaces = False
    proto.normalizer_spec.escape_whitespaces = True
    kinds = {1: sp_pb2.ModelProto.SentencePiece.NORMAL, 2: sp_pb2.ModelProto.SentencePiece.UNKNOWN,
             3: sp_pb2.ModelProto.SentencePiece.CONTROL, 4: sp_pb2.ModelProto.SentencePiece.USER_DEFINED,
             5: sp_pb2.ModelProto.SentencePiece.UNUSED, 6: sp_pb2.ModelProto.SentencePiece.BYTE}
    for t, s, ty in zip(tokens, scores, types):
        p = proto.pieces.add()
        # llama.cpp's converter writes user-defined pieces with plain spaces
        # ("pre-normalized", so they match raw text); in the SentencePiece
        # model they are "▁" runs, matched after spaces are escaped.
        p.piece = t.replace(" ", "\u2581") if ty == 4 else t
        p.score, p.type = s, kinds[ty]
    return spm.SentencePieceProcessor(model_proto=proto.SerializeToString())


def gemma_reference():
    sp = gemma_processor()
    return [sp.encode(t) for t in TEXTS]


def main():
    os.makedirs(OUT, exist_ok=True)
    lines = corpus_lines()
    qwen = qwen3_style(lines)
    qwen.save(os.path.join(OUT, "qwen3_tokenizer.json"))
    model = spm_model(lines)
    phi3, gemma = with_dummy_prefix(model, True), with_dummy_prefix(model, False)
    n = phi3.get_piece_size()
    with open(os.path.join(OUT, "spm_bpe.json"), "w", encoding="utf-8") as f:
        json.dump({"tokens": [phi3.id_to_piece(i) for i in range(n)],
                   "scores": [phi3.get_score(i) for i in range(n)],
                   "types": [piece_type(phi3, i) for i in range(n)],
                   "bos_id": phi3.bos_id(), "eos_id": phi3.eos_id(), "unk_id": phi3.unk_id()},
                  f, ensure_ascii=False)
    golden = {"producer": "tokenizers %s, sentencepiece %s (tests/model/make_tokenizer_golden.py)"
              % (tokenizers.__version__, spm.__version__),
              "texts": TEXTS,
              "qwen3": [qwen.encode(t).ids for t in TEXTS],
              "spm_dummy_prefix": [phi3.encode(t) for t in TEXTS],
              "spm_no_dummy_prefix": [gemma.encode(t) for t in TEXTS]}
    with open(os.path.join(OUT, "tokenizer_golden.json"), "w", encoding="utf-8") as f:
        json.dump(golden, f, ensure_ascii=False, indent=0)
    if os.path.exists(GEMMA):
        with open(os.path.join(OUT, "gemma3_tokens.json"), "w", encoding="utf-8") as f:
            json.dump({"producer": "sentencepiece %s on the vocabulary of gemma-3-270m-q4_k_m.gguf" % spm.__version__,
                       "texts": TEXTS, "ids": gemma_reference()}, f, ensure_ascii=False, indent=0)
    print("qwen3 vocab", qwen.get_vocab_size(), "spm vocab", n)


if __name__ == "__main__":
    main()
