import Alignment
import Config
import Foundation

/// How the proxy heads make the reward: their mean; LASeR (LinUCB picks one per batch); R2M.
public enum RewardSelection: String, ConfigChoice { case mean, laser, r2m }
/// LASeR's bandit reward: −(policy loss), or the held-out gain of the heads' scores.
public enum LaserSignal: String, ConfigChoice { case loss, heldout }

/// The reward: weights of the named sources, the learned proxies and the hybrid routing.
public struct RewardSettings: Sendable {
    package static let rewardHead = Key<Double>("rewards.reward_head", 0, "weight of the reward head's score")
    package static let verifier = Key<Double>("rewards.verifier", 1, "weight of the exact-answer verifier (tasks with answers)")
    package static let format = Key<Double>("rewards.format", 0.5, "weight of the bare-integer format check (0 or −1)")
    package static let proxy = Key<Double>("rewards.proxy", 0, "weight of the learned proxy reward read from rewards.proxy_heads")
    package static let proxyHeads = Key<String>("rewards.proxy_heads", "",
                                        "comma-separated reward heads on model.init_from's frozen trunk: rm checkpoint folders (rm.train_trunk=false) or .safetensors files")
    package static let selection = Key<RewardSelection>("rewards.selection", .mean,
                                                "how the proxy heads make the reward: their mean; laser (LinUCB picks one per batch); r2m (head 1 fused with the policy's states, updated online)")
    package static let hybrid = Key<Double>("rewards.hybrid", 0, "weight of the hybrid reward: verifier, else GenRM with the answer, else GenRM against the reward model's best of N")
    package static let genrmModel = Key<ConfigPath>("rewards.genrm_model", "", "the generative reward model (an SFT checkpoint trained on judge.jsonl), read by rewards.hybrid and rewards.genrm")
    package static let verifierTasks = Key<String>("rewards.verifier_tasks", "arith",
                                           "hybrid routing: tasks with rule verifiers, task=v1+v2 (exact, format, expression, length<N>; a bare task: exact+format)")
    package static let referenceTasks = Key<String>("rewards.reference_tasks", "", "prompt tasks judged by the GenRM against their answer; other tasks against the best of N")
    package static let bonSamples = Key<Int>("rewards.bon_samples", 8, "SFT samples per prompt for best-of-N references", .positive)

    public var rewardHead: Double, verifier: Double, format: Double, proxy: Double, proxyHeads: [String], selection: RewardSelection
    public var hybrid: Double, genrmModel: String, verifierTasks: String, referenceTasks: Set<String>, bonSamples: Int

    package init(_ c: ResolvedConfig) {
        rewardHead = c[Self.rewardHead]; verifier = c[Self.verifier]; format = c[Self.format]; proxy = c[Self.proxy]
        proxyHeads = commaList(c[Self.proxyHeads]); selection = c[Self.selection]; hybrid = c[Self.hybrid]; genrmModel = c[Self.genrmModel].path
        verifierTasks = c[Self.verifierTasks]; referenceTasks = Set(commaList(c[Self.referenceTasks])); bonSamples = c[Self.bonSamples]
    }
}

/// LASeR (Nguyen et al. 2024): a LinUCB bandit over reward models or named sources.
public struct LaserSettings: Sendable {
    package static let alpha = Key<Double>("laser.alpha", 0.1, "LinUCB exploration α", .nonNegative)
    package static let arms = Key<String>("laser.arms", "", "LASeR's arms: named reward sources (reward_head, verifier, format, hybrid, proxy1…); default the proxy heads")
    package static let signal = Key<LaserSignal>("laser.reward", .loss,
                                         "bandit reward: −(policy loss of the iteration), or the held-out gain: the heads' mean score of greedy responses to laser.heldout_prompts eval prompts, after minus before the update")
    package static let heldoutPrompts = Key<Int>("laser.heldout_prompts", 32, "held-out prompts for laser.reward heldout", .positive)

    public var alpha: Double, arms: [String], signal: LaserSignal, heldoutPrompts: Int
    package init(_ c: ResolvedConfig) { alpha = c[Self.alpha]; arms = commaList(c[Self.arms]); signal = c[Self.signal]; heldoutPrompts = c[Self.heldoutPrompts] }
}

/// R2M: the reward model's state fused with the policy's, updated online.
public struct R2MSettings: Sendable {
    package static let wMax = Key<Double>("r2m.w_max", 1, "largest weight w of the policy-feedback term", .nonNegative)
    package static let ramp = Key<Double>("r2m.ramp", 0.1, "share of the iterations over which w(t) rises linearly to r2m.w_max", .within(0, 1))
    package static let every = Key<Int>("r2m.every", 1, "online update every K iterations", .positive)
    package static let replay = Key<Int>("r2m.replay", 32, "replayed preference pairs per online update", .nonNegative)
    package static let lr = Key<Double>("r2m.lr", 1e-3, "learning rate of the fusion and head", .positive)
    package static let anchor = Key<Double>("r2m.anchor", 0.1, "λ of the anchor loss λ·mean((R2M − R0)²) on the batch's rollouts", .nonNegative)
    package static let heads = Key<Int>("r2m.heads", 1, "attention heads of the fusion", .positive)

    public var wMax: Double, ramp: Double, every: Int, replay: Int, lr: Float, anchor: Double, heads: Int
    package init(_ c: ResolvedConfig) {
        wMax = c[Self.wMax]; ramp = c[Self.ramp]; every = c[Self.every]; replay = c[Self.replay]; lr = Float(c[Self.lr])
        anchor = c[Self.anchor]; heads = c[Self.heads]
    }
}
