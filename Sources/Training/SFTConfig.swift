import Foundation
import Models

/// Keys every stage shares: the run, the model, the tokenizer, the data, optimisation,
/// evaluation, checkpoints and logging. Stages add their own sections.
public enum CommonKeys {
    public static let run: [ConfigKey] = [
        ConfigKey("name", .string, .string("experiment"), "run name; the run folder is runs/<name>-<timestamp>"),
        ConfigKey("out", .path, .string(""), "run folder (default runs/<name>-<timestamp> under the working folder)"),
        ConfigKey("seed", .int, .int(1), "seed of every random choice (init, data order, sampling)"),
        ConfigKey("resume", .string, .string("auto"), "auto (newest checkpoint of this run name), never, or a checkpoint path"),
        ConfigKey("tokenizer", .string, .string("byte"), "byte, or a tokenizer.json (or folder holding one)"),
        ConfigKey("cluster.timeout", .float, .float(300), "seconds any wait for another rank may last before the run stops"),
        ConfigKey("placement", .string, .string("colocated"), "colocated, or role=rank pairs (e.g. reference=1,reward=1)"),
        ConfigKey("model.preset", .choice(["tiny", "small", "gpt2"]), .string("tiny"), "shape of a freshly initialised model"),
        ConfigKey("model.init_from", .path, .string(""), "Hugging Face GPT-2 folder to start from (overrides preset)"),
    ]
    public static let data: [ConfigKey] = [
        ConfigKey("data.task", .choice(["", "arith"]), .string(""), "built-in task generated in memory (instead of files)"),
        ConfigKey("data.seed", .int, .int(1), "seed of the built-in task's split and flaws"),
        ConfigKey("data.flaw", .choice(["drop_carry", "off_by_one", "random"]), .string("drop_carry"), "arith: the demonstrator's habit"),
        ConfigKey("data.flaw_share", .float, .float(0.6), "arith: share of eligible demos that carry the flaw"),
        ConfigKey("data.eval_size", .int, .int(500), "arith: held-out (a, b) pairs"),
        ConfigKey("data.train", .path, .string(""), "training JSONL (when no task)"),
        ConfigKey("data.eval", .path, .string(""), "evaluation JSONL (when no task)"),
        ConfigKey("data.prefs", .path, .string(""), "preference pairs JSONL for Hydra-SFT (when no task)"),
        ConfigKey("data.eval_prefs", .path, .string(""), "held-out preference pairs JSONL (reward accuracy)"),
    ]
    public static let training: [ConfigKey] = [
        ConfigKey("train.steps", .int, .int(0), "optimizer steps (0: derive from train.epochs)"),
        ConfigKey("train.epochs", .float, .float(1), "passes over the data when train.steps is 0"),
        ConfigKey("train.batch_size", .int, .int(32), "global batch: sequences per optimizer step"),
        ConfigKey("train.micro_batch_size", .int, .int(8), "sequences per forward/backward on one rank"),
        ConfigKey("train.max_length", .int, .int(64), "longest tokenised example kept (longer ones are an error)"),
        ConfigKey("train.lr", .float, .float(1e-3), "peak learning rate"),
        ConfigKey("train.min_lr_ratio", .float, .float(0.1), "cosine floor as a share of train.lr"),
        ConfigKey("train.warmup_steps", .int, .int(20), "linear warm-up steps"),
        ConfigKey("train.weight_decay", .float, .float(0.01), "AdamW decoupled decay (matrices and embeddings only)"),
        ConfigKey("train.beta1", .float, .float(0.9), "AdamW β1"),
        ConfigKey("train.beta2", .float, .float(0.999), "AdamW β2"),
        ConfigKey("train.eps", .float, .float(1e-8), "AdamW ε"),
        ConfigKey("train.grad_clip", .float, .float(1.0), "clip the global gradient norm to this (0: off)"),
        ConfigKey("train.check_replicas", .bool, .bool(false), "debug: compare weight checksums across ranks after every step"),
    ]
    public static let evaluation: [ConfigKey] = [
        ConfigKey("eval.every", .int, .int(100), "evaluate every N optimizer steps (and at the end)"),
        ConfigKey("eval.max_examples", .int, .int(200), "held-out examples per evaluation"),
        ConfigKey("eval.max_new_tokens", .int, .int(8), "greedy decoding budget for exact match"),
        ConfigKey("checkpoint.every", .int, .int(200), "save every N optimizer steps (and at the end; 0: end only)"),
        ConfigKey("checkpoint.keep_last", .int, .int(2), "checkpoints kept; older ones are deleted"),
        ConfigKey("log.every", .int, .int(10), "print a line every N steps when stdout is not a terminal"),
    ]
}

/// Hydra-SFT's extra keys; plain SFT has the same keys with the reward term off.
func hydraKeys(rewardWeight: Double, lmWeight: Double = 1) -> [ConfigKey] {
    [ConfigKey("hydra.reward_weight", .float, .float(rewardWeight), "w in L = L_LM + w·L_BT (0: plain SFT, no reward head)"),
     ConfigKey("hydra.lm_weight", .float, .float(lmWeight), "1: train the LM head on demonstrations; 0: reward model only (rlhf rm)"),
     ConfigKey("hydra.pair_batch_size", .int, .int(32), "preference pairs per optimizer step (global)"),
     ConfigKey("hydra.pair_micro_batch_size", .int, .int(8), "preference pairs per forward/backward on one rank"),
     ConfigKey("rm.utility", .choice(["bt", "x", "log", "x_inv", "logsigmoid", "adaptive"]), .string("bt"),
               "pair loss: Bradley–Terry, or a reward-collapse utility on σ(r_w) − σ(r_l); adaptive: x for closed, x_inv for open_ended prompts"),
     ConfigKey("rm.center_coef", .float, .float(0), "centering regulariser c·(r_w + r_l)² (TRL's center_rewards_coefficient)")]
}

public let sftSchema = ConfigSchema(CommonKeys.run + CommonKeys.data + CommonKeys.training + CommonKeys.evaluation + hydraKeys(rewardWeight: 0))
/// Hydra-SFT: LM loss on demonstrations + 0.1 × Bradley–Terry loss through a reward head on the same trunk.
public let hydraSFTSchema = ConfigSchema(CommonKeys.run + CommonKeys.data + CommonKeys.training + CommonKeys.evaluation + hydraKeys(rewardWeight: 0.1))
/// Reward model: the reward head on a trunk trained with the pair loss alone (no LM term).
public let rmSchema = ConfigSchema(CommonKeys.run + CommonKeys.data + CommonKeys.training + CommonKeys.evaluation + hydraKeys(rewardWeight: 1, lmWeight: 0) + [
    ConfigKey("rm.train_trunk", .bool, .bool(true), "false: train the reward head alone on the frozen trunk (a proxy head PPO reads on the same trunk)"),
    ConfigKey("lora.rank", .int, .int(0), "0: fine-tune the trunk fully; > 0: train a LoRA adapter of this rank (and the head) on the frozen trunk"),
    ConfigKey("lora.alpha", .float, .float(32), "LoRA α"),
    ConfigKey("lora.targets", .string, .string("attn.c_attn,attn.c_proj,mlp.c_fc,mlp.c_proj"), "wrapped projections"),
])

/// The SFT experiment, typed. Built from a resolved config; `validate` checks relations between keys.
public struct SFTConfig: Sendable {
    public var resolved: ResolvedConfig
    public var clusterTimeout: Double
    public var placement: String
    public var name: String, out: String, seed: UInt64, resume: String, tokenizer: String
    public var preset: String, initFrom: String
    public var task: String, dataSeed: UInt64, flaw: ArithFlaw, flawShare: Double, evalSize: Int, trainFile: String, evalFile: String
    public var steps: Int, epochs: Double, batchSize: Int, microBatchSize: Int, maxLength: Int
    public var lr: Float, minLRRatio: Float, warmupSteps: Int, weightDecay: Float, beta1: Float, beta2: Float, eps: Float, gradClip: Float
    public var checkReplicas: Bool
    public var rewardWeight: Double, pairBatchSize: Int, pairMicroBatchSize: Int, prefsFile: String, evalPrefsFile: String
    public var lmWeight: Double, rmUtility: String, centerCoef: Double
    /// rm only: LoRA on the frozen trunk (0: full fine-tuning).
    public var lora: LoRAConfig?
    /// rm only: false trains the head alone.
    public var trainTrunk = true
    /// "sft", "hydra-sft" when the reward term is on, "rm" without the LM term.
    public var stageName: String { lmWeight == 0 ? "rm" : rewardWeight > 0 ? "hydra-sft" : "sft" }
    public var evalEvery: Int, evalMaxExamples: Int, evalMaxNewTokens: Int, checkpointEvery: Int, keepLast: Int, logEvery: Int

    public init(_ c: ResolvedConfig) throws {
        resolved = c
        clusterTimeout = c.double("cluster.timeout")
        placement = c.string("placement")
        name = c.string("name"); out = c.string("out"); seed = UInt64(truncatingIfNeeded: c.int("seed"))
        resume = c.string("resume"); tokenizer = c.string("tokenizer")
        preset = c.string("model.preset"); initFrom = c.string("model.init_from")
        task = c.string("data.task"); dataSeed = UInt64(truncatingIfNeeded: c.int("data.seed"))
        flaw = ArithFlaw(rawValue: c.string("data.flaw"))!; flawShare = c.double("data.flaw_share"); evalSize = c.int("data.eval_size")
        trainFile = c.string("data.train"); evalFile = c.string("data.eval")
        steps = c.int("train.steps"); epochs = c.double("train.epochs"); batchSize = c.int("train.batch_size")
        microBatchSize = c.int("train.micro_batch_size"); maxLength = c.int("train.max_length")
        lr = c.float("train.lr"); minLRRatio = c.float("train.min_lr_ratio"); warmupSteps = c.int("train.warmup_steps")
        weightDecay = c.float("train.weight_decay"); beta1 = c.float("train.beta1"); beta2 = c.float("train.beta2")
        eps = c.float("train.eps"); gradClip = c.float("train.grad_clip"); checkReplicas = c.bool("train.check_replicas")
        rewardWeight = c.double("hydra.reward_weight"); pairBatchSize = c.int("hydra.pair_batch_size")
        pairMicroBatchSize = c.int("hydra.pair_micro_batch_size")
        prefsFile = c.string("data.prefs"); evalPrefsFile = c.string("data.eval_prefs")
        lmWeight = c.double("hydra.lm_weight"); rmUtility = c.string("rm.utility"); centerCoef = c.double("rm.center_coef")
        if case .bool(let v)? = c.values["rm.train_trunk"] { trainTrunk = v }
        if case .int(let rank)? = c.values["lora.rank"], rank > 0 {
            lora = LoRAConfig(rank: rank, alpha: c.float("lora.alpha"), targets: try parseLoRATargets(c.string("lora.targets")))
        }
        evalEvery = c.int("eval.every"); evalMaxExamples = c.int("eval.max_examples"); evalMaxNewTokens = c.int("eval.max_new_tokens")
        checkpointEvery = c.int("checkpoint.every"); keepLast = c.int("checkpoint.keep_last"); logEvery = c.int("log.every")
        try validate()
    }

    func validate() throws {
        func check(_ ok: Bool, _ message: String) throws { if !ok { throw ConfigError(message) } }
        try check(!name.isEmpty && !name.contains("/"), "'name' must be a non-empty name without '/'")
        try check(batchSize > 0 && microBatchSize > 0, "'train.batch_size' and 'train.micro_batch_size' must be positive")
        try check(lmWeight == 0 || lmWeight == 1, "'hydra.lm_weight' must be 1 (with the LM loss) or 0 (reward model only)")
        try check(lmWeight == 1 || rewardWeight > 0, "with hydra.lm_weight 0 there is nothing to train: set hydra.reward_weight > 0")
        try check(lmWeight == 0 || task.isEmpty != trainFile.isEmpty, task.isEmpty ? "set 'data.task' or 'data.train'" : "set either 'data.task' or 'data.train', not both")
        try check(lmWeight == 0 || !task.isEmpty || !evalFile.isEmpty || evalEvery == 0, "'data.eval' is needed for evaluation (or set eval.every=0)")
        try check(steps >= 0 && epochs > 0, "'train.steps' must be ≥ 0 and 'train.epochs' > 0")
        try check(lr > 0 && minLRRatio >= 0 && minLRRatio <= 1, "'train.lr' must be > 0 and 'train.min_lr_ratio' in [0, 1]")
        try check(flawShare >= 0 && flawShare <= 1, "'data.flaw_share' must be in [0, 1]")
        try check(keepLast >= 1, "'checkpoint.keep_last' must be at least 1")
        try check(trainTrunk || lora == nil, "'rm.train_trunk: false' trains the head alone; it cannot be combined with lora.rank > 0")
        try check(rewardWeight >= 0 && pairBatchSize > 0 && pairMicroBatchSize > 0,
                  "'hydra.reward_weight' must be ≥ 0, 'hydra.pair_batch_size' and 'hydra.pair_micro_batch_size' > 0")
        try check(rewardWeight == 0 || !task.isEmpty || !prefsFile.isEmpty, "Hydra-SFT needs 'data.prefs' (or a task)")
        try check(["auto", "never"].contains(resume) || FileManager.default.fileExists(atPath: resume),
                  "'resume' must be auto, never or an existing checkpoint folder; '\(resume)' does not exist")
    }

    /// Micro-batches each rank runs per optimizer step: global batch = micro × accumulation × ranks.
    public func accumulationSteps(worldSize: Int) throws -> Int {
        let perStep = microBatchSize * worldSize
        guard batchSize % perStep == 0 else {
            throw ConfigError("'train.batch_size' (\(batchSize)) must be a multiple of train.micro_batch_size × ranks (\(microBatchSize) × \(worldSize))")
        }
        return batchSize / perStep
    }
}
