import Alignment
import Cluster
import Config
import Datasets
import Foundation
import Kernels
import Models
import Roles
import Runs
import Tokenizers

/// One DPO-family run between steps: its pairs and their cached reference sums, the policy and
/// its optimizer, the held-out evaluator and the training state. `StageLoop` drives `step(_:)`.
final class DPOSession {
    let stage: DPOStage
    var context: FailureContext
    let stageFolder: StageFolder
    let tokenizer: any Tokenizer
    let train: [TokenizedPair]
    let reference: (train: [DPOStage.ReferenceSums], eval: [DPOStage.ReferenceSums])
    let referenceSeconds: Double
    /// The sequences each pair puts through the policy: [x; y_w], [x; y_l] and, for InSPO, the
    /// conditioned ones.
    let kinds: [PairSequenceKind]
    let policy: any CausalLM, adapter: LoRAAdapter?
    let trainer: DataParallelOptimizer
    let evaluator: PreferenceEvaluator
    let schedule: LearningRateSchedule
    let totalSteps: Int
    var state: TrainingState
    var steps: [String: TokenLogProbStep] = [:]
    var initialEval: PreferenceEval?, finalEval: PreferenceEval?
    var trainSeconds = 0.0

    var config: DPOConfig { stage.config }
    var transport: any Transport { stage.transport }
    var folder: RunFolder { stageFolder.folder }

    /// Loads the data and models, chooses the run folder and checkpoint, computes (or reads) the
    /// reference's log-probs: everything before step 1.
    init(_ stage: DPOStage) async throws {
        self.stage = stage
        context = stage.startContext
        let cfg = stage.config, worldSize = stage.transport.size, objective = cfg.objective
        tokenizer = try Tokenizers.load(cfg.run.initFrom.isEmpty ? cfg.run.tokenizer : cfg.run.initFrom)
        let conditioned = objective.needsConditional
        let (train, evalPairs, evalExamples) = try stage.loadPairs(tokenizer: tokenizer, conditioned: conditioned)
        guard !train.isEmpty else { throw DatasetError("no preference pairs to train on") }
        self.train = train
        let accumulation = try cfg.accumulationSteps(worldSize: worldSize)
        guard try Placement.parse(cfg.run.placement, worldSize: worldSize).remote.isEmpty else {
            throw ConfigError(
                "'placement': dpo trains only the policy, replicated on every rank (the reference is its "
                    + "adapters-off pass or a frozen copy); use colocated"
            )
        }
        let stepsPerEpoch = Double(train.count) / Double(cfg.train.batchSize)
        totalSteps =
            cfg.train.steps > 0 ? cfg.train.steps : max(1, Int((cfg.train.epochs * stepsPerEpoch).rounded(.up)))
        stageFolder = try await StageFolder.open(
            stage: "dpo", run: cfg.run, resolved: cfg.resolved, transport: stage.transport,
            workingDirectory: stage.workingDirectory, say: stage.say)
        let checkpoint = stageFolder.checkpoint
        let (base, policy, adapter, trainer) = try await stage.models(tokenizer: tokenizer, checkpoint: checkpoint)
        (self.policy, self.adapter, self.trainer) = (policy, adapter, trainer)
        if let line = trainer.reductionLine(stage.transport) { stage.say(line) }
        state = try stageFolder.resumedState(
            stage: "dpo",
            fresh: TrainingState(
                stage: "dpo", step: 0, cursor: 0, optimizerStep: 0, learningRate: 0, rng: RNG(seed: cfg.run.seed),
                tokenizer: tokenizer is BPETokenizer ? "tokenizer.json" : "byte", worldSize: worldSize))
        if let checkpoint {
            try Checkpoints.loadOptimizer(checkpoint, into: trainer.optimizer, step: state.optimizerStep)
        }
        stage.say(stageFolder.resumeLine(step: state.step))
        try stageFolder.checkSteps(
            done: state.step, total: totalSteps, key: cfg.train.steps > 0 ? "train.steps" : "train.epochs",
            epochs: cfg.train.steps > 0 ? nil : cfg.train.epochs, say: stage.say)
        stage.say(
            stage.derived(
                accumulation: accumulation, pairs: (train.count, evalPairs.count, evalExamples.count),
                steps: (stepsPerEpoch, totalSteps), parameters: (base.parameterCount, trainer.parameters.count),
                tokenizer: tokenizer))
        (reference, referenceSeconds) = try await stage.timedReference(
            base: base, train: train, eval: evalPairs, folder: stageFolder.folder)
        kinds =
            (objective.needsUnconditional ? [.chosen, .rejected] : [])
            + (conditioned ? [.conditionalChosen, .conditionalRejected] : [])
        schedule = LearningRateSchedule(
            peak: cfg.train.lr, minRatio: cfg.train.minLRRatio, warmupSteps: cfg.train.warmupSteps,
            totalSteps: totalSteps)
        evaluator = PreferenceEvaluator(
            policy: policy, adapter: adapter, reference: base, tokenizer: tokenizer, evalPairs: evalPairs,
            referenceSums: reference.eval, evalExamples: evalExamples, maxLength: cfg.train.maxLength,
            beta: objective.beta, maxNewTokens: cfg.cadence.evalMaxNewTokens, conditioned: conditioned,
            klTemperature: cfg.preference.klTemperature, seed: cfg.run.seed)
    }
}

extension DPOSession: TrainingStateStage {
    var stageName: String { "dpo" }
    var cadence: CadenceSettings { config.cadence }
    var divergenceRules: OptimizerSettings? { config.train }

    /// One optimizer step on the global pair batch at the state's cursor.
    func step(_ step: Int) async throws -> DPOStepReport {
        let started = Date(), cfg = config
        let sums = try stage.pairGradients(
            step: DPOStage.PairStep(
                cursor: state.cursor, train: train, reference: reference.train, kinds: kinds,
                objective: cfg.objective, policy: policy, adapter: adapter),
            trainer: trainer, cache: &steps)
        let communicated = Date()
        try await trainer.allReduce(transport)
        let totals = try await sums.summed(over: transport)
        let communicateSeconds = Date().timeIntervalSince(communicated)
        let lr = schedule.rate(step: step)
        let norm = trainer.apply(learningRate: lr, gradClip: cfg.train.gradClip)
        state.step = step
        state.cursor += cfg.train.batchSize
        state.optimizerStep = trainer.optimizer.step
        state.learningRate = lr
        let seconds = Date().timeIntervalSince(started)
        trainSeconds += seconds
        if cfg.train.checkReplicas { try await trainer.checkReplicasAgree(transport) }
        return DPOStepReport(
            step: step, totals: totals, pairs: Double(cfg.train.batchSize), learningRate: lr, gradNorm: norm,
            seconds: seconds, communicateSeconds: communicateSeconds)
    }

    /// Held-out figures of the policy (rank 0), logged.
    func evaluate(step: Int) async throws -> String? {
        guard transport.rank == 0 else { return nil }
        let e = try evaluator.run()
        try folder.append(DPOEvalRecord(step: step, e))
        if step == 0 { initialEval = e } else { finalEval = e }
        return DPOStage.describe(e)
    }

    func save(step: Int) async throws -> String {
        try stage.saveCheckpoint(
            step: step, policy: policy, adapter: adapter, optimizer: trainer.optimizer, state: state,
            tokenizer: tokenizer, folder: folder)
    }

    /// The trained policy as other tools read it (rank 0, once the last step is done).
    func finish() async throws {
        if transport.rank == 0 && state.step == totalSteps {
            try stage.saveFinal(policy, adapter: adapter, folder: folder)
        }
    }
}

/// What a DPO step adds up over the ranks' shares of the pair batch.
struct DPOStepSums: RankSums {
    /// Σ loss, Σ [implicit reward of chosen > rejected], Σ chosen and Σ rejected implicit rewards.
    var loss = 0.0, correct = 0.0, chosenReward = 0.0, rejectedReward = 0.0
    mutating func visitSums(_ visit: (inout Double) -> Void) {
        visit(&loss)
        visit(&correct)
        visit(&chosenReward)
        visit(&rejectedReward)
    }
}

/// One DPO step's metrics line: means over the global pair batch.
struct DPOStepReport: StepReport {
    let step: Int
    let loss: Double, lr: Double, gradNorm: Double
    let rewardAccuracy: Double, chosenReward: Double, rejectedReward: Double, margin: Double
    let pairsPerSecond: Double, seconds: Double, communicateSeconds: Double

    enum CodingKeys: String, CodingKey {
        case step, loss, lr, margin, seconds
        case gradNorm = "grad_norm", rewardAccuracy = "reward_accuracy", chosenReward = "chosen_reward"
        case rejectedReward = "rejected_reward", pairsPerSecond = "pairs_per_s", communicateSeconds =
            "communicate_seconds"
    }

    init(
        step: Int, totals: DPOStepSums, pairs n: Double, learningRate: Float, gradNorm: Float, seconds: Double,
        communicateSeconds: Double
    ) {
        self.step = step
        loss = totals.loss / n
        lr = Double(learningRate)
        self.gradNorm = Double(gradNorm)
        rewardAccuracy = totals.correct / n
        chosenReward = totals.chosenReward / n
        rejectedReward = totals.rejectedReward / n
        margin = (totals.chosenReward - totals.rejectedReward) / n
        pairsPerSecond = n / max(seconds, 1e-9)
        self.seconds = seconds
        self.communicateSeconds = communicateSeconds
    }

    var progressFields: String {
        String(format: "loss %.4f acc %.3f margin %.3f lr %.2e |g| %.3f", loss, rewardAccuracy, margin, lr, gradNorm)
    }
    var watched: WatchedValues { .loss(loss, name: "loss", gradNorm: gradNorm) }
}

/// A DPO evaluation's metrics line.
struct DPOEvalRecord: MetricsRecord {
    let step: Int
    let exactMatch: Double?, conditionedExactMatch: Double?, evalRewardAccuracy: Double?, kl: Double?

    enum CodingKeys: String, CodingKey {
        case step, kl
        case exactMatch = "exact_match", conditionedExactMatch = "conditioned_exact_match", evalRewardAccuracy =
            "eval_reward_accuracy"
    }

    init(step: Int, _ e: PreferenceEval) {
        self.step = step
        (exactMatch, conditionedExactMatch, evalRewardAccuracy, kl) = (
            e.exactMatch, e.conditionedExactMatch, e.rewardAccuracy, e.kl
        )
    }
}
