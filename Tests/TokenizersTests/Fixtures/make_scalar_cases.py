#!/usr/bin/env python3
"""Cases where Unicode scalars and Swift's Characters disagree, for the tokenizer fixtures whose
pre-tokenizers cut text (SentencePiece's Metaspace, Digits, Split): a space, a digit or the ▁
marker followed by combining marks, which Swift joins into one Character and `tokenizers` treats
as separate scalars. Made with Hugging Face `tokenizers` (the oracle) from the committed fixtures.

    pip install tokenizers
    python3 Tests/TokenizersTests/Fixtures/make_scalar_cases.py

Writes scalar-cases.json: {"<fixture>": [{"text", "ids"}]} (ids without special tokens).
"""
import json, os

from tokenizers import Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
TEXTS = [
    "a \u0301b",                # a space before a combining acute accent
    " \u0301",                  # the same at the start
    "x  \u0308\u0301 y",        # two marks after the second of two spaces
    "1\u0301 2\u0303",          # digits carrying marks
    "\u2581\u0301 caf\u00e9",   # the marker itself before a mark
    "e\u0301 \u20dd 9\u20e3",   # enclosing marks (keycap)
]

cases = {}
for name in ["bpe", "sp", "sp-legacy", "smollm2-style", "qwen2-style"]:
    tok = Tokenizer.from_file(os.path.join(HERE, name, "tokenizer.json"))
    cases[name] = [{"text": t, "ids": tok.encode(t, add_special_tokens=False).ids} for t in TEXTS]
with open(os.path.join(HERE, "scalar-cases.json"), "w") as f:
    json.dump({"tokenizers": __import__("tokenizers").__version__, "cases": cases}, f, ensure_ascii=False)
print({k: len(v) for k, v in cases.items()})
