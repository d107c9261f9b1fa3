#!/usr/bin/env python3
"""GGUF fixtures, made with llama.cpp's gguf-py (the file format and its dequantisation) and
transformers (the model oracle, loading GGUF with `gguf_file=`).

    pip install torch==2.13.0+cpu transformers gguf accelerate
    python3 Tests/ModelsTests/Fixtures/make_gguf_fixtures.py

Writes, beside this script:
  gguf-types.gguf           one 2 × 256 tensor of every supported type (F32, F16, BF16, Q8_0, Q4_0, Q4_1,
                            Q4_K, Q5_K, Q6_K) and metadata of every value type, nested arrays included
  gguf-types.json           {"tensors": {name: {"type", "shape", "values"}}}: gguf-py's dequantised values
  llama-gguf.gguf           a random LlamaForCausalLM (hidden 256, GQA 4/2, untied head) written as
                            llama.cpp's converter writes it: Q/K rows permuted, tensors of mixed types
  qwen2-gguf.gguf           a random Qwen2ForCausalLM (q/k/v biases, tied head): NEOX rope, nothing permuted
  <name>-logprobs.json      {"sequences": [[ids]], "logprobs": [[…]]}: transformers' log-probs for the GGUF
and, in Tests/TokenizersTests/Fixtures, tokenizer-only GGUF files converted from the tokenizer.json
fixtures there (gpt2 model with pre "gpt-2", "smollm", "qwen2"; a llama/SentencePiece model with
scores), which the tests hold to the same <name>-cases.json as the tokenizer.json they came from.

With --rlhf .build/release/rlhf, also checks our writer: `rlhf export` writes mistral-tiny (F32, a
`llama` file with permuted Q/K), qwen2-gguf (F16) and llama-gguf (Q8_0), their tokenizers carried over;
gguf-py must read each, and transformers' log-probs for each file must equal `rlhf score` on it
within 1e-4 (the script fails otherwise). gguf-export.json records each file's sha256, which
GGUFWriterTests checks a fresh export against: the bytes transformers accepted are the bytes we write.

With --real models/SmolLM2-135M-Instruct.Q4_1.gguf (bash scripts/get-model.sh smollm2-135m-instruct),
also Tests/EndToEndTests/Fixtures/smollm2-gguf.json: transformers' log-probs of the real model for a
chat prompt and two texts, and its greedy reply (ids and text) to "What is the capital of France?".
"""
import json, os, sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q

HERE = os.path.dirname(os.path.abspath(__file__))
TOKENIZERS = os.path.join(HERE, "..", "..", "TokenizersTests", "Fixtures")
rng = np.random.default_rng(20261202)


def k_quant_blocks(qtype, n_blocks, scale):
    """Random K-quant blocks (gguf-py has no K-quant quantiser) with a chosen block scale d."""
    size = gguf.GGML_QUANT_SIZES[qtype][1]
    blocks = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)
    d = np.frombuffer(np.float16(scale).tobytes(), dtype=np.uint8)
    if qtype == Q.Q6_K:
        blocks[:, 208:210] = d
    else:
        blocks[:, 0:2] = d
        blocks[:, 2:4] = np.frombuffer(np.float16(scale / 2).tobytes(), dtype=np.uint8)
    return blocks


def encode(values, qtype, k_scale=1e-3):
    """values [rows, 256·k] as the bytes (or array) gguf-py writes for qtype."""
    if qtype == Q.F32:
        return values.astype(np.float32)
    if qtype == Q.F16:
        return values.astype(np.float16)
    if qtype in (Q.Q4_K, Q.Q5_K, Q.Q6_K):
        rows, cols = values.shape
        blocks = k_quant_blocks(qtype, rows * cols // 256, k_scale)
        return blocks.reshape(rows, -1)
    return gguf.quants.quantize(values.astype(np.float32), qtype)


def add(writer, name, values, qtype, **kw):
    data = encode(values, qtype, **kw)
    writer.add_tensor(name, data, raw_dtype=qtype if qtype not in (Q.F32, Q.F16) else None)
    return data


def dequantized(data, qtype):
    if qtype in (Q.F32, Q.F16):
        return data.astype(np.float32)
    return gguf.quants.dequantize(data, qtype).astype(np.float32)


def make_types():
    path = os.path.join(HERE, "gguf-types.gguf")
    w = gguf.GGUFWriter(path, "llama")
    w.add_uint8("test.u8", 200); w.add_int8("test.i8", -100); w.add_uint16("test.u16", 60000); w.add_int16("test.i16", -30000)
    w.add_uint32("test.u32", 4000000000); w.add_int32("test.i32", -2000000000); w.add_float32("test.f32", 0.1)
    w.add_bool("test.bool", True); w.add_string("test.string", "héllo 🙂"); w.add_uint64("test.u64", 2**63 + 5)
    w.add_int64("test.i64", -(2**62)); w.add_float64("test.f64", 1e-300)
    w.add_array("test.strings", ["a", "", "ü"]); w.add_array("test.ints", [1, -2, 3]); w.add_array("test.nested", [[1, 2], [3]])
    record = {}
    for qtype in (Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q4_K, Q.Q5_K, Q.Q6_K):
        values = rng.normal(0, 1, size=(2, 256)).astype(np.float32)
        data = add(w, "t." + qtype.name, values, qtype)
        record["t." + qtype.name] = {"type": qtype.name, "shape": [2, 256],
                                     "values": [float(x) for x in dequantized(data, qtype).reshape(-1)]}
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
    with open(os.path.join(HERE, "gguf-types.json"), "w") as f:
        json.dump({"tensors": record}, f)


def hf_tokenizer(name):
    """tokens (by id), token types, merges, special ids of a tokenizer.json fixture."""
    j = json.load(open(os.path.join(TOKENIZERS, name, "tokenizer.json")))
    vocab = dict(j["model"]["vocab"])
    special = {}
    for t in j["added_tokens"]:
        vocab[t["content"]] = t["id"]
        special[t["id"]] = t["special"]
    tokens = [None] * (max(vocab.values()) + 1)
    for k, v in vocab.items():
        tokens[v] = k
    # Ids the fixture leaves unassigned become unused placeholders, as converters fill holes.
    types = [3 if special.get(i) else 4 if i in special else 5 if tokens[i] is None else 1 for i in range(len(tokens))]
    tokens = [t if t is not None else f"[PAD{i}]" for i, t in enumerate(tokens)]
    merges = [m if isinstance(m, str) else " ".join(m) for m in j["model"].get("merges", [])]
    return tokens, types, merges


def add_gpt2_tokenizer(w, name, pre, chat=None):
    tokens, types, merges = hf_tokenizer(name)
    w.add_tokenizer_model("gpt2"); w.add_tokenizer_pre(pre)
    w.add_token_list(tokens); w.add_token_types(types); w.add_token_merges(merges)
    w.add_bos_token_id(1); w.add_eos_token_id(2); w.add_add_bos_token(False)
    if chat:
        w.add_chat_template(chat)
    return len(tokens)


def permute(weights, n_head):
    """llama.cpp's LlamaModel.permute: interleave the two rotary halves of each head."""
    return weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)


def make_model(name, arch, tokenizer, pre):
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM
    path = os.path.join(HERE, f"{name}.gguf")
    w = gguf.GGUFWriter(path, arch)
    vocab = add_gpt2_tokenizer(w, tokenizer, pre)
    common = dict(vocab_size=vocab, hidden_size=256, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5, rope_theta=10000.0, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(7)
    if arch == "llama":
        model = LlamaForCausalLM(LlamaConfig(**common, tie_word_embeddings=False))
    else:
        model = Qwen2ForCausalLM(Qwen2Config(**common, tie_word_embeddings=True))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * (0.05 if p.dim() > 1 else 0.2) + (1.0 if p.dim() == 1 and p.shape[0] == 256 else 0.0))
    w.add_context_length(64); w.add_embedding_length(256); w.add_block_count(2); w.add_feed_forward_length(256)
    w.add_head_count(4); w.add_head_count_kv(2); w.add_layer_norm_rms_eps(1e-5); w.add_rope_freq_base(10000.0)
    w.add_rope_dimension_count(64); w.add_vocab_size(vocab)
    sd = {k: v.float().numpy() for k, v in model.state_dict().items()}
    # Types as llama.cpp's mixes have them, and every type used somewhere.
    layer_types = [
        {"attn_q": Q.Q4_K, "attn_k": Q.Q5_K, "attn_v": Q.Q6_K, "attn_output": Q.Q4_0, "ffn_gate": Q.Q4_1, "ffn_up": Q.BF16, "ffn_down": Q.F16},
        {"attn_q": Q.Q8_0, "attn_k": Q.F32, "attn_v": Q.Q4_1, "attn_output": Q.Q6_K, "ffn_gate": Q.Q5_K, "ffn_up": Q.Q4_K, "ffn_down": Q.Q4_0},
    ]
    hf = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
          "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}
    add(w, "token_embd.weight", sd["model.embed_tokens.weight"], Q.Q8_0)
    for l in range(2):
        add(w, f"blk.{l}.attn_norm.weight", sd[f"model.layers.{l}.input_layernorm.weight"], Q.F32)
        add(w, f"blk.{l}.ffn_norm.weight", sd[f"model.layers.{l}.post_attention_layernorm.weight"], Q.F32)
        for g, h in hf.items():
            weight = sd[f"model.layers.{l}.{h}.weight"]
            if arch == "llama" and g in ("attn_q", "attn_k"):
                weight = permute(weight, 4 if g == "attn_q" else 2)
            add(w, f"blk.{l}.{g}.weight", weight, layer_types[l][g], k_scale=2e-4 if layer_types[l][g] == Q.Q6_K else 1e-3)
            if f"model.layers.{l}.{h}.bias" in sd:
                add(w, f"blk.{l}.{g}.bias", sd[f"model.layers.{l}.{h}.bias"], Q.F32)
    add(w, "output_norm.weight", sd["model.norm.weight"], Q.F32)
    if arch == "llama":
        add(w, "output.weight", sd["lm_head.weight"], Q.Q6_K, k_scale=2e-4)
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()

    oracle = AutoModelForCausalLM.from_pretrained(HERE, gguf_file=os.path.basename(path), dtype=torch.float32)
    g = torch.Generator().manual_seed(3)
    sequences = [torch.randint(0, vocab, (n,), generator=g).tolist() for n in (5, 17, 40)]
    logprobs = []
    with torch.no_grad():
        for s in sequences:
            lp = torch.log_softmax(oracle(torch.tensor([s])).logits[0].double(), -1)
            logprobs.append([lp[i, s[i + 1]].item() for i in range(len(s) - 1)])
    with open(os.path.join(HERE, f"{name}-logprobs.json"), "w") as f:
        json.dump({"sequences": sequences, "logprobs": logprobs}, f)


def make_tokenizers():
    from transformers import AutoTokenizer
    specs = [("smollm2-style", "gpt2", "smollm"), ("qwen2-style", "gpt2", "qwen2"), ("bpe", "gpt2", "gpt-2"), ("sp", "llama", None)]
    for name, model, pre in specs:
        path = os.path.join(TOKENIZERS, f"{name}.gguf")
        w = gguf.GGUFWriter(path, "llama")
        if model == "gpt2":
            add_gpt2_tokenizer(w, name, pre, chat="{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}")
        else:
            tokens, types, _ = hf_tokenizer(name)
            types = [6 if t.startswith("<0x") and t.endswith(">") and len(t) == 6 else ty for t, ty in zip(tokens, types)]
            # SentencePiece BPE scores: pieces later in the vocabulary merge later.
            w.add_tokenizer_model("llama"); w.add_token_list(tokens); w.add_token_types(types)
            w.add_token_scores([0.0 if ty != 1 else -float(i) for i, ty in enumerate(types)])
            w.add_bos_token_id(1); w.add_eos_token_id(2); w.add_unk_token_id(0); w.add_add_bos_token(True)
        w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
        # The tests hold the GGUF tokenizers to the tokenizer.json cases (llama.cpp's pre-tokenizer
        # names stand for those pipelines); transformers' own GGUF conversion is printed for
        # comparison: it ignores the "smollm" digit split and differs on a few qwen2 cases.
        cases = json.load(open(os.path.join(TOKENIZERS, f"{name}-cases.json")))["cases"]
        tok = AutoTokenizer.from_pretrained(TOKENIZERS, gguf_file=os.path.basename(path))
        agree = sum(tok.encode(c["text"], add_special_tokens=False) == c["ids"] for c in cases)
        print(f"{name}: transformers' GGUF tokenizer agrees with tokenizer.json on {agree}/{len(cases)} cases", file=sys.stderr)


def make_real(path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    folder, name = os.path.split(os.path.abspath(path))
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    question = "What is the capital of France?"
    prompt = tok.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True, tokenize=False)
    prompt_ids = tok.encode(prompt, add_special_tokens=False)
    texts = [prompt, "The quick brown fox jumps over the lazy dog.", "def add(a, b):\n    return a + b\n"]
    sequences, logprobs = [], []
    with torch.no_grad():
        for t in texts:
            ids = tok.encode(t, add_special_tokens=False)
            lp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), -1)
            sequences.append(ids)
            logprobs.append([lp[i, ids[i + 1]].item() for i in range(len(ids) - 1)])
        reply = model.generate(torch.tensor([prompt_ids]), max_new_tokens=24, do_sample=False, eos_token_id=2)[0, len(prompt_ids):].tolist()
    out = os.path.join(HERE, "..", "..", "EndToEndTests", "Fixtures", "smollm2-gguf.json")
    with open(out, "w") as f:
        json.dump({"question": question, "prompt": prompt, "prompt_ids": prompt_ids, "sequences": sequences, "logprobs": logprobs,
                   "reply_ids": reply, "reply": tok.decode(reply, skip_special_tokens=True)}, f)
    print("reply:", tok.decode(reply, skip_special_tokens=True), file=sys.stderr)


EXPORTS = [  # (name, source, type, tokenizer)
    ("mistral-tiny-f32", "mistral-tiny", "f32", "none"),
    ("qwen2-gguf-f16", "qwen2-gguf.gguf", "f16", None),   # (qwen2-tiny: transformers ignores key_length ≠ hidden/heads)
    ("llama-gguf-q8_0", "llama-gguf.gguf", "q8_0", None),
]


def check_exports(rlhf):
    import hashlib, subprocess, tempfile
    import torch
    from transformers import AutoModelForCausalLM
    record = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, source, qtype, tokenizer in EXPORTS:
            out = os.path.join(tmp, name + ".gguf")
            args = [rlhf, "export", "--model", os.path.join(HERE, source), "--format", "gguf", "--type", qtype, "--out", out]
            subprocess.run(args + (["--tokenizer", tokenizer] if tokenizer else []), check=True, capture_output=True)
            reader = gguf.GGUFReader(out)
            assert len(reader.tensors) > 0 and all(len(t.data) > 0 for t in reader.tensors), name
            model = AutoModelForCausalLM.from_pretrained(tmp, gguf_file=name + ".gguf", dtype=torch.float32)
            vocab = model.config.vocab_size
            g = torch.Generator().manual_seed(5)
            sequences = [torch.randint(0, vocab, (n,), generator=g).tolist() for n in (6, 20)]
            with open(os.path.join(tmp, "seq.jsonl"), "w") as f:
                for s_ in sequences:
                    f.write(json.dumps({"tokens": s_}) + "\n")
            ours = subprocess.run([rlhf, "score", "--model", out, "--input", os.path.join(tmp, "seq.jsonl")], check=True,
                                  capture_output=True, text=True).stdout.strip().split("\n")
            worst = 0.0
            with torch.no_grad():
                for s_, line in zip(sequences, ours):
                    lp = torch.log_softmax(model(torch.tensor([s_])).logits[0].double(), -1)
                    theirs = [lp[i, s_[i + 1]].item() for i in range(len(s_) - 1)]
                    worst = max(worst, max(abs(a - b) for a, b in zip(theirs, json.loads(line)["logprobs"])))
            assert worst < 1e-4, f"{name}: transformers and rlhf score differ by {worst}"
            digest = hashlib.sha256(open(out, "rb").read()).hexdigest()
            record[name] = {"source": source, "type": qtype, "tokenizer": tokenizer, "sha256": digest, "max_logprob_error": worst}
            print(f"{name}: gguf-py reads it, transformers agrees with rlhf score within {worst:.2e}", file=sys.stderr)
    with open(os.path.join(HERE, "gguf-export.json"), "w") as f:
        json.dump(record, f, indent=1)


if __name__ == "__main__":
    if "--rlhf" in sys.argv:
        check_exports(sys.argv[sys.argv.index("--rlhf") + 1])
        sys.exit(0)
    if "--real" in sys.argv:
        make_real(sys.argv[sys.argv.index("--real") + 1])
        sys.exit(0)
    make_types()
    make_model("llama-gguf", "llama", "smollm2-style", "smollm")
    make_model("qwen2-gguf", "qwen2", "qwen2-style", "qwen2")
    make_tokenizers()
