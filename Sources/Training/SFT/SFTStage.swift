import Cluster
import Config
import Foundation
import Kernels
import Models
import Roles
import Runs
import Tokenizers

/// What an SFT run produced.
public struct SFTResult: Sendable {
    public var runFolder: String
    public var steps: Int
    public var initialEval: EvalResult?
    public var finalEval: EvalResult?
    public var lastCheckpoint: String?
    /// Hydra-SFT: held-out pairwise accuracy of the reward head at the last evaluation.
    public var rewardAccuracy: Double?
    /// data.task collapse: the pairwise accuracy on the training rankings at the last evaluation.
    public var trainRewardAccuracy: Double?
    /// … and the share whose σ(r) is not inverted by more than 0.01 (the order up to ties).
    public var trainOrderKept: Double?
}

/// Supervised fine-tuning: next-token loss on completions, AdamW with warm-up + cosine,
/// gradient clipping and accumulation, periodic evaluation and checkpoints, exact resume.
public final class SFTStage {
    public let config: SFTConfig
    let workingDirectory: String
    let transport: any Transport
    let sayOnRankZero: (String) -> Void
    /// Where the run is, for failure reports (`rank r (sft, step s): reason`).
    public var context: FailureContext { session?.context ?? startContext }
    let startContext: FailureContext
    var session: SFTSession?

    /// `transport` is the data-parallel group: every rank runs this stage, shards each global
    /// batch, and all-reduces gradients; rank 0 alone prints, evaluates and writes files.
    public init(
        config: SFTConfig, transport: any Transport,
        workingDirectory: String = FileManager.default.currentDirectoryPath,
        say: @escaping (String) -> Void = { Console.note($0) }
    ) {
        self.config = config
        self.transport = transport
        self.workingDirectory = workingDirectory
        self.sayOnRankZero = say
        startContext = FailureContext(rank: transport.rank, role: config.stageName, step: 0)
    }

    var isLeader: Bool { transport.rank == 0 }
    func say(_ message: String) { if isLeader { sayOnRankZero(message) } }

    /// Builds the model: from a Hugging Face folder, or a preset sized to the tokenizer.
    static func makeModel(_ c: SFTConfig, tokenizer: any Tokenizer, seed: UInt64) throws -> any CausalLM {
        try makeModel(
            initFrom: c.run.initFrom, family: c.run.family, preset: c.run.preset, tokenizer: tokenizer, seed: seed)
    }

    /// The shape `makeModel` builds: the folder's configuration, or the preset sized to the tokenizer.
    static func modelShape(initFrom: String, family: String, preset: String, tokenizer: any Tokenizer) throws
        -> any ModelConfiguration
    {
        if !initFrom.isEmpty { return try HFCheckpoint.readConfig(directory: initFrom) }
        return try ModelFamilies.preset(preset, family: family).withVocabulary(
            size: tokenizer.vocabSize, bosTokenId: tokenizer.bosTokenId.map(Int.init),
            eosTokenId: tokenizer.eosTokenId.map(Int.init))
    }

    /// The model `makeModel` builds, frozen in the run's precision and kept once per host (`host`:
    /// the host's first rank builds it, the others map its weights).
    static func frozenModel(_ run: RunSettings, tokenizer: any Tokenizer, host: (any Transport)?) async throws
        -> any CausalLM
    {
        try await HostWeights.frozen(
            host: host, precision: run.precision.precision,
            config: {
                try modelShape(initFrom: run.initFrom, family: run.family, preset: run.preset, tokenizer: tokenizer)
            },
            load: {
                try makeModel(
                    initFrom: run.initFrom, family: run.family, preset: run.preset, tokenizer: tokenizer,
                    seed: run.seed)
            })
    }

    static func makeModel(initFrom: String, family: String, preset: String, tokenizer: any Tokenizer, seed: UInt64)
        throws -> any CausalLM
    {
        if !initFrom.isEmpty {
            let trunk = try HFCheckpoint.load(directory: initFrom)
            guard tokenizer.vocabSize <= trunk.config.vocabSize else {
                throw TrainingError(
                    "tokenizer has \(tokenizer.vocabSize) ids but \(initFrom) has a vocabulary of "
                        + "\(trunk.config.vocabSize)"
                )
            }
            return trunk
        }
        let trunk = try modelShape(initFrom: initFrom, family: family, preset: preset, tokenizer: tokenizer)
            .makeModel(weights: nil)
        var rng = RNG(seed: seed)
        trunk.initialize(rng: &rng)
        return trunk
    }

    public func run() async throws -> SFTResult {
        FailureReport.current = context
        let s = try await SFTSession(
            config, transport: transport, workingDirectory: workingDirectory, context: context, say: say)
        session = s
        let saved = try await StageLoop(stage: s, transport: transport, say: say).run()
        return SFTResult(
            runFolder: s.folder.path, steps: s.totalSteps, initialEval: s.initialEval, finalEval: s.lastEval,
            lastCheckpoint: saved ?? Checkpoints.newest(in: s.folder.checkpoints), rewardAccuracy: s.lastRewardAccuracy,
            trainRewardAccuracy: s.lastTrainRewardAccuracy, trainOrderKept: s.lastTrainOrderKept)
    }
}

extension SFTSession: TrainingStateStage {
    var stageName: String { c.stageName }
    var cadence: CadenceSettings { c.cadence }
    var divergenceRules: OptimizerSettings? { c.train }

    /// Rank 0 evaluates (when the run holds held-out data); the others go on to the next step.
    func evaluate(step: Int) async throws -> String? {
        guard transport.rank == 0 && hasEval else { return nil }
        let r = try evaluateModel(step: step)
        if step == 0 { initialEval = r } else { lastEval = r }
        return describe(r)
    }

    func finish() async throws {}
}

/// One SFT-family step's metrics line: the loss (rm: 0, it trains pairs alone), and for
/// Hydra-SFT and rm the pair loss and accuracy of the reward head.
struct SFTStepReport: StepReport {
    let step: Int
    let loss: Double, lr: Double, gradNorm: Double
    let tokensPerSecond: Double, seconds: Double, communicateSeconds: Double
    let btLoss: Double?, pairAccuracy: Double?
    let lmOn: Bool, trainTrunk: Bool

    enum CodingKeys: String, CodingKey {
        case step, loss, lr, seconds
        case gradNorm = "grad_norm", tokensPerSecond = "tokens_per_s", communicateSeconds = "communicate_seconds"
        case btLoss = "bt_loss", pairAccuracy = "pair_accuracy"
    }

    /// `totals` summed over ranks; `pairBatch` the pairs per step when a reward head trains.
    init(
        step: Int, totals: SFTSession.StepSums, learningRate: Float, gradNorm: Float, seconds: Double,
        communicateSeconds: Double,
        pairBatch: Double?, lmOn: Bool, trainTrunk: Bool
    ) {
        self.step = step
        loss = totals.loss
        lr = Double(learningRate)
        self.gradNorm = Double(gradNorm)
        tokensPerSecond = totals.tokens / max(seconds, 1e-9)
        self.seconds = seconds
        self.communicateSeconds = communicateSeconds
        btLoss = pairBatch.map { totals.pairLoss / $0 }
        pairAccuracy = pairBatch.map { totals.pairCorrect / $0 }
        self.lmOn = lmOn
        self.trainTrunk = trainTrunk
    }

    var progressFields: String {
        lmOn
            ? String(format: "loss %.4f lr %.2e |g| %.3f", loss, lr, gradNorm)
            : String(format: "pair loss %.4f pair accuracy %.3f lr %.2e", btLoss ?? 0, pairAccuracy ?? 0, lr)
    }

    /// rm trains the pair loss alone; its "loss" is that mean. A head-only rm has no gradient norm to judge.
    var watched: WatchedValues {
        .loss(lmOn ? loss : btLoss ?? 0, name: lmOn ? "loss" : "pair loss", gradNorm: trainTrunk ? gradNorm : nil)
    }
}

/// An SFT-family evaluation's metrics line.
struct SFTEvalRecord: MetricsRecord {
    let step: Int
    var evalLoss: Double?, exactMatch: Double?, rewardAccuracy: Double?, trainRewardAccuracy: Double?
    var trainOrderKept: Double?

    init(step: Int) { self.step = step }

    enum CodingKeys: String, CodingKey {
        case step
        case evalLoss = "eval_loss", exactMatch = "exact_match", rewardAccuracy = "reward_accuracy"
        case trainRewardAccuracy = "train_reward_accuracy", trainOrderKept = "train_order_kept"
    }
}
