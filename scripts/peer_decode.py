#!/usr/bin/env python3
"""PyTorch + transformers decoding speed on the smollm2-135m shape (random weights), for the
side-by-side with `rlhf bench model --preset llama/smollm2-135m`: batches of 8 and 32 prompts of 16
random tokens, 64 sampled tokens each (temperature 1, no EOS), best of two runs, 2 threads.
Uses ../shared/peer/peer_common.py for the shape and thread setting.

    python3 scripts/peer_decode.py
"""
import time, json, sys, torch
sys.path.insert(0, __import__("os").path.join(__import__("os").path.dirname(__import__("os").path.abspath(__file__)), "..", "..", "shared", "peer"))
import peer_common as pc
from transformers import LlamaConfig, AutoModelForCausalLM
pc.set_threads(2)
torch.manual_seed(0)
model = AutoModelForCausalLM.from_config(LlamaConfig(**pc.LLAMA_PRESETS["smollm2-135m"]), attn_implementation="sdpa").eval()
out = {}
for batch in (8, 32):
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(0, 49152, (batch, 16), generator=g)
    best = 1e9
    for _ in range(2):
        t = time.perf_counter()
        with torch.no_grad():
            model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=1.0, top_k=0, max_new_tokens=64, min_new_tokens=64, pad_token_id=0, eos_token_id=None)
        best = min(best, time.perf_counter() - t)
    out[f"decode_tokens_per_s_b{batch}"] = round(batch * 64 / best, 1)
out["peak_rss_mib"] = pc.rss_mib() if hasattr(pc, "rss_mib") else None
out["torch"] = torch.__version__
print(json.dumps(out))
