"""Shared by the fixture scripts: score sequences with `rlhf score` and compare with a torch model."""
import json, os, subprocess

import torch


def max_logprob_error(model, rlhf, folder, sequences, tmp, adapter=None):
    """max |log p_torch − log p_rlhf| over tokens[1:] of every sequence."""
    path = os.path.join(tmp, "in.jsonl")
    with open(path, "w") as f:
        for s in sequences:
            f.write(json.dumps({"tokens": s}) + "\n")
    command = [rlhf, "score", "--model", folder, "--input", path] + (["--adapter", adapter] if adapter else [])
    lines = subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip().split("\n")
    worst = 0.0
    with torch.no_grad():
        for s, line in zip(sequences, lines):
            lp = torch.log_softmax(model(torch.tensor([s])).logits[0].double(), -1)
            theirs = lp[torch.arange(len(s) - 1), torch.tensor(s[1:])]
            ours = torch.tensor(json.loads(line)["logprobs"], dtype=torch.float64)
            worst = max(worst, (theirs - ours).abs().max().item())
    return worst
