#!/usr/bin/env bash
# rlhf bench next to the PyTorch baselines of ../shared/peer, on this machine, minutes apart, and
# one table: preset × threads × {train tokens/s, decode tokens/s (batch 8, 32, 128), peak RSS} for both
# with the ratio, then PPO iteration seconds and DPO pairs/s at the tiny preset. Where the CPU has
# AVX512-BF16: our precision bf16 beside PyTorch's bf16 autocast, and one GRPO iteration on
# SmolLM2-135M (hydra LoRA rank 16, 8 prompts × 8 samples × 64 tokens) beside TRL's GRPOTrainer
# (../shared/peer/bench_grpo.py, PEFT LoRA rank 16 on every linear projection, 64 tokens forced).
# Prints the CPU.
#
#   bash scripts/bench-vs-pytorch.sh                     # presets tiny small llama/smollm2-135m, threads 1 2
#   PRESETS="small" THREADS="2" PY=~/.cache/rlhf-peer/venv/bin/python bash scripts/bench-vs-pytorch.sh
#
# PY is a python with torch and transformers (../shared/peer/setup_venv.sh makes one); OPENBLAS
# settings are left as the environment has them (the CPU line says which kernels ran). The GRPO row
# needs models/SmolLM2-135M-Instruct.Q4_1.gguf (scripts/get-model.sh), written out as a Hugging
# Face folder for TRL with `rlhf export`; GRPO=0 skips it.
set -euo pipefail
cd "$(dirname "$0")/.."
PEER=${PEER:-../shared/peer}
PY=${PY:-python3}
PRESETS=${PRESETS:-"tiny small llama/smollm2-135m"}
THREADS=${THREADS:-"1 2"}
swift build -c release >/dev/null
out=$(mktemp -d)
peer_name() { case "$1" in llama/*) echo "${1#llama/}" ;; gpt2) echo gpt2-124m ;; *) echo "$1" ;; esac; }
.build/release/rlhf bench kernels --preset tiny 2>/dev/null | grep '"case":"cpu"' > "$out/cpu.json" || true
for t in $THREADS; do
  for p in $PRESETS; do
    f=$(echo "$p" | tr / _)
    OPENBLAS_NUM_THREADS=$t .build/release/rlhf bench model --preset "$p" --seconds 3 2>/dev/null | tail -1 > "$out/rlhf-model-$t-$f.json"
    "$PY" "$PEER/bench_sft.py" --preset "$(peer_name "$p")" --threads "$t" --steps 3 --warmup 1 2>/dev/null | tail -1 > "$out/torch-sft-$t-$f.json"
    "$PY" scripts/peer_decode.py --preset "$(peer_name "$p")" --threads "$t" 2>/dev/null | tail -1 > "$out/torch-decode-$t-$f.json"
    # bf16 autocast, the fastest thing a PyTorch user could reach for, where the CPU has AVX512-BF16.
    if grep -q avx512_bf16 /proc/cpuinfo; then
      "$PY" "$PEER/bench_sft.py" --preset "$(peer_name "$p")" --threads "$t" --steps 3 --warmup 1 --bf16 2>/dev/null | tail -1 > "$out/torch-sft-bf16-$t-$f.json"
      OPENBLAS_NUM_THREADS=$t .build/release/rlhf bench model --preset "$p" --precision bf16 --seconds 3 2>/dev/null | tail -1 > "$out/rlhf-model-bf16-$t-$f.json"
    fi
  done
  OPENBLAS_NUM_THREADS=$t .build/release/rlhf bench ppo --preset tiny 2>/dev/null | grep '"layout":"hydra"' | tail -1 > "$out/rlhf-ppo-$t.json" || true
  "$PY" "$PEER/bench_ppo.py" --preset tiny --threads "$t" --iters 3 --warmup 1 2>/dev/null | tail -1 > "$out/torch-ppo-$t.json" || true
  OPENBLAS_NUM_THREADS=$t .build/release/rlhf bench dpo 2>/dev/null | tail -1 > "$out/rlhf-dpo-$t.json" || true
  "$PY" "$PEER/bench_dpo.py" --preset tiny --threads "$t" --impl torch 2>/dev/null | tail -1 > "$out/torch-dpo-$t.json" || true
  gguf=models/SmolLM2-135M-Instruct.Q4_1.gguf
  if [ "${GRPO:-1}" = 1 ] && [ -f "$gguf" ]; then
    [ -d "$out/smollm2-hf" ] || .build/release/rlhf export --model "$gguf" --format hf --out "$out/smollm2-hf" >/dev/null 2>&1
    OPENBLAS_NUM_THREADS=$t .build/release/rlhf bench ppo --preset llama/smollm2-135m --layout hydra --estimator grpo \
      --prompts 8 --samples 8 --response-tokens 64 --prompt-tokens 40 --minibatch 8 --rank 16 --kl-coef 0.04 \
      --precision auto --iterations 1 2>/dev/null | tail -1 > "$out/rlhf-grpo-$t.json" || true
    "$PY" "$PEER/bench_grpo.py" --model-dir "$out/smollm2-hf" --threads "$t" --prompts 8 --samples 8 \
      --max-new-tokens 64 --min-new-tokens 64 --steps 2 --warmup 1 2>/dev/null | tail -1 > "$out/trl-grpo-$t.json" || true
  fi
done
python3 - "$out" "$PRESETS" "$THREADS" <<'PY'
import json, sys, os
out, presets, threads = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
def load(name):
    try:
        with open(os.path.join(out, name)) as f: return json.loads(f.read().strip() or "{}")
    except Exception: return {}
cpu = load("cpu.json")
print(f"CPU: {cpu.get('model', '?')}; OpenBLAS core {cpu.get('core', '?')} ({cpu.get('why', '')})")
def ratio(a, b): return f"{a / b:.2f}×" if a and b else "–"
print("| preset | threads | train tok/s rlhf | PyTorch | ratio | PyTorch bf16 autocast | ratio | decode b8 rlhf | PyTorch | ratio | decode b32 rlhf | PyTorch | ratio | decode b128 rlhf | PyTorch | ratio | peak RSS rlhf / PyTorch MiB |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for t in threads:
    for p in presets:
        f = p.replace("/", "_")
        r, s, d = load(f"rlhf-model-{t}-{f}.json"), load(f"torch-sft-{t}-{f}.json"), load(f"torch-decode-{t}-{f}.json")
        rt, st, bt = r.get("train_tokens_per_s"), s.get("tokens_per_s"), load(f"torch-sft-bf16-{t}-{f}.json").get("tokens_per_s")
        r8, d8, r32, d32 = r.get("decode_tokens_per_s_b8"), d.get("decode_tokens_per_s_b8"), r.get("decode_tokens_per_s_b32"), d.get("decode_tokens_per_s_b32")
        r128, d128 = r.get("decode_tokens_per_s_b128"), d.get("decode_tokens_per_s_b128")
        print(f"| {p} | {t} | {rt} | {st and round(st, 1)} | {ratio(rt, st)} | {bt and round(bt, 1)} | {ratio(rt, bt)} | {r8} | {d8} | {ratio(r8, d8)} | {r32} | {d32} | {ratio(r32, d32)} | {r128} | {d128} | {ratio(r128, d128)} | {r.get('peak_rss_mib')} / {s.get('peak_rss_loop_mib')} |")
print()
print("| preset | threads | train tok/s rlhf bf16 | PyTorch fp32 | ratio | PyTorch bf16 autocast | ratio |")
print("|---|---|---|---|---|---|---|")
for t in threads:
    for p in presets:
        f = p.replace("/", "_")
        rb = load(f"rlhf-model-bf16-{t}-{f}.json").get("train_tokens_per_s")
        st, bt = load(f"torch-sft-{t}-{f}.json").get("tokens_per_s"), load(f"torch-sft-bf16-{t}-{f}.json").get("tokens_per_s")
        if rb: print(f"| {p} | {t} | {rb} | {st and round(st, 1)} | {ratio(rb, st)} | {bt and round(bt, 1)} | {ratio(rb, bt)} |")
print()
print("| threads | GRPO iteration, SmolLM2-135M, 8 × 8 × 64: rlhf completion tok/s (precision) | TRL GRPOTrainer + PEFT | ratio |")
print("|---|---|---|---|")
for t in threads:
    r, g = load(f"rlhf-grpo-{t}.json"), load(f"trl-grpo-{t}.json")
    lengths = g.get("mean_completion_len_all") or []
    trl = g.get("completions_per_s") * (sum(lengths) / len(lengths)) if g.get("completions_per_s") and lengths else None
    rt = r.get("completion_tokens_per_s")
    print(f"| {t} | {rt} ({r.get('precision')}) | {trl and round(trl, 2)} | {ratio(rt, trl)} |")
print()
print("| threads | PPO iteration s, tiny hydra: rlhf | PyTorch loop | speed-up | DPO pairs/s, tiny: rlhf | PyTorch loop | ratio |")
print("|---|---|---|---|---|---|---|")
for t in threads:
    rp, tp, rd, td = load(f"rlhf-ppo-{t}.json"), load(f"torch-ppo-{t}.json"), load(f"rlhf-dpo-{t}.json"), load(f"torch-dpo-{t}.json")
    ri, ti = rp.get("iter_s"), (tp.get("median_s") or {}).get("iteration")
    rdp, tdp = rd.get("pairs_per_s"), td.get("pairs_per_s")
    print(f"| {t} | {ri} | {ti and round(ti, 3)} | {ratio(ti, ri)} | {rdp} | {tdp and round(tdp, 1)} | {ratio(rdp, tdp)} |")
PY
