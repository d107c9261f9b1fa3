import Alignment
import Config
import Foundation
import Models

/// hydra: one frozen trunk, LoRA roles; separate: four full models.
public enum PPOLayout: String, ConfigChoice { case hydra, separate }
/// How the proxy heads make the reward: their mean; LASeR (LinUCB picks one per batch); R2M.
public enum RewardSelection: String, ConfigChoice { case mean, laser, r2m }
/// LASeR's bandit reward: −(policy loss), or the held-out gain of the heads' scores.
public enum LaserSignal: String, ConfigChoice { case loss, heldout }

/// Comma-separated names, blanks dropped.
func commaList(_ text: String) -> [String] {
    text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
}

/// The rollout, advantage and update keys (algorithms.md §2.4 defaults where TRL and OpenRLHF
/// agree; our choices noted).
public struct PPOSettings: Sendable {
    static let iterations = Key<Int>("ppo.iterations", 100, "rollout + update iterations", .nonNegative)
    static let prompts = Key<Int>("ppo.prompts", 16, "prompts per iteration (global)", .positive)
    static let samples = Key<Int>("ppo.samples_per_prompt", 4, "responses sampled per prompt", .positive)
    static let maxNewTokens = Key<Int>("ppo.max_new_tokens", 8, "response length limit", .positive)
    static let temperature = Key<Double>("ppo.temperature", 1, "sampling temperature (log-probs are taken on logits/τ)", .positive)
    static let topK = Key<Int>("ppo.top_k", 0, "sampling top-k (0: off)", .nonNegative)
    static let topP = Key<Double>("ppo.top_p", 1, "sampling top-p (1: off)", .above(0, upTo: 1))
    static let estimator = Key<AdvantageEstimator>("ppo.estimator", .gae, "advantage estimator")
    static let klEstimator = Key<KLEstimator>("ppo.kl_estimator", .k1, "per-token KL estimator")
    static let klCoef = Key<Double>("ppo.kl_coef", 0.05, "β of the KL penalty (initial value when adaptive)", .nonNegative)
    static let klTarget = Key<Double>("ppo.kl_target", 0, "adaptive KL target per sequence (0: fixed β)", .nonNegative)
    static let klHorizon = Key<Double>("ppo.kl_horizon", 10000, "adaptive KL horizon", .positive)
    static let gamma = Key<Double>("ppo.gamma", 1, "discount γ", .within(0, 1))
    static let lambda = Key<Double>("ppo.lambda", 0.95, "GAE λ", .within(0, 1))
    static let clip = Key<Double>("ppo.clip", 0.2, "policy ratio clip ε", .positive)
    static let dualClip = Key<Double>("ppo.dual_clip", 0, "dual-clip c > 1 for negative advantages (0: off)", ConfigCheck("0 (off) or > 1") { $0 == 0 || $0 > 1 })
    static let valueClip = Key<Double>("ppo.value_clip", 0.2, "value clip", .positive)
    static let entropyCoef = Key<Double>("ppo.entropy_coef", 0, "entropy bonus coefficient", .nonNegative)
    static let rewardClip = Key<Double>("ppo.reward_clip", 10, "clip the sequence reward to ±this", .positive)
    static let missingEOSPenalty = Key<Double>("ppo.missing_eos_penalty", 1, "subtracted from the reward when a response has no EOS", .nonNegative)
    static let whitenAdvantages = Key<Bool>("ppo.whiten_advantages", true, "whiten advantages over the batch (gae, reinforce)")
    static let epochs = Key<Int>("ppo.epochs", 1, "passes over each rollout", .positive)
    static let minibatchSize = Key<Int>("ppo.minibatch_size", 16, "sequences per optimizer step (per rank)", .positive)
    static let lr = Key<Double>("ppo.lr", 1e-3, "policy learning rate (LoRA, or the full model when separate)", .positive)
    static let criticLR = Key<Double>("ppo.critic_lr", 1e-3, "critic learning rate", .positive)
    static let gradClip = Key<Double>("ppo.grad_clip", 1, "gradient norm clip (0: off)", .nonNegative)
    static let minLRRatio = Key<Double>("ppo.min_lr_ratio", 0.1, "learning rates decay by a cosine to this share at the last iteration", .within(0, 1))
    static let ptxCoef = Key<Double>("ppo.ptx_coef", 0, "PPO-ptx: weight of the SFT loss on demonstrations, one extra step per minibatch", .nonNegative)
    static let keys = [iterations, prompts, samples, maxNewTokens].map(\.declaration) + [temperature.declaration] + [topK.declaration, topP.declaration,
        estimator.declaration, klEstimator.declaration] + [klCoef, klTarget, klHorizon, gamma, lambda, clip, dualClip, valueClip, entropyCoef,
        rewardClip, missingEOSPenalty].map(\.declaration) + [whitenAdvantages.declaration, epochs.declaration, minibatchSize.declaration]
        + [lr, criticLR, gradClip, minLRRatio, ptxCoef].map(\.declaration)

    public var iterations: Int, prompts: Int, samples: Int, maxNewTokens: Int, temperature: Float, topK: Int, topP: Float
    public var estimator: AdvantageEstimator, klEstimator: KLEstimator, klCoef: Double, klTarget: Double, klHorizon: Double
    public var gamma: Double, lambda: Double, clip: Float, dualClip: Float, valueClip: Float, entropyCoef: Float
    public var rewardClip: Double, missingEOSPenalty: Double, whitenAdvantages: Bool, epochs: Int, minibatchSize: Int
    public var lr: Float, criticLR: Float, gradClip: Float, minLRRatio: Float, ptxCoef: Double

    init(_ c: ResolvedConfig) {
        iterations = c[Self.iterations]; prompts = c[Self.prompts]; samples = c[Self.samples]; maxNewTokens = c[Self.maxNewTokens]
        temperature = Float(c[Self.temperature]); topK = c[Self.topK]; topP = Float(c[Self.topP])
        estimator = c[Self.estimator]; klEstimator = c[Self.klEstimator]; klCoef = c[Self.klCoef]; klTarget = c[Self.klTarget]; klHorizon = c[Self.klHorizon]
        gamma = c[Self.gamma]; lambda = c[Self.lambda]; clip = Float(c[Self.clip]); dualClip = Float(c[Self.dualClip])
        valueClip = Float(c[Self.valueClip]); entropyCoef = Float(c[Self.entropyCoef])
        rewardClip = c[Self.rewardClip]; missingEOSPenalty = c[Self.missingEOSPenalty]; whitenAdvantages = c[Self.whitenAdvantages]
        epochs = c[Self.epochs]; minibatchSize = c[Self.minibatchSize]
        lr = Float(c[Self.lr]); criticLR = Float(c[Self.criticLR]); gradClip = Float(c[Self.gradClip]); minLRRatio = Float(c[Self.minLRRatio])
        ptxCoef = c[Self.ptxCoef]
    }
}

/// The reward: weights of the named sources, the learned proxies and the hybrid routing.
public struct RewardSettings: Sendable {
    static let rewardHead = Key<Double>("rewards.reward_head", 0, "weight of the reward head's score")
    static let verifier = Key<Double>("rewards.verifier", 1, "weight of the exact-answer verifier (tasks with answers)")
    static let format = Key<Double>("rewards.format", 0.5, "weight of the bare-integer format check (0 or −1)")
    static let proxy = Key<Double>("rewards.proxy", 0, "weight of the learned proxy reward read from rewards.proxy_heads")
    static let proxyHeads = Key<String>("rewards.proxy_heads", "",
                                        "comma-separated reward heads on model.init_from's frozen trunk: rm checkpoint folders (rm.train_trunk=false) or .safetensors files")
    static let selection = Key<RewardSelection>("rewards.selection", .mean,
                                                "how the proxy heads make the reward: their mean; laser (LinUCB picks one per batch); r2m (head 1 fused with the policy's states, updated online)")
    static let hybrid = Key<Double>("rewards.hybrid", 0, "weight of the hybrid reward: verifier, else GenRM with the answer, else GenRM against the reward model's best of N")
    static let genrmModel = Key<ConfigPath>("rewards.genrm_model", "", "the generative reward model (an SFT checkpoint trained on judge.jsonl), read by rewards.hybrid and rewards.genrm")
    static let verifierTasks = Key<String>("rewards.verifier_tasks", "arith",
                                           "hybrid routing: tasks with rule verifiers, task=v1+v2 (exact, format, expression, length<N>; a bare task: exact+format)")
    static let referenceTasks = Key<String>("rewards.reference_tasks", "", "prompt tasks judged by the GenRM against their answer; other tasks against the best of N")
    static let bonSamples = Key<Int>("rewards.bon_samples", 8, "SFT samples per prompt for best-of-N references", .positive)

    public var rewardHead: Double, verifier: Double, format: Double, proxy: Double, proxyHeads: [String], selection: RewardSelection
    public var hybrid: Double, genrmModel: String, verifierTasks: String, referenceTasks: Set<String>, bonSamples: Int

    init(_ c: ResolvedConfig) {
        rewardHead = c[Self.rewardHead]; verifier = c[Self.verifier]; format = c[Self.format]; proxy = c[Self.proxy]
        proxyHeads = commaList(c[Self.proxyHeads]); selection = c[Self.selection]; hybrid = c[Self.hybrid]; genrmModel = c[Self.genrmModel].path
        verifierTasks = c[Self.verifierTasks]; referenceTasks = Set(commaList(c[Self.referenceTasks])); bonSamples = c[Self.bonSamples]
    }
}

/// LASeR (Nguyen et al. 2024): a LinUCB bandit over reward models or named sources.
public struct LaserSettings: Sendable {
    static let alpha = Key<Double>("laser.alpha", 0.1, "LinUCB exploration α", .nonNegative)
    static let arms = Key<String>("laser.arms", "", "LASeR's arms: named reward sources (reward_head, verifier, format, hybrid, proxy1…); default the proxy heads")
    static let signal = Key<LaserSignal>("laser.reward", .loss,
                                         "bandit reward: −(policy loss of the iteration), or the held-out gain: the heads' mean score of greedy responses to laser.heldout_prompts eval prompts, after minus before the update")
    static let heldoutPrompts = Key<Int>("laser.heldout_prompts", 32, "held-out prompts for laser.reward heldout", .positive)

    public var alpha: Double, arms: [String], signal: LaserSignal, heldoutPrompts: Int
    init(_ c: ResolvedConfig) { alpha = c[Self.alpha]; arms = commaList(c[Self.arms]); signal = c[Self.signal]; heldoutPrompts = c[Self.heldoutPrompts] }
}

/// R2M: the reward model's state fused with the policy's, updated online.
public struct R2MSettings: Sendable {
    static let wMax = Key<Double>("r2m.w_max", 1, "largest weight w of the policy-feedback term", .nonNegative)
    static let ramp = Key<Double>("r2m.ramp", 0.1, "share of the iterations over which w(t) rises linearly to r2m.w_max", .within(0, 1))
    static let every = Key<Int>("r2m.every", 1, "online update every K iterations", .positive)
    static let replay = Key<Int>("r2m.replay", 32, "replayed preference pairs per online update", .nonNegative)
    static let lr = Key<Double>("r2m.lr", 1e-3, "learning rate of the fusion and head", .positive)
    static let anchor = Key<Double>("r2m.anchor", 0.1, "λ of the anchor loss λ·mean((R2M − R0)²) on the batch's rollouts", .nonNegative)
    static let heads = Key<Int>("r2m.heads", 1, "attention heads of the fusion", .positive)

    public var wMax: Double, ramp: Double, every: Int, replay: Int, lr: Float, anchor: Double, heads: Int
    init(_ c: ResolvedConfig) {
        wMax = c[Self.wMax]; ramp = c[Self.ramp]; every = c[Self.every]; replay = c[Self.replay]; lr = Float(c[Self.lr])
        anchor = c[Self.anchor]; heads = c[Self.heads]
    }
}

/// Pre-PPO prompt selection and the task-priority curriculum (Shen et al. 2025).
public struct PromptSelectionSettings: Sendable {
    static let keep = Key<Double>("prepo.keep", 0, "Pre-PPO: keep this share of the prompts, the hardest by the SFT policy's mean reward z-scored per task (0: off)", .within(0, 1))
    static let samples = Key<Int>("prepo.samples", 4, "Pre-PPO: responses sampled per candidate prompt", .positive)
    static let candidates = Key<Int>("prepo.candidates", 2000, "Pre-PPO: prompts scored (the first N of the seeded order; 0: all)", .nonNegative)
    static let curriculumTasks = Key<String>("curriculum.tasks", "", "comma-separated prompt tasks drawn first (e.g. math,code; the 'task' field of prompts)")
    static let curriculumShare = Key<Double>("curriculum.share", 0, "share of the iterations that draw only curriculum.tasks prompts", .within(0, 1))

    public var keep: Double, samples: Int, candidates: Int, curriculumTasks: Set<String>, curriculumShare: Double
    init(_ c: ResolvedConfig) {
        keep = c[Self.keep]; samples = c[Self.samples]; candidates = c[Self.candidates]
        curriculumTasks = Set(commaList(c[Self.curriculumTasks])); curriculumShare = c[Self.curriculumShare]
    }
}

/// PPO's other inputs and limits.
struct PPOExtraKeys {
    static let layout = Key<PPOLayout>("layout", .hydra, "hydra: one frozen trunk, LoRA roles; separate: four full models")
    static let r2mPairs = Key<ConfigPath>("data.r2m_pairs", "", "preference pairs R2M replays (JSONL; arith: the task's pairs)")
    static let ptx = Key<ConfigPath>("data.ptx", "", "SFT demonstrations JSONL for ppo.ptx_coef (arith: the task's demos)")
    static let maxLength = Key<Int>("train.max_length", 64, "longest prompt + response", .positive)
    static let memoryLimit = Key<Double>("memory.limit_gib", 0, "refuse to start when the memory plan exceeds this (0: 90% of physical memory)", .nonNegative)
}

/// PPO reads its tokenizer and model from model.init_from, and its prompts from a task or data.train.
public let ppoSchema = ConfigSchema(RunSettings.keys.without(["tokenizer", "model.preset"]) + DataSettings.keys.without(["data.prefs", "data.eval_prefs"])
    + [PPOExtraKeys.layout.declaration] + PPOSettings.keys
    + LoRASettings.keys(rank: 16, rankHelp: "LoRA rank of the policy and critic adapters (hydra)")
    + [RewardSettings.rewardHead, RewardSettings.verifier, RewardSettings.format, RewardSettings.proxy].map(\.declaration)
    + [RewardSettings.proxyHeads.declaration, RewardSettings.selection.declaration] + RewardSources.registry.flatMap(\.keys)
    + [LaserSettings.alpha.declaration, LaserSettings.arms.declaration, LaserSettings.signal.declaration, LaserSettings.heldoutPrompts.declaration]
    + [R2MSettings.wMax, R2MSettings.ramp, R2MSettings.anchor].map(\.declaration)
    + [R2MSettings.every, R2MSettings.replay, R2MSettings.heads].map(\.declaration) + [R2MSettings.lr.declaration]
    + [RewardSettings.hybrid.declaration, RewardSettings.genrmModel.declaration, RewardSettings.verifierTasks.declaration,
       RewardSettings.referenceTasks.declaration, RewardSettings.bonSamples.declaration]
    + [PromptSelectionSettings.keep.declaration, PromptSelectionSettings.samples.declaration, PromptSelectionSettings.candidates.declaration,
       PromptSelectionSettings.curriculumTasks.declaration, PromptSelectionSettings.curriculumShare.declaration]
    + [PPOExtraKeys.r2mPairs.declaration, PPOExtraKeys.ptx.declaration, PPOExtraKeys.maxLength.declaration]
    + CadenceSettings.keys(evalEvery: 10, maxExamples: 500, checkpointEvery: 50, logEvery: 1, unit: "iterations")
    + [PPOExtraKeys.memoryLimit.declaration])

/// The PPO experiment, typed.
public struct PPOConfig: Sendable {
    public var resolved: ResolvedConfig
    public var run: RunSettings
    public var data: DataSettings
    public var layout: PPOLayout
    public var ppo: PPOSettings
    public var lora: LoRASettings
    public var rewards: RewardSettings
    public var laser: LaserSettings
    public var r2m: R2MSettings
    public var promptSelection: PromptSelectionSettings
    public var cadence: CadenceSettings
    public var r2mPairsFile: String, ptxFile: String, maxLength: Int
    /// memory.limit_gib in bytes, nil: the default (90% of physical memory).
    public var memoryLimitBytes: Double?

    public init(_ c: ResolvedConfig) throws {
        resolved = c
        run = try RunSettings(c); data = DataSettings(c); layout = c[PPOExtraKeys.layout]; ppo = PPOSettings(c); lora = try LoRASettings(c)
        rewards = RewardSettings(c); laser = LaserSettings(c); r2m = R2MSettings(c); promptSelection = PromptSelectionSettings(c); cadence = CadenceSettings(c)
        r2mPairsFile = c[PPOExtraKeys.r2mPairs].path; ptxFile = c[PPOExtraKeys.ptx].path; maxLength = c[PPOExtraKeys.maxLength]
        let limit = c[PPOExtraKeys.memoryLimit]
        memoryLimitBytes = limit > 0 ? limit * 1_073_741_824 : nil
        func check(_ ok: Bool, _ message: String) throws { if !ok { throw ConfigError(message) } }
        try check(!run.initFrom.isEmpty, "'model.init_from' must name the (Hydra-)SFT checkpoint PPO starts from")
        try check(data.task == .arith || !data.train.isEmpty, "set 'data.task' or 'data.train' (RL prompts JSONL)")
        try check(![.grpo, .rloo, .drGRPO].contains(ppo.estimator) || ppo.samples > 1,
                  "'\(ppo.estimator.rawValue)' compares samples of a prompt: set ppo.samples_per_prompt ≥ 2")
        try check(layout == .separate || lora.rank > 0, "layout hydra trains LoRA adapters: 'lora.rank' must be > 0")
        _ = RewardSources.names(for: self)   // the sources' own keys are read (and so checked) at load
    }

    public var loraConfig: LoRAConfig { LoRAConfig(rank: lora.rank, alpha: lora.alpha, targets: lora.targets) }
}
