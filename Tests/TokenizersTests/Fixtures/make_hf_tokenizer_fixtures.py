#!/usr/bin/env python3
"""Tokenizer fixtures as real model files have them, made with Hugging Face `tokenizers`,
`sentencepiece` and `transformers` (the oracles), on the 240 hard strings of make_bpe_fixture.py.

    pip install tokenizers sentencepiece protobuf transformers
    python3 Tests/TokenizersTests/Fixtures/make_hf_tokenizer_fixtures.py

Writes, here, a folder per tokenizer (tokenizer.json + tokenizer_config.json) and <name>-cases.json
({"cases": [{"text", "ids", "decoded"}]}: ids without special tokens added, decoded with them kept):
  qwen2-style/    byte-level BPE behind an NFC normalizer and a Split pre-tokenizer with Qwen2's regex
                  (behaviour Isolated) then ByteLevel(use_regex=false); continuing_subword_prefix "";
                  ChatML special tokens
  sp/             a SentencePiece BPE with byte fallback (<0x..> tokens) converted by transformers
                  (Metaspace pre-tokenizer, Replace/ByteFallback/Fuse/Strip decoder), add_bos_token
  sp-legacy/      the same model in the older conversion: Prepend("▁") + Replace(" ", "▁") normalizer
  smollm2-style/  GPT-2-style byte-level BPE after a Digits(individual_digits) pre-tokenizer, with
                  continuing_subword_prefix "" and 21 byte symbols missing from the vocabulary, as
                  SmolLM2's file has them (HF drops characters it cannot map)
"""
import json, os, sys

import sentencepiece as spm
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_bpe_fixture import cases, corpus_line  # noqa: E402  (the same hard strings and corpus)

QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
CASES = cases()   # first, so that the corpora drawn after do not change them
# And a very long one: a SentencePiece-style pipeline gives BPE the whole segment as one word.
CASES.append(" ".join(["the model learns to add numbers café 日本語 🙂 12 + 34 = 46 don't"] * 300))


def corpus(n=4000):
    return [corpus_line() for _ in range(n)]


def write(name, tok_json, config, oracle):
    folder = os.path.join(HERE, name)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "tokenizer.json"), "w") as f:
        json.dump(tok_json, f, ensure_ascii=False, indent=1)
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump(config, f, ensure_ascii=False, indent=1)
    tok = Tokenizer.from_file(os.path.join(folder, "tokenizer.json")) if oracle is None else oracle
    out = []
    for text in CASES:
        ids = tok.encode(text, add_special_tokens=False).ids
        out.append({"text": text, "ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False)})
    with open(os.path.join(HERE, f"{name}-cases.json"), "w") as f:
        json.dump({"tokenizers": __import__("tokenizers").__version__, "cases": out}, f, ensure_ascii=False)
    print(f"{name}: vocab {tok.get_vocab_size()}, {len(out)} cases")


def byte_level_bpe(pre_tokenizer, normalizer=None):
    """A byte-level BPE trained on the corpus, ChatML specials, with the empty-string prefix and
    suffix real files carry."""
    tok = Tokenizer(models.BPE())
    if normalizer:
        tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=900, min_frequency=2, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
                                  special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    tok.train_from_iterator(corpus(), trainer=trainer)
    j = json.loads(tok.to_str())
    j["model"]["continuing_subword_prefix"] = ""
    j["model"]["end_of_word_suffix"] = ""
    return j


def qwen2_style():
    j = byte_level_bpe(pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
                                                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]), normalizers.NFC())
    write("qwen2-style", j, {"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "chat_template": CHATML,
                             "add_bos_token": False, "tokenizer_class": "Qwen2Tokenizer"}, None)


def sentencepiece_pair():
    import shutil, tempfile
    from transformers import AutoTokenizer
    work = tempfile.mkdtemp()
    path = os.path.join(work, "corpus.txt")
    with open(path, "w") as f:
        f.write("\n".join(corpus()))
    prefix = os.path.join(work, "sp")
    spm.SentencePieceTrainer.train(input=path, model_prefix=prefix, vocab_size=700, model_type="bpe", byte_fallback=True,
                                   character_coverage=0.995, bos_id=1, eos_id=2, unk_id=0, pad_id=-1, add_dummy_prefix=True,
                                   remove_extra_whitespaces=False, normalization_rule_name="identity", minloglevel=2)
    # As users convert a Llama-style tokenizer.model: transformers builds the tokenizer.json.
    config = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "add_bos_token": True, "add_eos_token": False,
              "tokenizer_class": "LlamaTokenizer", "legacy": True}
    shutil.copy(prefix + ".model", os.path.join(work, "tokenizer.model"))
    with open(os.path.join(work, "tokenizer_config.json"), "w") as f:
        json.dump(config, f)
    j = json.loads(AutoTokenizer.from_pretrained(work).backend_tokenizer.to_str())
    write("sp", j, config, None)
    legacy = json.loads(json.dumps(j))
    legacy["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u2581"},
                                                               {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]}
    legacy["pre_tokenizer"] = None
    write("sp-legacy", legacy, config, None)
    shutil.rmtree(work)


def smollm2_style():
    j = byte_level_bpe(pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]))
    # Drop 21 byte symbols (the C0 controls 0x01–0x08, 0x0E–0x1A: never in the corpus) and every merge using them.
    alphabet = {b: c for b, c in zip(range(256), bytes_to_unicode())}
    missing = {alphabet[b] for b in list(range(1, 9)) + list(range(14, 27))}
    assert len(missing) == 21
    j["model"]["vocab"] = {t: i for t, i in j["model"]["vocab"].items() if not any(ch in missing for ch in t)}
    j["model"]["merges"] = [m for m in j["model"]["merges"] if not any(ch in missing for ch in "".join(m))]
    write("smollm2-style", j, {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "add_bos_token": False}, None)


def bytes_to_unicode():
    printable = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    codes, extra = printable[:], 0
    for b in range(256):
        if b not in printable:
            printable.append(b); codes.append(256 + extra); extra += 1
    table = dict(zip(printable, codes))
    return [chr(table[b]) for b in range(256)]


if __name__ == "__main__":
    qwen2_style()
    sentencepiece_pair()
    smollm2_style()
