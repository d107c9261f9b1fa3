#!/usr/bin/env python3
"""Golden fixtures for the GPT-2 trunk, made with Hugging Face transformers (the oracle).

    pip install torch==2.13.0+cpu transformers safetensors
    python3 Tests/ModelsTests/Fixtures/make_gpt2_fixture.py [--rlhf .build/release/rlhf]

Writes, beside this script:
  gpt2-tiny/                 config.json + model.safetensors from GPT2LMHeadModel.save_pretrained
  gpt2-tiny-logits.json      {"sequences": [[ids]], "logits": [[T*V floats]]} from transformers
With --rlhf, also checks the other direction: `rlhf init` writes a model folder, transformers
loads it, and its log-probs must equal `rlhf score` on the same sequences (max abs error printed,
the script fails above 1e-4).
"""
import argparse, json, os, subprocess, sys, tempfile

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from rlhf_oracle import max_logprob_error

HERE = os.path.dirname(os.path.abspath(__file__))


def make_fixture():
    torch.manual_seed(1234)
    config = GPT2Config(vocab_size=97, n_positions=32, n_embd=32, n_layer=2, n_head=4,
                        activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                        bos_token_id=95, eos_token_id=96)
    model = GPT2LMHeadModel(config).eval()
    # Default init leaves biases at 0 and LayerNorm at (1, 0): randomise everything so that every
    # tensor, bias and norm parameter influences the logits.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name.endswith("ln_f.weight"):
                p.copy_(1 + 0.1 * torch.randn_like(p))
            else:
                p.normal_(0, 0.2)
    out = os.path.join(HERE, "gpt2-tiny")
    model.save_pretrained(out, safe_serialization=True)
    g = torch.Generator().manual_seed(7)
    sequences = [torch.randint(0, 97, (n,), generator=g).tolist() for n in (1, 7, 16, 32)]
    logits = []
    with torch.no_grad():
        for s in sequences:
            logits.append(model(torch.tensor([s])).logits[0].reshape(-1).tolist())
    with open(os.path.join(HERE, "gpt2-tiny-logits.json"), "w") as f:
        json.dump({"transformers": __import__("transformers").__version__, "torch": torch.__version__,
                   "sequences": sequences, "logits": logits}, f)
    print(f"wrote {out} and gpt2-tiny-logits.json ({sum(map(len, sequences))} positions)")


def check_ours(rlhf):
    with tempfile.TemporaryDirectory() as tmp:
        folder = os.path.join(tmp, "ours")
        subprocess.run([rlhf, "init", "--preset", "tiny", "--seed", "5", "--out", folder], check=True)
        model = GPT2LMHeadModel.from_pretrained(folder).eval()
        g = torch.Generator().manual_seed(3)
        sequences = [torch.randint(0, 258, (n,), generator=g).tolist() for n in (2, 9, 40, 128)]
        worst = max_logprob_error(model, rlhf, folder, sequences, tmp)
        print(f"transformers loads a folder written by rlhf: max |Δ log-prob| = {worst:.3g}")
        if worst > 1e-4:
            sys.exit("FAILED: transformers and rlhf disagree on our checkpoint")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rlhf", help="path to a built rlhf binary: also check transformers loads our folders")
    args = parser.parse_args()
    make_fixture()
    if args.rlhf:
        check_ours(args.rlhf)
