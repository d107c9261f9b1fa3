#!/usr/bin/env python3
"""PEFT LoRA fixtures for GPT-2, both directions (pip install torch transformers peft).

    python3 Tests/ModelsTests/Fixtures/make_peft_fixture.py [--rlhf .build/release/rlhf]

Writes, beside this script, on top of the gpt2-tiny base made by make_gpt2_fixture.py:
  peft-tiny/                 adapter_config.json + adapter_model.safetensors from PEFT's save_pretrained
                             (LoRA r=4 on c_attn, c_proj, c_fc; A and B random so the adapter matters)
  peft-tiny-logits.json      {"sequences", "logits"} of base + adapter computed by PEFT
With --rlhf: `rlhf init --adapter-out` writes a random adapter for gpt2-tiny, PEFT loads it, and its
log-probs must equal `rlhf score --adapter` (max abs error printed; fails above 1e-4).
"""
import argparse, json, os, subprocess, sys, tempfile

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import GPT2LMHeadModel

from rlhf_oracle import max_logprob_error

HERE = os.path.dirname(os.path.abspath(__file__))
BASE = os.path.join(HERE, "gpt2-tiny")


def make_fixture():
    torch.manual_seed(99)
    model = GPT2LMHeadModel.from_pretrained(BASE).eval()
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn", "c_proj", "c_fc"], fan_in_fan_out=True,
                        lora_dropout=0.0, bias="none", task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.normal_(0, 0.3)
    out = os.path.join(HERE, "peft-tiny")
    peft_model.save_pretrained(out)
    # Name the base relatively, so the committed fixture does not carry this machine's path.
    cfg_path = os.path.join(out, "adapter_config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg["base_model_name_or_path"] = "gpt2-tiny"
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
    g = torch.Generator().manual_seed(11)
    sequences = [torch.randint(0, 97, (n,), generator=g).tolist() for n in (5, 17)]
    with torch.no_grad():
        logits = [peft_model(torch.tensor([s])).logits[0].reshape(-1).tolist() for s in sequences]
    with open(os.path.join(HERE, "peft-tiny-logits.json"), "w") as f:
        json.dump({"peft": __import__("peft").__version__, "sequences": sequences, "logits": logits}, f)
    print(f"wrote {out} and peft-tiny-logits.json")


def check_ours(rlhf):
    with tempfile.TemporaryDirectory() as tmp:
        adapter = os.path.join(tmp, "adapter")
        subprocess.run([rlhf, "init", "--model", BASE, "--adapter-out", adapter, "--adapter-rank", "3", "--seed", "4"], check=True)
        model = PeftModel.from_pretrained(GPT2LMHeadModel.from_pretrained(BASE), adapter).eval()
        g = torch.Generator().manual_seed(5)
        sequences = [torch.randint(0, 97, (n,), generator=g).tolist() for n in (3, 12, 30)]
        worst = max_logprob_error(model, rlhf, BASE, sequences, tmp, adapter=adapter)
        print(f"PEFT loads an adapter written by rlhf: max |Δ log-prob| = {worst:.3g}")
        if worst > 1e-4:
            sys.exit("FAILED: PEFT and rlhf disagree on our adapter")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rlhf", help="path to a built rlhf binary: also check PEFT loads our adapters")
    args = parser.parse_args()
    make_fixture()
    if args.rlhf:
        check_ours(args.rlhf)
