#!/usr/bin/env python3
"""PyTorch + transformers decoding speed on a preset shape (random weights), for the side-by-side
with `rlhf bench model`: batches of 8, 32 and 128 prompts of 16 random tokens, 64 sampled tokens each
(temperature 1, no EOS), best of two runs. Uses ../shared/peer/peer_common.py for the shapes and
the thread setting.

    python3 scripts/peer_decode.py --preset smollm2-135m --threads 2
"""
import argparse, json, os, sys, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "peer"))
import peer_common as pc  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="smollm2-135m")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import torch
    pc.set_threads(args.threads)
    torch.manual_seed(0)
    model, _ = pc.build_or_load_lm(args.preset, None)
    model.eval()
    vocab = model.config.vocab_size
    out = {"bench": "decode", "preset": args.preset, "threads": args.threads, "torch": torch.__version__}
    for batch in (8, 32, 128):
        g = torch.Generator().manual_seed(3)
        ids = torch.randint(0, vocab, (batch, 16), generator=g)
        best = float("inf")
        for _ in range(2):
            t = time.perf_counter()
            with torch.no_grad():
                model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=1.0, top_k=0, max_new_tokens=64,
                               min_new_tokens=64, pad_token_id=0, eos_token_id=None)
            best = min(best, time.perf_counter() - t)
        out[f"decode_tokens_per_s_b{batch}"] = round(batch * 64 / best, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
