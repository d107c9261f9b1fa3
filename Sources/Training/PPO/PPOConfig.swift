import Alignment
import Config
import Foundation
import Models
import Rewards

/// hydra: one frozen trunk, LoRA roles; separate: four full models.
public enum PPOLayout: String, ConfigChoice { case hydra, separate }

/// Where the behaviour policy's log-probs (PPO's old log-probs) come from.
public enum OldLogProbs: String, ConfigChoice {
    /// From the sampling pass, which computed every sampled token's distribution already (same
    /// weights, same τ, the full softmax even under top-k/top-p): no extra policy pass. They differ
    /// from a training forward's by summation order only (~1e-6 in fp32).
    case sampling
    /// A separate policy forward over the finished sequences (the same kernels as training).
    case recompute
}

/// The rollout, advantage and update keys (docs/algorithms.md §2.4 defaults where TRL and OpenRLHF
/// agree; our choices noted).
public struct PPOSettings: Sendable {
    static let iterations = Key<Int>("ppo.iterations", 100, "rollout + update iterations", .nonNegative)
    static let prompts = Key<Int>("ppo.prompts", 16, "prompts per iteration (global)", .positive)
    static let samples = Key<Int>("ppo.samples_per_prompt", 4, "responses sampled per prompt", .positive)
    static let maxNewTokens = Key<Int>("ppo.max_new_tokens", 8, "response length limit", .positive)
    static let temperature = Key<Double>(
        "ppo.temperature", 1,
        "sampling temperature τ; every pass's log-probs (behaviour, reference, current policy) and entropy are "
            + "then taken on logits/τ, as TRL does", .positive)
    static let topK = Key<Int>("ppo.top_k", 0, "sampling top-k (0: off)", .nonNegative)
    static let topP = Key<Double>("ppo.top_p", 1, "sampling top-p (1: off)", .above(0, upTo: 1))
    static let estimator = Key<AdvantageEstimator>("ppo.estimator", .gae, "advantage estimator")
    static let klEstimator = Key<KLEstimator>("ppo.kl_estimator", .k1, "per-token KL estimator")
    static let klCoef = Key<Double>(
        "ppo.kl_coef", 0.05, "β of the KL penalty (initial value when adaptive)", .nonNegative)
    static let klTarget = Key<Double>("ppo.kl_target", 0, "adaptive KL target per sequence (0: fixed β)", .nonNegative)
    static let klHorizon = Key<Double>("ppo.kl_horizon", 10000, "adaptive KL horizon", .positive)
    static let gamma = Key<Double>("ppo.gamma", 1, "discount γ", .within(0, 1))
    static let lambda = Key<Double>("ppo.lambda", 0.95, "GAE λ", .within(0, 1))
    static let clip = Key<Double>("ppo.clip", 0.2, "policy ratio clip ε", .positive)
    static let dualClip = Key<Double>(
        "ppo.dual_clip", 0, "dual-clip c > 1 for negative advantages (0: off)",
        ConfigCheck("0 (off) or > 1") { $0 == 0 || $0 > 1 })
    static let valueClip = Key<Double>("ppo.value_clip", 0.2, "value clip", .positive)
    static let entropyCoef = Key<Double>("ppo.entropy_coef", 0, "entropy bonus coefficient", .nonNegative)
    static let rewardClip = Key<Double>("ppo.reward_clip", 10, "clip the sequence reward to ±this", .positive)
    static let missingEOSPenalty = Key<Double>(
        "ppo.missing_eos_penalty", 1, "subtracted from the reward when a response has no EOS", .nonNegative)
    static let whitenAdvantages = Key<Bool>(
        "ppo.whiten_advantages", true, "whiten advantages over the batch (gae, reinforce)")
    static let epochs = Key<Int>("ppo.epochs", 1, "passes over each rollout", .positive)
    static let minibatchSize = Key<Int>(
        "ppo.minibatch_size", 16, "sequences per optimizer step, over every rank rolling out", .positive)
    static let microBatchSize = Key<Int>(
        "ppo.micro_batch_size", 0,
        "sequences per forward and backward pass on a rank; a step sums its micro-batches exactly, so with it set "
            + "PPO trains the same bits at any number of ranks (0: minibatch_size / ranks)",
        .nonNegative)
    static let rolloutBatch = Key<Int>(
        "ppo.rollout_batch", 0,
        "sequences per generation call and scoring pass, each seeded by its place in the global batch; with it set "
            + "rollouts do not depend on the number of ranks (0: a rank's whole share at once)",
        .nonNegative)
    static let lr = Key<Double>(
        "ppo.lr", 1e-3, "policy learning rate (LoRA, or the full model when separate)", .positive)
    static let criticLR = Key<Double>("ppo.critic_lr", 1e-3, "critic learning rate", .positive)
    static let gradClip = Key<Double>("ppo.grad_clip", 1, "gradient norm clip (0: off)", .nonNegative)
    static let minLRRatio = Key<Double>(
        "ppo.min_lr_ratio", 0.1, "learning rates decay by a cosine to this share at the last iteration", .within(0, 1))
    static let oldLogProbs = Key<OldLogProbs>(
        "ppo.old_logprobs", .sampling,
        "the behaviour policy's log-probs: sampling (kept from generation, no extra pass) or recompute (a policy "
            + "forward over the rollout; always when a reward source reads the policy's states)")
    static let ptxCoef = Key<Double>(
        "ppo.ptx_coef", 0, "PPO-ptx: weight of the SFT loss on demonstrations, one extra step per minibatch",
        .nonNegative)
    static let keys =
        [iterations, prompts, samples, maxNewTokens].map(\.declaration) + [temperature.declaration] + [
            topK.declaration, topP.declaration,
            estimator.declaration, klEstimator.declaration,
        ]
        + [
            klCoef, klTarget, klHorizon, gamma, lambda, clip, dualClip, valueClip, entropyCoef,
            rewardClip, missingEOSPenalty,
        ].map(\.declaration) + [whitenAdvantages.declaration, epochs.declaration, minibatchSize.declaration]
        + [microBatchSize.declaration, rolloutBatch.declaration]
        + [lr, criticLR, gradClip, minLRRatio, ptxCoef].map(\.declaration) + [oldLogProbs.declaration]

    public var iterations: Int, prompts: Int, samples: Int, maxNewTokens: Int, temperature: Float, topK: Int,
        topP: Float
    public var estimator: AdvantageEstimator, klEstimator: KLEstimator, klCoef: Double, klTarget: Double,
        klHorizon: Double
    public var gamma: Double, lambda: Double, clip: Float, dualClip: Float, valueClip: Float, entropyCoef: Float
    public var rewardClip: Double, missingEOSPenalty: Double, whitenAdvantages: Bool, epochs: Int, minibatchSize: Int
    public var microBatchSize: Int, rolloutBatch: Int
    public var lr: Float, criticLR: Float, gradClip: Float, minLRRatio: Float, ptxCoef: Double
    public var oldLogProbs: OldLogProbs

    init(_ c: ResolvedConfig) {
        iterations = c[Self.iterations]
        prompts = c[Self.prompts]
        samples = c[Self.samples]
        maxNewTokens = c[Self.maxNewTokens]
        temperature = Float(c[Self.temperature])
        topK = c[Self.topK]
        topP = Float(c[Self.topP])
        estimator = c[Self.estimator]
        klEstimator = c[Self.klEstimator]
        klCoef = c[Self.klCoef]
        klTarget = c[Self.klTarget]
        klHorizon = c[Self.klHorizon]
        gamma = c[Self.gamma]
        lambda = c[Self.lambda]
        clip = Float(c[Self.clip])
        dualClip = Float(c[Self.dualClip])
        valueClip = Float(c[Self.valueClip])
        entropyCoef = Float(c[Self.entropyCoef])
        rewardClip = c[Self.rewardClip]
        missingEOSPenalty = c[Self.missingEOSPenalty]
        whitenAdvantages = c[Self.whitenAdvantages]
        epochs = c[Self.epochs]
        minibatchSize = c[Self.minibatchSize]
        microBatchSize = c[Self.microBatchSize]
        rolloutBatch = c[Self.rolloutBatch]
        lr = Float(c[Self.lr])
        criticLR = Float(c[Self.criticLR])
        gradClip = Float(c[Self.gradClip])
        minLRRatio = Float(c[Self.minLRRatio])
        ptxCoef = c[Self.ptxCoef]
        oldLogProbs = c[Self.oldLogProbs]
    }
}

/// Which prompts Pre-PPO keeps.
public enum PrePPORule: String, ConfigChoice { case hardest, random }

/// Pre-PPO prompt selection and the task-priority curriculum (Shen et al. 2025).
public struct PromptSelectionSettings: Sendable {
    static let keep = Key<Double>(
        "prepo.keep", 0,
        "Pre-PPO: keep this share of the prompts, the hardest by the SFT policy's mean reward z-scored per task (0: "
            + "off)",
        .within(0, 1))
    static let rule = Key<PrePPORule>(
        "prepo.rule", .hardest,
        "Pre-PPO: hardest keeps the lowest per-task z-scores; random keeps a seeded random subset of the same size "
            + "(the control that separates choosing hard prompts from having fewer prompts)")
    static let samples = Key<Int>("prepo.samples", 4, "Pre-PPO: responses sampled per candidate prompt", .positive)
    static let candidates = Key<Int>(
        "prepo.candidates", 2000, "Pre-PPO: prompts scored (the first N of the seeded order; 0: all)", .nonNegative)
    static let curriculumTasks = Key<String>(
        "curriculum.tasks", "", "comma-separated prompt tasks drawn first (e.g. math,code; the 'task' field of prompts)"
    )
    static let curriculumShare = Key<Double>(
        "curriculum.share", 0, "share of the iterations that draw only curriculum.tasks prompts", .within(0, 1))

    public var keep: Double, rule: PrePPORule, samples: Int, candidates: Int, curriculumTasks: Set<String>,
        curriculumShare: Double
    init(_ c: ResolvedConfig) {
        keep = c[Self.keep]
        rule = c[Self.rule]
        samples = c[Self.samples]
        candidates = c[Self.candidates]
        curriculumTasks = Set(commaList(c[Self.curriculumTasks]))
        curriculumShare = c[Self.curriculumShare]
    }
}

/// PPO's other inputs and limits.
struct PPOExtraKeys {
    static let layout = Key<PPOLayout>(
        "layout", .hydra, "hydra: one frozen trunk, LoRA roles; separate: four full models")
    static let ptx = Key<ConfigPath>(
        "data.ptx", "", "SFT demonstrations JSONL for ppo.ptx_coef (arith: the task's demos)")
    static let maxLength = Key<Int>("train.max_length", 64, "longest prompt + response", .positive)
    static let samples = Key<Int>(
        "log.samples", 1000,
        "responses per iteration written to samples.jsonl (prompt, completion, rewards, advantage; rank 0's, the "
            + "first this many; 0: no file)", .nonNegative)
    static let memoryLimit = Key<Double>(
        "memory.limit_gib", 0, "refuse to start when the memory plan exceeds this (0: 90% of physical memory)",
        .nonNegative)
}

/// PPO reads its tokenizer and model from model.init_from, and its prompts from a task or data.train.
public let ppoSchema = ConfigSchema(
    RunSettings.keys.without(["tokenizer", "model.family", "model.preset"])
        + DataSettings.keys.without(["data.prefs", "data.eval_prefs", "data.chosen_key", "data.rejected_key"])
        + [PPOExtraKeys.layout.declaration] + PPOSettings.keys + RecipeSettings.keys
        + LoRASettings.keys(rank: 16, rankHelp: "LoRA rank of the policy and critic adapters (hydra)")
        + [RewardSettings.rewardHead, RewardSettings.verifier, RewardSettings.format, RewardSettings.proxy].map(
            \.declaration)
        + [RewardSettings.proxyHeads.declaration, RewardSettings.selection.declaration]
        + RewardSources.registry.flatMap(\.keys)
        + LaserSettings.keys + R2MSettings.keys
        + [
            RewardSettings.hybrid.declaration, RewardSettings.genrmModel.declaration,
            RewardSettings.verifierTasks.declaration,
            RewardSettings.referenceTasks.declaration, RewardSettings.bonSamples.declaration,
            RewardSettings.proxyTasks.declaration,
        ]
        + [
            PromptSelectionSettings.keep.declaration, PromptSelectionSettings.rule.declaration,
            PromptSelectionSettings.samples.declaration,
            PromptSelectionSettings.candidates.declaration,
            PromptSelectionSettings.curriculumTasks.declaration, PromptSelectionSettings.curriculumShare.declaration,
        ]
        + [PPOExtraKeys.ptx.declaration, PPOExtraKeys.maxLength.declaration]
        + CadenceSettings.keys(evalEvery: 10, maxExamples: 500, checkpointEvery: 50, logEvery: 1, unit: "iterations")
        + [PPOExtraKeys.memoryLimit.declaration, PPOExtraKeys.samples.declaration])

/// The PPO experiment, typed.
public struct PPOConfig: Sendable {
    public var resolved: ResolvedConfig
    public var run: RunSettings
    public var data: DataSettings
    public var layout: PPOLayout
    public var ppo: PPOSettings
    public var recipe: RecipeSettings
    public var lora: LoRASettings
    public var rewards: RewardSettings
    public var laser: LaserSettings
    public var r2m: R2MSettings
    public var promptSelection: PromptSelectionSettings
    public var cadence: CadenceSettings
    public var ptxFile: String, maxLength: Int
    /// log.samples: responses per iteration in samples.jsonl.
    public var samplesPerIteration: Int
    /// memory.limit_gib in bytes, nil: the default (90% of physical memory).
    public var memoryLimitBytes: Double?
    /// The reward sources the run may use: every registered one (a test may add its own).
    package var rewardRegistry = RewardSources.registry

    public init(_ c: ResolvedConfig) throws {
        resolved = c
        run = try RunSettings(c)
        data = try DataSettings(c)
        layout = c[PPOExtraKeys.layout]
        ppo = PPOSettings(c)
        recipe = try RecipeSettings(c, clip: ppo.clip)
        lora = try LoRASettings(c)
        rewards = RewardSettings(c)
        laser = LaserSettings(c)
        r2m = R2MSettings(c)
        promptSelection = PromptSelectionSettings(c)
        cadence = CadenceSettings(c)
        ptxFile = c[PPOExtraKeys.ptx].path
        maxLength = c[PPOExtraKeys.maxLength]
        samplesPerIteration = c[PPOExtraKeys.samples]
        let limit = c[PPOExtraKeys.memoryLimit]
        memoryLimitBytes = limit > 0 ? limit * 1_073_741_824 : nil
        func check(_ ok: Bool, _ message: String) throws { if !ok { throw ConfigError(message) } }
        try check(!run.initFrom.isEmpty, "'model.init_from' must name the (Hydra-)SFT checkpoint PPO starts from")
        try check(data.task != .none || !data.train.isEmpty, "set 'data.task' or 'data.train' (RL prompts JSONL)")
        try check(
            data.task != .collapse, "data.task collapse has rankings only (no answers to reward): it is for rlhf rm")
        if data.task == .ifeval {
            try check(
                data.train.isEmpty && data.eval.isEmpty,
                "data.task ifeval generates its prompts: leave data.train and data.eval empty")
            try check(
                cadence.evalEvery > 0,
                "data.task ifeval measures held-out instruction following before and after: eval.every must be > 0")
        }
        // Each reward source checks its own keys (and reads them, so a mistyped one is found at load).
        try RewardSources.validate(rewardConfig)
        try check(
            ![.grpo, .rloo, .drGRPO].contains(ppo.estimator) || ppo.samples > 1,
            "'\(ppo.estimator.rawValue)' compares samples of a prompt: set ppo.samples_per_prompt ≥ 2")
        try check(
            !recipe.dynamicSampling || [.grpo, .drGRPO, .rloo, .reinforceBaseline].contains(ppo.estimator),
            "ppo.dynamic_sampling drops groups whose samples' rewards are equal: it needs a group estimator (grpo, "
                + "dr_grpo, rloo, reinforce_baseline), not '\(ppo.estimator.rawValue)'")
        try check(
            !recipe.dynamicSampling || ppo.samples > 1,
            "ppo.dynamic_sampling drops groups whose samples' rewards are equal, and one sample is always equal to "
                + "itself: set ppo.samples_per_prompt ≥ 2")
        try check(
            recipe.overlongBuffer < ppo.maxNewTokens,
            "ppo.overlong_buffer \(recipe.overlongBuffer) must be below ppo.max_new_tokens \(ppo.maxNewTokens): "
                + "every response would be punished")
        try check(
            recipe.clipLow < 1,
            "ppo.clip_low (or ppo.clip) \(recipe.clipLow) must be below 1: the ratio's lower bound 1 − ε")
        try check(
            !recipe.dynamicSampling || ![.laser, .r2m].contains(rewards.selection),
            "ppo.dynamic_sampling scores refill batches that are then dropped, and rewards.selection "
                + "\(rewards.selection.rawValue) learns from every batch it scores: use one or the other")
        try check(layout == .separate || lora.rank > 0, "layout hydra trains LoRA adapters: 'lora.rank' must be > 0")
        try checkSelectionKeys()
    }

    /// Keys of one reward selection or prompt rule set while another is in use would be ignored.
    func checkSelectionKeys() throws {
        func check(_ ok: Bool, _ message: String) throws { if !ok { throw ConfigError(message) } }
        let r2mOwn = [
            ("r2m.heldout_pairs", !r2m.heldoutPairs.isEmpty), ("r2m.steps", r2m.steps != 1),
            ("r2m.anchor", r2m.anchor != 0),
        ]
        if rewards.selection != .r2m, let (key, _) = r2mOwn.first(where: \.1) {
            throw ConfigError(
                "'\(key)' is set, but rewards.selection is \(rewards.selection.rawValue): the key is R2M's (r2m)")
        }
        try check(
            promptSelection.rule == .hardest || promptSelection.keep > 0,
            "'prepo.rule' random keeps a random prepo.keep share of the candidates, but prepo.keep is 0 (off)")
        try check(
            rewards.proxyTasks.isEmpty || rewards.hybrid != 0,
            "'rewards.proxy_tasks' routes the hybrid reward's prompts, but rewards.hybrid is 0 (off)")
        try check(
            laser.rawFirstReward || rewards.selection == .laser,
            "'laser.raw_first_reward' is LASeR's bandit rule, but rewards.selection is \(rewards.selection.rawValue)")
    }

    /// What the reward sources read.
    var rewardConfig: RewardConfig {
        RewardConfig(
            resolved: resolved, rewards: rewards, laser: laser, r2m: r2m, seed: run.seed, iterations: ppo.iterations,
            maxNewTokens: ppo.maxNewTokens, samplesPerPrompt: ppo.samples, task: data.task.rawValue,
            registry: rewardRegistry, precision: run.precision.precision)
    }

    public var loraConfig: LoRAConfig { LoRAConfig(rank: lora.rank, alpha: lora.alpha, targets: lora.targets) }
}
