#!/usr/bin/env python3
"""PEFT LoRA fixtures for GPT-2 and Llama, both directions (pip install torch transformers peft).

    python3 Tests/ModelsTests/Fixtures/make_peft_fixture.py [--rlhf .build/release/rlhf]

Writes, beside this script, on top of the gpt2-tiny base made by make_gpt2_fixture.py:
  peft-tiny/                 adapter_config.json + adapter_model.safetensors from PEFT's save_pretrained
                             (LoRA r=4 on c_attn, c_proj, c_fc; A and B random so the adapter matters)
  peft-tiny-logits.json      {"sequences", "logits"} of base + adapter computed by PEFT
and on the llama-tiny base of make_llama_fixture.py:
  peft-llama-tiny/           LoRA r=4 on "all-linear" (q/k/v/o, gate/up/down projections)
  peft-llama-tiny-logits.json
With --rlhf: `rlhf init --adapter-out` writes a random adapter for each base, PEFT loads it, and its
log-probs must equal `rlhf score --adapter` (max abs error printed; fails above 1e-4).
"""
import argparse, json, os, subprocess, sys, tempfile

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM

from rlhf_oracle import max_logprob_error

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = {  # adapter fixture → (base, target_modules, fan_in_fan_out)
    "peft-tiny": ("gpt2-tiny", ["c_attn", "c_proj", "c_fc"], True),
    "peft-llama-tiny": ("llama-tiny", "all-linear", False),
}


def make_fixture(name):
    base, targets, fan_in_fan_out = CASES[name]
    torch.manual_seed(99)
    model = AutoModelForCausalLM.from_pretrained(os.path.join(HERE, base), dtype=torch.float32).eval()
    config = LoraConfig(r=4, lora_alpha=8, target_modules=targets, fan_in_fan_out=fan_in_fan_out,
                        lora_dropout=0.0, bias="none", task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for parameter, p in peft_model.named_parameters():
            if "lora_" in parameter:
                p.normal_(0, 0.3)
    out = os.path.join(HERE, name)
    peft_model.save_pretrained(out)
    # Name the base relatively, so the committed fixture does not carry this machine's path.
    cfg_path = os.path.join(out, "adapter_config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg["base_model_name_or_path"] = base
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
    g = torch.Generator().manual_seed(11)
    sequences = [torch.randint(0, 97, (n,), generator=g).tolist() for n in (5, 17)]
    with torch.no_grad():
        logits = [peft_model(torch.tensor([s])).logits[0].reshape(-1).tolist() for s in sequences]
    with open(os.path.join(HERE, f"{name}-logits.json"), "w") as f:
        json.dump({"peft": __import__("peft").__version__, "sequences": sequences, "logits": logits}, f)
    print(f"wrote {out} and {name}-logits.json")


def check_ours(rlhf, name):
    base = os.path.join(HERE, CASES[name][0])
    with tempfile.TemporaryDirectory() as tmp:
        adapter = os.path.join(tmp, "adapter")
        subprocess.run([rlhf, "init", "--model", base, "--adapter-out", adapter, "--adapter-rank", "3", "--seed", "4"], check=True)
        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), adapter).eval()
        g = torch.Generator().manual_seed(5)
        sequences = [torch.randint(0, 97, (n,), generator=g).tolist() for n in (3, 12, 30)]
        worst = max_logprob_error(model, rlhf, base, sequences, tmp, adapter=adapter)
        print(f"PEFT loads an adapter rlhf wrote for {CASES[name][0]}: max |Δ log-prob| = {worst:.3g}")
        if worst > 1e-4:
            sys.exit("FAILED: PEFT and rlhf disagree on our adapter")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rlhf", help="path to a built rlhf binary: also check PEFT loads our adapters")
    args = parser.parse_args()
    for name in CASES:
        make_fixture(name)
        if args.rlhf:
            check_ours(args.rlhf, name)
