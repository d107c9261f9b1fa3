#!/usr/bin/env python3
"""Tokenizer fixture: a byte-level BPE tokenizer.json trained with Hugging Face `tokenizers`
(GPT-2 pre-tokenisation regex, byte-to-unicode alphabet, merges, one special and one added
token) and the ids `tokenizers` gives for 200+ strings chosen to be hard: Unicode scripts,
combining marks, emoji (ZWJ sequences, flags, skin tones), whitespace runs, digits, contractions,
special tokens inside text.

    pip install tokenizers
    python3 Tests/TokenizersTests/Fixtures/make_bpe_fixture.py

Writes bpe/tokenizer.json, bpe/tokenizer_config.json and bpe-cases.json ({"cases": [{"text", "ids", "decoded"}]}) here.
"""
import json, os, random

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers, AddedToken

HERE = os.path.dirname(os.path.abspath(__file__))
rng = random.Random(20261121)

WORDS = ("the model learns to add numbers and carries digits when the sum of two digits is ten or more "
         "reward policy value critic reference gradient token attention layer norm prompt completion "
         "question answer correct wrong it's they're we've I'm you'll he'd don't can't won't "
         "café naïve résumé straße Ελληνικά русский 日本語 中文 한국어 العربية עברית हिन्दी ไทย "
         "emoji 🙂 👍🏽 👩‍💻 🇫🇷 ✨ 🚀").split()


def corpus_line():
    words = [rng.choice(WORDS) for _ in range(rng.randint(3, 14))]
    if rng.random() < 0.5:
        words.insert(rng.randint(0, len(words)), f"{rng.randint(0, 99)} + {rng.randint(0, 99)} = {rng.randint(0, 198)}")
    sep = rng.choice([" ", " ", " ", "  ", "\n", "\t", ", ", ". "])
    return sep.join(words)


def train():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=800, min_frequency=2, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([corpus_line() for _ in range(4000)], trainer=trainer)
    tok.add_tokens([AddedToken("<|assistant|>", special=False)])
    return tok


def cases():
    fixed = [
        "", " ", "  ", "\n", "\n\n", "\t", " \t \n ", "a", "A", "hello world", "Hello World!", "  leading", "trailing  ",
        "a  b   c    d", "line1\nline2\r\nline3", "tabs\tand\t\tmore", "x \n y", "end with space ", "nbsp\u00a0here",
        "ideographic\u3000space", "it's", "they're", "we've", "I'm", "you'll", "he'd", "IT'S", "It'S", "don't", "'s",
        "''", "'sa", "rock'n'roll", "0", "7", "42", "12345678901234567890", "3.14159", "1,000,000", "a+b=c", "12 + 34 = 46",
        "99 + 1 = 100", "٣٤٥", "Ⅻ", "½ ¾", "x²", "café", "cafe\u0301", "naïve", "straße", "Ελληνικά", "русский язык", "日本語のテキスト",
        "中文文本", "한국어", "العربية", "עברית", "हिन्दी", "ไทย", "🙂", "👍🏽", "👩‍💻", "🇫🇷", "✨🚀", "family: 👨‍👩‍👧‍👦",
        "mixed 日本 and English", "<|endoftext|>", "a<|endoftext|>b", "<|endoftext|><|endoftext|>", " <|endoftext|> ",
        "<|assistant|>", "user: hi<|assistant|>hello", "<|endoftext", "|>", "<<||>>", "!!!", "...", "?!", "(parens)", "[brackets]",
        "{braces}", "#hash", "@at", "$100", "50%", "a_b_c", "snake_case_name", "CamelCaseName", "URL: https://example.com/a?b=c",
        "email@example.com", "C:\\path\\to", "\"quoted\"", "«guillemets»", "—dash–", "…", "\u200b", "\u200dzwj", "\ufeffbom",
        "\x00nul", "\x7f", "control\x01\x02", "   \n\n   \t", "a\u0308", "\U0001F600\U0001F601", "𝕄𝕒𝕥𝕙", "ǅ", "ﬁ ligature",
    ]
    generated = []
    pieces = WORDS + ["  ", "\n", "\t", "'s", "'re", "123", "4567", "!?", "<|endoftext|>", "<|assistant|>", " ", "-", "é", "🙂"]
    while len(fixed) + len(generated) < 240:
        generated.append("".join(rng.choice(pieces) + rng.choice(["", " ", "  ", "\n"]) for _ in range(rng.randint(1, 10))))
    return fixed + generated


if __name__ == "__main__":
    tok = train()
    os.makedirs(os.path.join(HERE, "bpe"), exist_ok=True)
    tok.save(os.path.join(HERE, "bpe", "tokenizer.json"))
    # Special tokens as a GPT-2 folder names them (our runs start every sequence with BOS).
    with open(os.path.join(HERE, "bpe", "tokenizer_config.json"), "w") as f:
        f.write('{"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "add_bos_token": true, "tokenizer_class": "GPT2Tokenizer"}\n')
    out = []
    for text in cases():
        ids = tok.encode(text).ids
        out.append({"text": text, "ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False)})
    with open(os.path.join(HERE, "bpe-cases.json"), "w") as f:
        json.dump({"tokenizers": __import__("tokenizers").__version__, "cases": out}, f, ensure_ascii=False)
    print(f"vocab {tok.get_vocab_size()}, {len(out)} cases")
