#!/usr/bin/env bash
# Ranks on several "machines" over real sockets, on one computer (issue 15): each host is a network
# namespace with its own address and hostname, joined to the others by veth pairs on a bridge;
# mpirun starts its daemons in them through scripts/netns-agent.sh (no sshd), and the ranks talk
# over TCP only (btl tcp,self). Needs root and iproute2.
#
#   bash scripts/multihost.sh           # set up 2 hosts, run every check, tear down
#   bash scripts/multihost.sh setup     # only create the hosts (HOSTS=3 for three)
#   bash scripts/multihost.sh teardown
#   bash scripts/multihost.sh scale     # 4 hosts: every stage at 16 ranks against 1 process; 64 ranks of SFT
#   RATE=10gbit bash scripts/multihost.sh route   # 2 hosts, links limited by tc: the gradient all-reduce and
#                                       # data-parallel SFT, flat 1 MiB messages (before issue 28) against the route
#   RATE=10gbit bash scripts/multihost.sh model OUT  # the cluster model (`rlhf bench scale`): measure every point
#                                       # it needs and is checked on (1 and 2 ranks, 1 and 2 hosts), predict
#   bash scripts/multihost.sh predict OUT  # only the predictions, from an existing OUT.jsonl
#
# Checks: data-parallel Hydra-SFT over 2 hosts equals one process bit for bit; PPO with the reference
# and reward placed on the other host equals the colocated run bit for bit; killing a rank on one
# host ends the job within 30 s with the rank named; SIGUSR1 to mpirun stops the ranks on both
# hosts with a checkpoint; `rlhf bench allreduce` over TCP between hosts beside shared memory on
# one host.
set -euo pipefail
# The machine image sets OPENBLAS_CORETYPE=Haswell; ranks pick OpenBLAS kernels from the CPU.
unset OPENBLAS_CORETYPE
cd "$(dirname "$0")/.."
hosts=${HOSTS:-2}
bridge=rlhfbr
subnet=10.77.0
map=/run/rlhf-multihost
rlhf=$PWD/.build/release/rlhf

setup() {
    mkdir -p "$map"
    ip link show "$bridge" >/dev/null 2>&1 || ip link add "$bridge" type bridge
    ip addr replace "$subnet.1/24" dev "$bridge"
    ip link set "$bridge" up
    for i in $(seq 1 "$hosts"); do
        ns=rlhfh$i address=$subnet.$((10 + i))
        ip netns list | grep -qw "$ns" || ip netns add "$ns"
        if ! ip link show "v$ns" >/dev/null 2>&1; then
            ip link add "v$ns" type veth peer name eth0 netns "$ns"
            ip link set "v$ns" master "$bridge" up
        fi
        ip -n "$ns" addr replace "$address/24" dev eth0
        ip -n "$ns" link set eth0 up
        ip -n "$ns" link set lo up
        echo "$ns" > "$map/$address"
    done
    echo "hosts: $(ls "$map" | tr '\n' ' ')"
}

teardown() {
    for ns in $(ip netns list | awk '/^rlhfh/ {print $1}'); do
        ip netns pids "$ns" | xargs -r kill -9 2>/dev/null || true   # daemons or ranks left behind
        ip netns del "$ns"
    done
    ip link del "$bridge" 2>/dev/null || true
    rm -rf "$map"
}

# mpirun across the hosts: one rank per host unless told otherwise. Every namespace "host" is
# this machine, and each host's daemon would bind its first rank to core 0 (Open MPI binds to core
# by default for np ≤ 2): every host's rank 0 on one core. Unbound, the kernel spreads them as a
# cluster's separate machines would be (before this, the 2-host figures of
# benchmarks/2026-12-02-multihost.md and 2026-12-07-reduction-route-zen5.md ran both ranks on
# one core: half the compute and a TCP link that looked like 0.3 GB/s instead of 1.2).
across() {
    local slots=$1; shift
    local list=""
    for i in $(seq 1 "$hosts"); do list+="${list:+,}$subnet.$((10 + i)):$slots"; done
    mpirun --allow-run-as-root --oversubscribe --host "$list" --mca plm_rsh_agent "$PWD/scripts/netns-agent.sh" \
        --mca btl tcp,self --mca btl_tcp_if_include "$subnet.0/24" --mca oob_tcp_if_include "$subnet.0/24" \
        --bind-to none -x OPENBLAS_NUM_THREADS=1 -x RLHF_NO_REEXEC=1 "$@"
}

one() { mpirun --allow-run-as-root --oversubscribe -np 1 -x OPENBLAS_NUM_THREADS=1 -x RLHF_NO_REEXEC=1 "$@"; }

same() {   # same FILE A B: the two runs wrote the same bytes
    if cmp -s "$2/$1" "$3/$1"; then echo "  identical: $1"; else echo "  DIFFERENT: $1"; failed=1; fi
}

# kill_check NP HOST: SFT on NP ranks over the hosts; one rank on namespace host HOST is killed
# with SIGKILL; the job must end within $KILL_LIMIT s (30) and mpirun name the rank and its host.
kill_check() {
    local np=$1 host=$2
    echo "== a rank killed on host $host of $hosts ends the $np-rank job"
    across $((np / hosts)) -np "$np" "$rlhf" "${sft[@]}" train.batch_size=$((16 * np / 2)) train.steps=1000000 \
        out="$work/killed$np" > "$work/killed$np.log" 2>&1 &
    local job=$!
    for _ in $(seq 1 600); do grep -q '"loss"' "$work/killed$np/metrics.jsonl" 2>/dev/null && break; sleep 0.1; done
    local victim; victim=$(ip netns pids "rlhfh$host" | while read -r p; do tr '\0' ' ' < /proc/$p/cmdline | grep -q "$work/killed$np" && ! tr '\0' ' ' < /proc/$p/cmdline | grep -q orted && echo "$p"; done | head -1 || true)
    if [ -z "$victim" ]; then echo "  no rank found in rlhfh$host"; kill "$job" 2>/dev/null || true; wait "$job" || true; failed=1; return 1; fi
    local killed; killed=$(date +%s.%N)
    kill -9 "$victim"
    wait "$job" || true
    local took; took=$(awk -v a="$killed" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
    echo "  job ended $took s after the kill; mpirun said:"
    grep -m1 -E "noticed that process" "$work/killed$np.log" | sed 's/^/  /' || true
    echo "  the others, stopped by mpirun, said where they were:"
    grep -m1 -E "^rank [0-9]+ \(sft, step [0-9]+\): signal received" "$work/killed$np.log" | sed 's/^/  /' || true
    awk -v t="$took" -v limit="${KILL_LIMIT:-30}" 'BEGIN {exit !(t <= limit)}' || { echo "  TOO SLOW"; failed=1; }
}

# usr1_check NP: SIGUSR1 to mpirun stops every rank on every host after the same step, with a checkpoint.
usr1_check() {
    local np=$1
    echo "== SIGUSR1 to mpirun: every rank of $np on $hosts hosts stops after the same step with a checkpoint"
    across $((np / hosts)) -np "$np" "$rlhf" "${sft[@]}" train.batch_size=$((16 * np / 2)) train.steps=1000000 \
        out="$work/usr1-$np" > "$work/usr1-$np.log" 2>&1 &
    local job=$!
    for _ in $(seq 1 600); do grep -q '"loss"' "$work/usr1-$np/metrics.jsonl" 2>/dev/null && break; sleep 0.1; done
    # $job is the subshell running `across`; mpirun is its child, and mpirun forwards SIGUSR1.
    kill -USR1 "$(pgrep -P "$job" -x mpirun)"
    wait "$job" || true
    if grep -m1 "stopped by SIGUSR1" "$work/usr1-$np.log" | sed 's/^/  /'; then :; else echo "  NO STOP REPORT"; tail -5 "$work/usr1-$np.log"; failed=1; fi
    local written; written=$(ls "$work/usr1-$np/checkpoints" 2>/dev/null | wc -l)
    echo "  checkpoints: $(ls "$work/usr1-$np/checkpoints" | tr '\n' ' ')"
    # One checkpoint: every rank stopped after the same step. Which ranks the signal had reached
    # when they agreed depends on timing (mpirun forwards it to other hosts through their daemons).
    [ "$written" = 1 ] || { echo "  NOT ONE CHECKPOINT"; failed=1; }
}

checks() {
    local work; work=$(mktemp -d)
    failed=0
    local started=$SECONDS
    echo "== hostnames the ranks see"
    across 1 -np "$hosts" hostname
    local sft=(hydra-sft name=mh resume=never data.task=arith data.eval_size=50 train.steps=12 train.batch_size=16 train.micro_batch_size=4
               train.max_length=16 train.warmup_steps=2 eval.every=0 checkpoint.every=0 log.every=4)
    echo "== data-parallel Hydra-SFT (LM + reward head): 2 hosts against 1 process"
    one "$rlhf" "${sft[@]}" out="$work/sft1" > "$work/sft1.log" 2>&1
    across 1 -np 2 "$rlhf" "${sft[@]}" out="$work/sft2" > "$work/sft2.log" 2>&1
    grep -h "world size" "$work/sft2.log" | head -1
    same checkpoints/step-00000012/model.safetensors "$work/sft1" "$work/sft2"
    same checkpoints/step-00000012/reward_head.safetensors "$work/sft1" "$work/sft2"

    echo "== PPO: reference and reward on the other host against colocated"
    local ppo=(ppo model.init_from="$work/sft1/checkpoints/step-00000012" data.task=arith data.eval_size=50 resume=never ppo.iterations=2
               ppo.prompts=8 ppo.samples_per_prompt=4 ppo.max_new_tokens=5 ppo.minibatch_size=8 eval.every=0 train.max_length=16 rewards.reward_head=0.1)
    one "$rlhf" "${ppo[@]}" out="$work/ppo1" > "$work/ppo1.log" 2>&1
    across 1 -np 2 "$rlhf" "${ppo[@]}" out="$work/ppo2" placement=reference=1,reward=1 > "$work/ppo2.log" 2>&1
    grep -h "reference → rank" "$work/ppo2.log" | head -1
    same final/policy_adapter/adapter_model.safetensors "$work/ppo1" "$work/ppo2"

    kill_check 2 2
    usr1_check 2
    echo "== all-reduce: TCP between 2 hosts"
    across 1 -np 2 "$rlhf" bench allreduce --mib 1 --mib 16 --mib 64 --steps 1 --preset tiny | grep -v '^$' | tail -4
    echo "== all-reduce: shared memory, 2 ranks on one host"
    mpirun --allow-run-as-root --oversubscribe -np 2 -x OPENBLAS_NUM_THREADS=1 -x RLHF_NO_REEXEC=1 "$rlhf" bench allreduce --mib 1 --mib 16 --mib 64 --steps 1 --preset tiny | grep -v '^$' | tail -4
    echo "== $((SECONDS - started)) s in all; $([ $failed = 0 ] && echo 'every check passed' || echo 'FAILED')"
    rm -rf "$work"
    return $failed
}

# Issue 28, point 4: 16 ranks over 4 hosts (4 each, oversubscribed: correctness, not speed) run
# every stage bit-identical to one process, cut into the same micro-batches (and PPO into the same
# rollout units); then 64 ranks (16 per host) run a few SFT steps.
scale_checks() {
    local work; work=$(mktemp -d)
    failed=0
    local started=$SECONDS per=$((16 / hosts))
    local common=(resume=never data.task=arith data.eval_size=40 train.steps=3 train.batch_size=16
                  train.micro_batch_size=1 train.max_length=16 train.warmup_steps=1 eval.every=0 checkpoint.every=0
                  log.every=1)
    local pairs=(hydra.pair_batch_size=16 hydra.pair_micro_batch_size=1)
    stage() {  # stage NAME FILES... -- ARGS...: one process and 16 ranks write the same FILES
        local name=$1; shift
        local files=()
        while [ "$1" != "--" ]; do files+=("$1"); shift; done
        shift
        echo "== $name: 16 ranks on $hosts hosts against 1 process"
        one "$rlhf" "$@" out="$work/$name-1" > "$work/$name-1.log" 2>&1 || { echo "  np 1 FAILED"; tail -3 "$work/$name-1.log"; failed=1; }
        across "$per" -np 16 "$rlhf" "$@" out="$work/$name-16" > "$work/$name-16.log" 2>&1 || { echo "  np 16 FAILED"; tail -5 "$work/$name-16.log"; failed=1; }
        grep -h -E "world size|responses per iteration|gradient reduction" "$work/$name-16.log" | head -2 | sed "s/^/  /" || true
        for f in "${files[@]}"; do same "$f" "$work/$name-1" "$work/$name-16"; done
    }
    local ckpt=checkpoints/step-00000003
    stage sft $ckpt/model.safetensors -- sft name=s "${common[@]}"
    # hydra-sft, dpo and ppo take the hierarchical route (within each host, then between hosts'
    # first ranks); sft and rm the default flat one, in messages sized from the link measured at start.
    local tree=cluster.reduction=hierarchical
    stage hydra-sft $ckpt/model.safetensors $ckpt/reward_head.safetensors -- hydra-sft name=h "${common[@]}" "${pairs[@]}" $tree
    stage rm $ckpt/model.safetensors $ckpt/reward_head.safetensors -- rm name=r "${common[@]}" "${pairs[@]}"
    stage dpo $ckpt/adapter/adapter_model.safetensors -- dpo name=d "${common[@]}" train.lr=3e-3 $tree
    stage ppo final/policy_adapter/adapter_model.safetensors final/critic_adapter/adapter_model.safetensors \
        final/value_head.safetensors -- \
        ppo model.init_from="$work/hydra-sft-1/$ckpt" data.task=arith data.eval_size=40 resume=never \
        ppo.iterations=2 ppo.prompts=16 ppo.samples_per_prompt=2 ppo.max_new_tokens=5 ppo.minibatch_size=16 \
        ppo.micro_batch_size=1 ppo.rollout_batch=2 ppo.estimator=gae rewards.reward_head=0.1 eval.every=0 \
        train.max_length=16 $tree

    local sft=(sft name=big resume=never data.task=arith data.eval_size=40 train.micro_batch_size=4 train.max_length=16
               train.warmup_steps=1 eval.every=0 checkpoint.every=0 log.every=1)
    KILL_LIMIT=${KILL_LIMIT:-5} kill_check 16 3
    usr1_check 16

    echo "== 64 ranks ($((64 / hosts)) per host): a few SFT steps"
    if across $((64 / hosts)) -np 64 "$rlhf" sft name=s64 "${common[@]}" train.batch_size=64 out="$work/sft-64" \
        > "$work/sft-64.log" 2>&1; then
        grep -h -m1 "world size" "$work/sft-64.log" | sed "s/^/  /" || true
        echo "  64 ranks: $(grep -c '"loss"' "$work/sft-64/metrics.jsonl") steps logged"
    else
        echo "  64 ranks FAILED"; tail -5 "$work/sft-64.log"; failed=1
    fi
    echo "== $((SECONDS - started)) s in all; $([ $failed = 0 ] && echo 'every scale check passed' || echo 'FAILED')"
    rm -rf "$work"
    return $failed
}

# Issue 28, point 2: the gradient route against flat 1 MiB messages (what every run did before),
# one rank per host (then 2 per host, flat against hierarchical), every host's link limited to $RATE
# by a token bucket (tc tbf; this kernel has no netem, so no added latency). Presets tiny, small and the SmolLM2-135M shape (full fine-tuning:
# a 1 GiB Float64 gradient sum) at 8 and 32 sequences.
route_checks() {
    for i in $(seq 1 "$hosts"); do
        tc qdisc replace dev "vrlhfh$i" root tbf rate "${RATE:-10gbit}" burst 4mb latency 10ms
    done
    echo "links: $(tc qdisc show | grep -c "tbf.*rate") veths limited to ${RATE:-10gbit} (tc tbf)"
    echo "== tiny, 2 ranks per host (4 ranks on this machine's 2 cores: oversubscribed), flat against hierarchical"
    for reduction in "flat --bucket-mib 16" "hierarchical --bucket-mib 16"; do
        # shellcheck disable=SC2086
        across 2 -np $((2 * hosts)) "$rlhf" bench allreduce --mib 1 --mib 16 --steps 1 --preset tiny \
            --reduction $reduction | grep -E '^\{|gradient reduction'
    done
    for shape in "tiny 16" "small 16" "llama/smollm2-135m 8" "llama/smollm2-135m 32"; do
        read -r preset batch <<<"$shape"
        local reductions=("flat --bucket-mib 1" "flat")
        [ "$batch" = 32 ] && reductions=("flat")
        for reduction in "${reductions[@]}"; do
            echo "== $preset, batch $batch x 128 tokens, --reduction $reduction"
            # shellcheck disable=SC2086
            across 1 -np "$hosts" "$rlhf" bench allreduce --mib 1 --mib 16 --mib 64 --steps 1 --preset "$preset" \
                --batch "$batch" --tokens 128 --reduction $reduction | grep -E '^\{|gradient reduction'
        done
    done
}

# Issue 28, point 5: the measurements `rlhf bench scale` builds its cluster model from, and the
# points it is checked on, all in $out.jsonl; then its predictions (tables in $out-tables.md, charts in
# $out-*.svg). SFT: full fine-tuning, 4 sequences of 128 tokens per core; GRPO: Hydra with LoRA, 1
# prompt of 8 responses × 64 tokens per core (the smollm2 shape; the Qwen2.5-0.5B shape at one rank).
model_predictions() {
    local out=$1
    : > "$out-tables.md"
    : > "$out-predicted.jsonl"
    for preset in llama/smollm2-135m qwen2/qwen2.5-0.5b; do
        # SFT also at 16 sequences per core (a larger global batch: 512 per host of 32 cores).
        for case in "sft 4" "sft 16" "grpo 1"; do
            local workload units name
            read -r workload units <<<"$case"
            name=${preset#*/}-$workload-$units
            echo "== predicted: $workload $preset, $units per core (10 Gbit/s, 0.2 ms between hosts of 32 cores," \
                "256 GiB)" | tee -a "$out-tables.md"
            "$rlhf" bench scale --predict "$out.jsonl" --workload "$workload" --preset "$preset" \
                --predict-units "$units" --across-gbps 10 --across-latency-ms 0.2 --svg "$out-$name.svg" \
                2>> "$out-tables.md" >> "$out-predicted.jsonl"
        done
    done
}

model_checks() {
    local out=$1 sft=(--units 4 --tokens 128) grpo=(--workload grpo --units 1 --repeats 2)
    for i in $(seq 1 "$hosts"); do
        tc qdisc replace dev "vrlhfh$i" root tbf rate "${RATE:-10gbit}" burst 4mb latency 10ms
    done
    : > "$out.jsonl"
    for preset in llama/smollm2-135m qwen2/qwen2.5-0.5b; do
        echo "== $preset: one rank (1 and 2 threads), SFT and GRPO"
        OPENBLAS_NUM_THREADS=2 RLHF_NO_REEXEC=1 "$rlhf" bench scale --preset "$preset" "${sft[@]}" >> "$out.jsonl"
        OPENBLAS_NUM_THREADS=2 RLHF_NO_REEXEC=1 "$rlhf" bench scale --preset "$preset" "${grpo[@]}" >> "$out.jsonl"
    done
    echo "== llama/smollm2-135m: 2 ranks on one host, SFT and GRPO"
    for work in "${sft[*]}" "${grpo[*]}"; do
        # shellcheck disable=SC2086
        mpirun --allow-run-as-root -np 2 --bind-to core -x OPENBLAS_NUM_THREADS=1 -x RLHF_NO_REEXEC=1 \
            "$rlhf" bench scale --preset llama/smollm2-135m $work >> "$out.jsonl"
    done
    echo "== llama/smollm2-135m: 2 hosts (${RATE:-10gbit} links), 1 rank each, SFT and GRPO"
    for work in "${sft[*]}" "${grpo[*]}"; do
        # shellcheck disable=SC2086
        across 1 -np "$hosts" "$rlhf" bench scale --preset llama/smollm2-135m $work >> "$out.jsonl"
    done
    model_predictions "$out"
}

case "${1:-all}" in
    setup) setup ;;
    teardown) teardown ;;
    checks) checks ;;
    all) setup; trap teardown EXIT; checks ;;
    scale) hosts=${HOSTS:-4}; setup; trap teardown EXIT; scale_checks ;;
    route) setup; trap teardown EXIT; route_checks ;;
    model)
        out=${2:?usage: $0 model OUT (writes OUT.jsonl, OUT-tables.md, OUT-*.svg)}
        setup; trap teardown EXIT; model_checks "$out" ;;
    predict) model_predictions "${2:?usage: $0 predict OUT (reads OUT.jsonl)}" ;;
    *) echo "usage: $0 [all|setup|teardown|checks|scale|route|model OUT|predict OUT]" >&2; exit 2 ;;
esac
