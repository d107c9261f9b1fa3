import Alignment
import Config
import Foundation

/// How the proxy heads make the reward: their mean; LASeR (LinUCB picks one per batch); a uniformly
/// random arm per batch (LASeR's baseline); R2M.
public enum RewardSelection: String, ConfigChoice { case mean, laser, random, r2m }
/// LASeR's bandit reward: the paper's −(DPO + NLL) on best-vs-worst pairs, or the held-out gain of the heads' scores.
public enum LaserSignal: String, ConfigChoice { case dpoNLL = "dpo_nll", heldout }

/// The reward: weights of the named sources, the learned proxies and the hybrid routing.
public struct RewardSettings: Sendable {
    package static let rewardHead = Key<Double>("rewards.reward_head", 0, "weight of the reward head's score")
    package static let verifier = Key<Double>(
        "rewards.verifier", 1, "weight of the exact-answer verifier (tasks with answers)")
    package static let format = Key<Double>("rewards.format", 0.5, "weight of the bare-integer format check (0 or −1)")
    package static let proxy = Key<Double>(
        "rewards.proxy", 0, "weight of the learned proxy reward read from rewards.proxy_heads")
    package static let proxyHeads = Key<String>(
        "rewards.proxy_heads", "",
        "comma-separated reward heads on model.init_from's frozen trunk: rm checkpoint folders "
            + "(rm.train_trunk=false) or .safetensors files"
    )
    package static let selection = Key<RewardSelection>(
        "rewards.selection", .mean,
        "how the proxy heads make the reward: their mean; laser (LinUCB picks one per batch); r2m (head 1 fused with "
            + "the policy's states, updated online)"
    )
    package static let hybrid = Key<Double>(
        "rewards.hybrid", 0,
        "weight of the hybrid reward: verifier, else GenRM with the answer, else GenRM against the reward model's "
            + "best of N"
    )
    package static let genrmModel = Key<ConfigPath>(
        "rewards.genrm_model", "",
        "the generative reward model (an SFT checkpoint trained on judge.jsonl), read by rewards.hybrid and "
            + "rewards.genrm"
    )
    package static let verifierTasks = Key<String>(
        "rewards.verifier_tasks", "arith",
        "hybrid routing: tasks with rule verifiers, task=v1+v2 (exact, last_digit, format, expression, length<N>; "
            + "a bare task: "
            + "exact+format)"
    )
    package static let referenceTasks = Key<String>(
        "rewards.reference_tasks", "",
        "prompt tasks judged by the GenRM against their answer; other tasks against the best of N")
    package static let proxyTasks = Key<String>(
        "rewards.proxy_tasks", "",
        "hybrid routing: prompt tasks scored by proxy head 1 (rewards.proxy_heads' first) instead of the GenRM")
    package static let bonSamples = Key<Int>(
        "rewards.bon_samples", 8, "SFT samples per prompt for best-of-N references", .positive)

    public var rewardHead: Double, verifier: Double, format: Double, proxy: Double, proxyHeads: [String],
        selection: RewardSelection
    public var hybrid: Double, genrmModel: String, verifierTasks: String, referenceTasks: Set<String>, bonSamples: Int
    public var proxyTasks: Set<String>

    package init(_ c: ResolvedConfig) {
        rewardHead = c[Self.rewardHead]
        verifier = c[Self.verifier]
        format = c[Self.format]
        proxy = c[Self.proxy]
        proxyHeads = commaList(c[Self.proxyHeads])
        selection = c[Self.selection]
        hybrid = c[Self.hybrid]
        genrmModel = c[Self.genrmModel].path
        verifierTasks = c[Self.verifierTasks]
        referenceTasks = Set(commaList(c[Self.referenceTasks]))
        bonSamples = c[Self.bonSamples]
        proxyTasks = Set(commaList(c[Self.proxyTasks]))
    }
}

/// LASeR (Nguyen et al. 2024, arXiv 2410.01735; docs/algorithms.md §9): a LinUCB
/// bandit over reward models or named sources.
public struct LaserSettings: Sendable {
    package static let alpha = Key<Double>(
        "laser.alpha", 0.1, "LinUCB exploration α (the release code's 0.1; ridge λ = 1)", .nonNegative)
    package static let arms = Key<String>(
        "laser.arms", "",
        "LASeR's arms: named reward sources (reward_head, verifier, format, hybrid, proxy1…); default the proxy heads")
    package static let signal = Key<LaserSignal>(
        "laser.reward", .dpoNLL,
        "bandit reward: dpo_nll, the paper's −(DPO + NLL) loss of the updated policy on each prompt's best vs worst "
            + "sample as the chosen arm ranks them; heldout, the gain of the heads' mean score of greedy responses to "
            + "laser.heldout_prompts eval prompts"
    )
    package static let beta = Key<Double>("laser.beta", 0.1, "β of the DPO term of laser.reward dpo_nll", .positive)
    package static let nll = Key<Double>(
        "laser.nll", 1, "weight of the NLL term (per-token, on the best sample) of laser.reward dpo_nll", .nonNegative)
    package static let tryEachArmFirst = Key<Bool>(
        "laser.try_each_arm_first", false, "play every arm once (round robin) before LinUCB chooses (not in the paper)")
    package static let heldoutPrompts = Key<Int>(
        "laser.heldout_prompts", 32, "held-out prompts for laser.reward heldout", .positive)
    package static let rawFirstReward = Key<Bool>(
        "laser.raw_first_reward", true,
        "pay the bandit's first reward raw, as the release code's linucb.py does (its history then holds one value); "
            + "false: normalise from the first reward on (a lone value is its own middle, 0.5)")
    package static let keys = [
        alpha.declaration, arms.declaration, signal.declaration, beta.declaration, nll.declaration,
        tryEachArmFirst.declaration, heldoutPrompts.declaration, rawFirstReward.declaration,
    ]

    public var alpha: Double, arms: [String], signal: LaserSignal, beta: Double, nll: Double, tryEachArmFirst: Bool,
        heldoutPrompts: Int, rawFirstReward: Bool
    package init(_ c: ResolvedConfig) {
        alpha = c[Self.alpha]
        arms = commaList(c[Self.arms])
        signal = c[Self.signal]
        beta = c[Self.beta]
        nll = c[Self.nll]
        tryEachArmFirst = c[Self.tryEachArmFirst]
        heldoutPrompts = c[Self.heldoutPrompts]
        rawFirstReward = c[Self.rawFirstReward]
    }
}

/// R2M (Huang et al. 2026, arXiv 2601.22664 §4): proxy head 1's reward token fused with the
/// policy's states, the fusion and head updated after every iteration (R2MFusion, GroupRewardEntropy).
public struct R2MSettings: Sendable {
    package static let omegaFloor = Key<Double>(
        "r2m.omega_min", 0.7,
        "Ω: the floor of ω(t) = max(½cos(πt/T)+½, Ω), the weight kept on the reward model's own reward token (paper: "
            + "0.7 Qwen-3B, 0.6 LLaMA-8B)",
        .within(0, 1))
    package static let attentionSize = Key<Int>(
        "r2m.attention_size", 0,
        "d of the cross-attention; 0: half the reward model's width (the paper's 2048 for 4096)", .nonNegative)
    package static let lr = Key<Double>(
        "r2m.lr", 1e-6, "Adam learning rate of the fusion and head (paper: 1e-6 dialogue, 5e-7 TL;DR, for 3–8B models)",
        .positive)
    package static let entropyWeight = Key<Double>(
        "r2m.entropy_weight", 0.3, "α of the update's loss (1−α)·Bradley–Terry + α·group-reward entropy", .within(0, 1))
    package static let policyFeedback = Key<Bool>(
        "r2m.policy_feedback", true,
        "ablation: false keeps ω = 1 (no policy states in the reward; with r2m.update this is the paper's 'Iterative "
            + "RMHead' baseline)"
    )
    package static let update = Key<Bool>(
        "r2m.update", true, "ablation: false never updates the fusion and head (the paper's 'w/o Train')")

    package static let steps = Key<Int>(
        "r2m.steps", 1, "Adam steps of the fusion and head per round, on the round's pairs (the paper gives none)",
        .positive)
    package static let anchor = Key<Double>(
        "r2m.anchor", 0,
        "ours, not the paper's: λ of a pull λ·(θ − θ₀) of the fusion and head toward their starting values, "
            + "added to the update's gradient (bounds the runaway of the self-labelled update; 0: off)",
        .nonNegative)
    package static let heldoutPairs = Key<ConfigPath>(
        "r2m.heldout_pairs", "",
        "JSONL of gold-labelled pairs (prompt, chosen, rejected): the fused reward's pairwise accuracy on them is "
            + "logged before and after each round's update (r2m_heldout_acc_before/_after; the paper's RM accuracy)")

    package static let keys = [
        omegaFloor.declaration, attentionSize.declaration, lr.declaration, entropyWeight.declaration,
        policyFeedback.declaration, update.declaration, steps.declaration, anchor.declaration,
        heldoutPairs.declaration,
    ]

    public var omegaFloor: Double, attentionSize: Int, lr: Float, entropyWeight: Double, policyFeedback: Bool,
        update: Bool, steps: Int, anchor: Double, heldoutPairs: String
    package init(_ c: ResolvedConfig) {
        omegaFloor = c[Self.omegaFloor]
        attentionSize = c[Self.attentionSize]
        lr = Float(c[Self.lr])
        entropyWeight = c[Self.entropyWeight]
        policyFeedback = c[Self.policyFeedback]
        update = c[Self.update]
        steps = c[Self.steps]
        anchor = c[Self.anchor]
        heldoutPairs = c[Self.heldoutPairs].path
    }
}
