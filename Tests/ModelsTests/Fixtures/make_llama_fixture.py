#!/usr/bin/env python3
"""Golden fixtures for the Llama-family trunk, made with Hugging Face transformers (the oracle).

    pip install torch==2.13.0+cpu transformers safetensors
    python3 Tests/ModelsTests/Fixtures/make_llama_fixture.py [--rlhf .build/release/rlhf]

Writes, beside this script, three small random models with every parameter randomised and the
logits transformers computes for four sequences:
  llama-tiny/    LlamaForCausalLM: grouped-query attention (4 heads / 2 KV heads), untied head,
                 llama3 rope scaling; F32, one file
  qwen2-tiny/    Qwen2ForCausalLM: q/k/v biases, tied head, head_dim 16 ≠ hidden/heads, 1 KV head;
                 saved in BF16 (the logits are those of the BF16 weights computed in F32)
  mistral-tiny/  MistralForCausalLM: F16 weights in shards (model.safetensors.index.json)
  <name>-logits.json  {"sequences": [[ids]], "logits": [[T*V floats]]}
With --rlhf, also checks the other direction: `rlhf init --family llama` writes a folder that
transformers loads, with log-probs equal to `rlhf score` (the script fails above 1e-4).
"""
import argparse, json, os, sys, tempfile

import torch
from transformers import (AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM,
                          Qwen2Config, Qwen2ForCausalLM)

from rlhf_oracle import max_logprob_error

HERE = os.path.dirname(os.path.abspath(__file__))
VOCAB = 97


def randomise(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.1 * torch.randn_like(p))
            else:
                p.normal_(0, 0.2)


def write(name, model, dtype=torch.float32, shard=None):
    out = os.path.join(HERE, name)
    model.to(dtype).save_pretrained(out, safe_serialization=True, **({"max_shard_size": shard} if shard else {}))
    reference = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    g = torch.Generator().manual_seed(7)
    sequences = [torch.randint(0, VOCAB, (n,), generator=g).tolist() for n in (1, 7, 16, 32)]
    with torch.no_grad():
        logits = [reference(torch.tensor([s])).logits[0].reshape(-1).tolist() for s in sequences]
    with open(os.path.join(HERE, f"{name}-logits.json"), "w") as f:
        json.dump({"transformers": __import__("transformers").__version__, "torch": torch.__version__,
                   "sequences": sequences, "logits": logits}, f)
    print(f"wrote {out} and {name}-logits.json")


def make_fixtures():
    torch.manual_seed(1234)
    common = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                  max_position_embeddings=64, rms_norm_eps=1e-5, bos_token_id=95, eos_token_id=96, attention_dropout=0.0)
    llama = LlamaConfig(**common, num_key_value_heads=2, tie_word_embeddings=False, rope_theta=500000.0,
                        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                      "high_freq_factor": 4.0, "original_max_position_embeddings": 16})
    model = LlamaForCausalLM(llama).eval(); randomise(model); write("llama-tiny", model)
    qwen = Qwen2Config(**common, num_key_value_heads=1, head_dim=16, tie_word_embeddings=True, rope_theta=1000000.0)
    model = Qwen2ForCausalLM(qwen).eval(); randomise(model); write("qwen2-tiny", model, dtype=torch.bfloat16)
    mistral = MistralConfig(**common, num_key_value_heads=2, tie_word_embeddings=False, sliding_window=None)
    model = MistralForCausalLM(mistral).eval(); randomise(model); write("mistral-tiny", model, dtype=torch.float16, shard="20KB")


def check_ours(rlhf):
    import subprocess
    with tempfile.TemporaryDirectory() as tmp:
        folder = os.path.join(tmp, "ours")
        subprocess.run([rlhf, "init", "--family", "llama", "--preset", "tiny", "--seed", "5", "--out", folder], check=True)
        g = torch.Generator().manual_seed(3)
        sequences = [torch.randint(0, 258, (n,), generator=g).tolist() for n in (2, 9, 40, 128)]
        # Our folder exactly as rlhf wrote it (init's N(0, 0.02) weights, unit norms)...
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
        written = max_logprob_error(model, rlhf, folder, sequences, tmp)
        print(f"transformers loads the folder rlhf wrote: max |Δ log-prob| = {written:.3g}")
        # ...and with every tensor randomised, so that each one matters.
        randomise(model)
        model.save_pretrained(folder, safe_serialization=True)
        worst = max(written, max_logprob_error(model, rlhf, folder, sequences, tmp))
        print(f"transformers and rlhf on a randomised Llama folder: max |Δ log-prob| = {worst:.3g}")
        if worst > 1e-4:
            sys.exit("FAILED: transformers and rlhf disagree on a Llama folder")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rlhf", help="path to a built rlhf binary: also check transformers loads our folders")
    args = parser.parse_args()
    make_fixtures()
    if args.rlhf:
        check_ours(args.rlhf)
