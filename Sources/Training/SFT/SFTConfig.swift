import Alignment
import Config
import Foundation
import Models

/// Keys every stage shares: the run, the model, the tokenizer, the data, optimisation,
/// evaluation, checkpoints and logging. Stages add their own sections.
public enum CommonKeys {
    public static let run = RunSettings.keys
    public static let data = DataSettings.keys
    public static let training = OptimizerSettings.keys
    public static let evaluation = CadenceSettings.keys()
}

/// The pair loss of reward models: Bradley–Terry, or a reward-collapse utility (Song et al. 2023)
/// on σ(r_w) − σ(r_l); adaptive picks x for closed prompts and x_inv for open-ended ones.
public enum PairUtility: String, ConfigChoice {
    case bt, x, log, xInverse = "x_inv", logsigmoid, adaptive

    /// The utility for a pair (nil: Bradley–Terry).
    func rankUtility(openEnded: Bool) -> RankUtility? {
        switch self {
        case .bt: return nil
        case .x: return .x
        case .log: return .log
        case .xInverse: return .xInverse
        case .logsigmoid: return .logsigmoid
        case .adaptive: return openEnded ? .xInverse : .x
        }
    }
}

/// Hydra-SFT's reward term (plain SFT has it off; rm has the LM term off) and the pair loss.
public struct HydraSettings: Sendable {
    static let rewardWeight = Key<Double>(
        "hydra.reward_weight", 0.1, "w in L = L_LM + w·L_BT (0: plain SFT, no reward head)", .nonNegative)
    static let lmWeight = Key<Double>(
        "hydra.lm_weight", 1, "1: train the LM head on demonstrations; 0: reward model only (rlhf rm)",
        ConfigCheck("0 or 1") { $0 == 0 || $0 == 1 })
    static let pairBatchSize = Key<Int>(
        "hydra.pair_batch_size", 32, "preference pairs per optimizer step (global)", .positive)
    static let pairMicroBatchSize = Key<Int>(
        "hydra.pair_micro_batch_size", 8, "preference pairs per forward/backward on one rank", .positive)
    static let utility = Key<PairUtility>(
        "rm.utility", .bt,
        "pair loss: Bradley–Terry, or a reward-collapse utility on σ(r_w) − σ(r_l); adaptive: x for closed, x_inv "
            + "for open_ended prompts"
    )
    static let centerCoef = Key<Double>(
        "rm.center_coef", 0, "centering regulariser c·(r_w + r_l)² (TRL's center_rewards_coefficient)", .nonNegative)
    static func keys(rewardWeight w: Double, lmWeight: Double = 1) -> [ConfigKey] {
        [
            rewardWeight.withDefault(w).declaration, Self.lmWeight.withDefault(lmWeight).declaration,
            pairBatchSize.declaration,
            pairMicroBatchSize.declaration, utility.declaration, centerCoef.declaration,
        ]
    }

    public var rewardWeight: Double, lmWeight: Double, pairBatchSize: Int, pairMicroBatchSize: Int,
        utility: PairUtility, centerCoef: Double

    init(_ c: ResolvedConfig) {
        rewardWeight = c[Self.rewardWeight]
        lmWeight = c[Self.lmWeight]
        pairBatchSize = c[Self.pairBatchSize]
        pairMicroBatchSize = c[Self.pairMicroBatchSize]
        utility = c[Self.utility]
        centerCoef = c[Self.centerCoef]
    }
}

/// rm only: train the head alone on the frozen trunk.
let trainTrunkKey = Key<Bool>(
    "rm.train_trunk", true,
    "false: train the reward head alone on the frozen trunk (a proxy head PPO reads on the same trunk)")

public let sftSchema = ConfigSchema(
    CommonKeys.run + CommonKeys.data + CommonKeys.training + CommonKeys.evaluation + HydraSettings.keys(rewardWeight: 0)
)
/// Hydra-SFT: LM loss on demonstrations + 0.1 × Bradley–Terry loss through a reward head on the same trunk.
public let hydraSFTSchema = ConfigSchema(
    CommonKeys.run + CommonKeys.data + CommonKeys.training + CommonKeys.evaluation
        + HydraSettings.keys(rewardWeight: 0.1))
/// Reward model: the reward head on a trunk trained with the pair loss alone (no LM term).
/// A reward model trains on pairs only: no demonstrations, no generation.
public let rmSchema = ConfigSchema(
    CommonKeys.run + DataSettings.keys.without(["data.train", "data.eval"]) + CommonKeys.training
        + CommonKeys.evaluation.filter { $0.path != "eval.max_new_tokens" }
        + HydraSettings.keys(rewardWeight: 1, lmWeight: 0) + [trainTrunkKey.declaration]
        + LoRASettings.keys(
            rank: 0,
            rankHelp:
                "0: fine-tune the trunk fully; > 0: train a LoRA adapter of this rank (and the head) on the frozen "
                + "trunk"
        ))

/// The SFT experiment (sft, hydra-sft, rm), typed. `validate` checks relations between keys.
public struct SFTConfig: Sendable {
    public var resolved: ResolvedConfig
    public var run: RunSettings
    public var data: DataSettings
    public var train: OptimizerSettings
    public var cadence: CadenceSettings
    public var hydra: HydraSettings
    /// rm only: LoRA on the frozen trunk (nil: full fine-tuning).
    public var lora: LoRAConfig?
    /// rm only: false trains the head alone.
    public var trainTrunk = true
    /// "sft", "hydra-sft" when the reward term is on, "rm" without the LM term.
    public var stageName: String { hydra.lmWeight == 0 ? "rm" : hydra.rewardWeight > 0 ? "hydra-sft" : "sft" }

    public init(_ c: ResolvedConfig) throws {
        resolved = c
        run = try RunSettings(c)
        data = try DataSettings(c)
        train = OptimizerSettings(c)
        cadence = CadenceSettings(c)
        hydra = HydraSettings(c)
        trainTrunk = c.optional(trainTrunkKey) ?? true
        if c.optional(LoRASettings.rank) != nil { lora = try LoRASettings(c).config }
        try validate()
    }

    func validate() throws {
        func check(_ ok: Bool, _ message: String) throws { if !ok { throw ConfigError(message) } }
        let lmOn = hydra.lmWeight != 0
        try check(
            lmOn || hydra.rewardWeight > 0,
            "with hydra.lm_weight 0 there is nothing to train: set hydra.reward_weight > 0")
        try check(
            data.task != .ifeval, "data.task ifeval has prompts only (no demonstrations or pairs): it is for rlhf ppo")
        try check(
            data.task != .collapse || (!lmOn && data.prefs.isEmpty && data.evalPrefs.isEmpty),
            "data.task collapse has rankings only (no demonstrations): it is for rlhf rm, without data.prefs or "
                + "data.eval_prefs"
        )
        try check(
            !lmOn || (data.task == .none) != data.train.isEmpty,
            data.task == .none ? "set 'data.task' or 'data.train'" : "set either 'data.task' or 'data.train', not both")
        try check(
            !lmOn || data.task != .none || !data.eval.isEmpty || cadence.evalEvery == 0,
            "'data.eval' is needed for evaluation (or set eval.every=0)")
        try check(
            trainTrunk || lora == nil,
            "'rm.train_trunk: false' trains the head alone; it cannot be combined with lora.rank > 0")
        try check(
            hydra.rewardWeight == 0 || data.task != .none || !data.prefs.isEmpty,
            "Hydra-SFT needs 'data.prefs' (or a task)")
    }

    /// Micro-batches each rank runs per optimizer step: global batch = micro × accumulation × ranks.
    public func accumulationSteps(worldSize: Int) throws -> Int { try train.accumulationSteps(worldSize: worldSize) }
}
