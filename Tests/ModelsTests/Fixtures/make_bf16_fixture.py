#!/usr/bin/env python3
"""bf16 oracle for precision bf16: transformers under CPU autocast (torch.autocast("cpu", torch.bfloat16)).

    pip install torch==2.13.0+cpu transformers safetensors
    python3 Tests/ModelsTests/Fixtures/make_bf16_fixture.py

Reads the llama-tiny and qwen2-tiny folders and the sequences of their -logits.json (make_llama_fixture.py)
and writes <name>-bf16-logprobs.json: for each sequence, log p(token[t+1] | token[..t]) computed in fp32 and
under autocast bf16 (matmul inputs and outputs in bf16, softmax in fp32), both from the same fp32 weights.
"""
import json, os

import torch
from transformers import AutoModelForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))


def next_token_logprobs(model, sequence):
    logits = model(torch.tensor([sequence])).logits[0].float()
    lp = torch.log_softmax(logits, -1)
    return lp[torch.arange(len(sequence) - 1), torch.tensor(sequence[1:])].tolist()


def main():
    for name in ("llama-tiny", "qwen2-tiny"):
        model = AutoModelForCausalLM.from_pretrained(os.path.join(HERE, name), dtype=torch.float32).eval()
        with open(os.path.join(HERE, f"{name}-logits.json")) as f:
            sequences = [s for s in json.load(f)["sequences"] if len(s) > 1]
        with torch.no_grad():
            fp32 = [next_token_logprobs(model, s) for s in sequences]
            with torch.autocast("cpu", dtype=torch.bfloat16):
                bf16 = [next_token_logprobs(model, s) for s in sequences]
        worst = max(abs(a - b) for x, y in zip(fp32, bf16) for a, b in zip(x, y))
        with open(os.path.join(HERE, f"{name}-bf16-logprobs.json"), "w") as f:
            json.dump({"transformers": __import__("transformers").__version__, "torch": torch.__version__,
                       "sequences": sequences, "fp32": fp32, "autocast_bf16": bf16}, f)
        print(f"{name}: max |fp32 − autocast bf16| = {worst:.4g}")


if __name__ == "__main__":
    main()
