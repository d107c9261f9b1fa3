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

/// The data of an SFT-family run: tokenised demonstrations (none for rm), held-out examples and
/// preference pairs (Hydra-SFT and rm).
struct SFTData {
    let train: [TokenizedExample]
    let evalExamples: [SFTExample]
    let preferences: (train: [PreferenceExample], eval: [PreferenceExample])

    /// Every example is tokenised and checked here, before step 1 (`notes` says what was found).
    init(_ c: SFTConfig, tokenizer: any Tokenizer, worldSize: Int, notes: DataNotes) throws {
        let lmOn = c.hydra.lmWeight > 0
        let (train, evalSet): ([SFTExample], [SFTExample])
        if c.data.task == .arith {
            let task = c.data.arithTask
            (train, evalSet) = (task.sftExamples(), task.evalExamples())
        } else if lmOn {
            train = try JSONL.sft(path: c.data.train, chat: tokenizer.chat, notes: notes)
            evalSet = c.data.eval.isEmpty ? [] : try JSONL.sft(path: c.data.eval, chat: tokenizer.chat, notes: notes)
        } else {
            (train, evalSet) = ([], [])  // reward model only (rm): no demonstrations, no LM evaluation
        }
        self.train =
            lmOn
            ? try notes.keepingFitting(train) {
                try SFTTokenization.tokenize($0, tokenizer: tokenizer, maxLength: c.train.maxLength)
            } : []
        var preferences: (train: [PreferenceExample], eval: [PreferenceExample]) = ([], [])
        if c.hydra.rewardWeight > 0 {
            if c.data.task == .arith {
                let task = c.data.arithTask
                preferences = (task.preferenceExamples(eval: false), task.preferenceExamples(eval: true))
            } else if c.data.task == .collapse {
                let task = c.data.collapseTask
                preferences = (task.train, task.eval)
            } else {
                preferences = (
                    try JSONL.preferences(path: c.data.prefs, chat: tokenizer.chat, notes: notes),
                    c.data.evalPrefs.isEmpty
                        ? [] : try JSONL.preferences(path: c.data.evalPrefs, chat: tokenizer.chat, notes: notes)
                )
            }
            // Too long pairs are found here, before step 1 (HydraPairs tokenises them again).
            func fitting(_ pairs: [PreferenceExample]) throws -> [PreferenceExample] {
                try notes.keepingFitting(pairs) { e in
                    for response in e.responses {
                        _ = try HydraPairs.sequence(
                            e.prompt, response, tokenizer: tokenizer, maxLength: c.train.maxLength, source: e.source)
                    }
                    return e
                }
            }
            preferences = (try fitting(preferences.train), try fitting(preferences.eval))
            guard c.hydra.pairBatchSize % (c.hydra.pairMicroBatchSize * worldSize) == 0 else {
                throw ConfigError(
                    "'hydra.pair_batch_size' (\(c.hydra.pairBatchSize)) must be a multiple of "
                        + "hydra.pair_micro_batch_size × ranks (\(c.hydra.pairMicroBatchSize) × \(worldSize))"
                )
            }
        }
        self.preferences = preferences
        evalExamples = lmOn ? Array(evalSet.prefix(c.cadence.evalMaxExamples)) : []
    }
}

/// One SFT-family run (sft, hydra-sft, rm) between steps: its model, adapter, optimizer, reward
/// head, data stream and training state. `SFTStage.run` is the loop over `step()`.
final class SFTSession {
    let c: SFTConfig
    let transport: any Transport
    let tokenizer: any Tokenizer
    let data: SFTData
    let stageFolder: StageFolder
    let trunk: any CausalLM
    let adapter: LoRAAdapter?
    let trainer: DataParallelOptimizer
    let hydra: HydraPairs?
    let stream: DataStream?
    let schedule: LearningRateSchedule
    let accumulation: Int, totalSteps: Int
    var state: TrainingState
    var steps: [String: LanguageModelStep] = [:]
    var lastRewardAccuracy: Double?, lastTrainRewardAccuracy: Double?, lastTrainOrderKept: Double?
    /// Where the run is, for failure reports (`rank r (sft, step s): reason`).
    var context: FailureContext
    /// The evaluations before the first step and after the last one evaluated.
    var initialEval: EvalResult?, lastEval: EvalResult?

    var lmOn: Bool { c.hydra.lmWeight > 0 }
    var folder: RunFolder { stageFolder.folder }
    var hasEval: Bool { !data.evalExamples.isEmpty || !(hydra?.evalPairs.isEmpty ?? true) }

    init(
        _ c: SFTConfig, transport: any Transport, workingDirectory: String, context: FailureContext,
        say: (String) -> Void
    ) async throws {
        self.c = c
        self.transport = transport
        self.context = context
        let worldSize = transport.size
        tokenizer = try Tokenizers.load(c.run.tokenizer)
        let notes = c.data.notes()
        data = try SFTData(c, tokenizer: tokenizer, worldSize: worldSize, notes: notes)
        for line in notes.report { say(line) }
        accumulation = try c.accumulationSteps(worldSize: worldSize)
        // SFT has one role, the policy, trained data-parallel on every rank.
        guard try Placement.parse(c.run.placement, worldSize: worldSize).remote.isEmpty else {
            throw ConfigError("'placement': SFT trains only the policy, replicated on every rank; use colocated")
        }
        let stepsPerEpoch = Self.stepsPerEpoch(c, data: data)
        totalSteps = c.train.steps > 0 ? c.train.steps : max(1, Int((c.train.epochs * stepsPerEpoch).rounded(.up)))
        stageFolder = try await StageFolder.open(
            stage: c.stageName, run: c.run, resolved: c.resolved, transport: transport,
            workingDirectory: workingDirectory, say: say)
        say(
            Self.derived(
                c, data: data, worldSize: worldSize, accumulation: accumulation, stepsPerEpoch: stepsPerEpoch,
                totalSteps: totalSteps, tokenizer: tokenizer))
        if c.data.task == .arith && transport.rank == 0 {
            _ = try c.data.arithTask.write(to: (stageFolder.folder.path as NSString).appendingPathComponent("data"))
        }

        // LoRA: a checkpoint's model is the merged one; training continues on the base.
        let checkpoint = stageFolder.checkpoint
        trunk = try await Self.makeTrunk(
            c, tokenizer: tokenizer, checkpoint: checkpoint, transport: transport, say: say)
        try checkContext(trunk.config, maxLength: c.train.maxLength)
        state = try stageFolder.resumedState(stage: c.stageName, fresh: Self.freshState(c, worldSize: worldSize))
        say(stageFolder.resumeLine(step: state.step))
        try stageFolder.checkSteps(
            done: state.step, total: totalSteps, key: c.train.steps > 0 ? "train.steps" : "train.epochs",
            epochs: c.train.steps > 0 ? nil : c.train.epochs, say: say)
        say(Self.modelLine(trunk))
        let model = trunk.config
        adapter = try c.lora.map { try stageAdapter($0, model: model, checkpoint: checkpoint, seed: c.run.seed &+ 13) }
        if let adapter { say(Self.adapterLine(adapter)) }
        trainer = Self.trainer(c, trunk: trunk, adapter: adapter)
        if let line = trainer.reductionLine(transport) { say(line) }
        if let checkpoint {
            try Checkpoints.loadOptimizer(checkpoint, into: trainer.optimizer, step: state.optimizerStep)
        }
        hydra = try Self.rewardHead(
            c, data: data, trunk: trunk, adapter: adapter, tokenizer: tokenizer, hyper: trainer.optimizer.hyper,
            checkpoint: checkpoint, optimizerStep: state.optimizerStep)
        schedule = LearningRateSchedule(
            peak: c.train.lr, minRatio: c.train.minLRRatio, warmupSteps: c.train.warmupSteps, totalSteps: totalSteps)
        stream = c.hydra.lmWeight > 0 ? DataStream(examples: data.train, seed: c.run.seed) : nil
    }

    /// The state of a run that starts at step 0.
    static func freshState(_ c: SFTConfig, worldSize: Int) -> TrainingState {
        TrainingState(
            stage: c.stageName, step: 0, cursor: 0, optimizerStep: 0, learningRate: 0, rng: RNG(seed: c.run.seed &+ 7),
            tokenizer: c.run.tokenizer == "byte" ? "byte" : "tokenizer.json", worldSize: worldSize)
    }

    static func modelLine(_ trunk: any CausalLM) -> String {
        let m = trunk.config
        return "model: \(m.layers) layers, \(m.heads) heads, \(m.channels) wide, vocab \(m.vocabSize), "
            + "\(trunk.parameterCount) parameters"
    }

    static func adapterLine(_ adapter: LoRAAdapter) -> String {
        "LoRA rank \(adapter.config.rank) on the frozen trunk: \(adapter.weights.count) trained parameters besides "
            + "the head"
    }

    /// Optimizer steps per epoch: of the demonstrations, or (rm) of the preference pairs.
    static func stepsPerEpoch(_ c: SFTConfig, data: SFTData) -> Double {
        c.hydra.lmWeight > 0
            ? Double(data.train.count) / Double(c.train.batchSize)
            : Double(data.preferences.train.count) / Double(c.hydra.pairBatchSize)
    }

    /// The trained parameters (the adapter, or the whole trunk) and their AdamW, data parallel.
    static func trainer(_ c: SFTConfig, trunk: any CausalLM, adapter: LoRAAdapter?) -> DataParallelOptimizer {
        DataParallelOptimizer(
            parameters: adapter?.weights ?? trunk.weights, layout: adapter?.layout ?? trunk.parameterLayout,
            hyper: AdamWHyperparameters(
                learningRate: c.train.lr, beta1: c.train.beta1, beta2: c.train.beta2, eps: c.train.eps,
                weightDecay: adapter == nil ? c.train.weightDecay : 0),
            // Layer buckets only when the last backward is the step's last gradient
            // (Hydra-SFT's pairs add to the trunk afterwards).
            buckets: adapter == nil && c.trainTrunk && c.hydra.rewardWeight == 0 ? trunk.gradientBuckets : nil,
            overlap: c.run.overlap)
    }

    static func derived(
        _ c: SFTConfig, data: SFTData, worldSize: Int, accumulation: Int, stepsPerEpoch: Double, totalSteps: Int,
        tokenizer: any Tokenizer
    ) -> String {
        let h = c.hydra, pairs = data.preferences.train.count
        let roles =
            h.lmWeight == 0
            ? "reward model (pair loss "
                + "\(h.utility.rawValue)\(h.centerCoef > 0 ? " + centering \(h.centerCoef)" : ""), \(h.pairBatchSize) "
                + "pairs per step, \(pairs) pairs)"
            : "policy"
                + (h.rewardWeight > 0
                    ? " + reward head (Hydra-SFT, w = \(h.rewardWeight), \(h.pairBatchSize) pairs per step, \(pairs) "
                        + "pairs)"
                    : "")
        return """
            derived: world size \(worldSize), global batch \(c.train.batchSize) sequences = micro-batch \
            \(c.train.microBatchSize) × \
            \(accumulation) accumulation steps × \(worldSize) ranks; \(h.lmWeight > 0 ? data.train.count : 0) training \
            examples, \
            \(String(format: "%.2f", stepsPerEpoch)) optimizer steps per epoch, \(totalSteps) optimizer steps \
            (\(String(format: "%.2f", Double(totalSteps) / stepsPerEpoch)) epochs); \(data.evalExamples.count) eval \
            examples
            roles: \(roles) → ranks 0…\(worldSize - 1) (data parallel)
            tokenizer: \(tokenizer.summary); \(BLAS.summary)
            \(c.run.precisionLine)
            """
    }

    /// Hydra-SFT's reward head: from the checkpoint, from init_from when it has one, else fresh.
    static func rewardHead(
        _ c: SFTConfig, data: SFTData, trunk: any CausalLM, adapter: LoRAAdapter?, tokenizer: any Tokenizer,
        hyper: AdamWHyperparameters, checkpoint: String?, optimizerStep: Int
    ) throws -> HydraPairs? {
        guard c.hydra.rewardWeight > 0 else { return nil }
        let channels = trunk.config.channels
        let headSource = checkpoint ?? (c.run.initFrom.isEmpty ? nil : c.run.initFrom)
        let head: ScalarHead
        if let headSource,
            FileManager.default.fileExists(
                atPath: (headSource as NSString).appendingPathComponent(ScalarHeadIO.fileName))
        {
            head = try ScalarHeadIO.load(directory: headSource, channels: channels)
        } else {
            head = ScalarHead(channels: channels)
            var rng = RNG(seed: c.run.seed &+ 11)
            head.initialize(rng: &rng)
        }
        let hydra = try HydraPairs(
            train: data.preferences.train, eval: data.preferences.eval, tokenizer: tokenizer,
            maxLength: c.train.maxLength,
            weight: c.hydra.rewardWeight, batchSize: c.hydra.pairBatchSize, seed: c.run.seed, head: head, hyper: hyper,
            utility: c.hydra.utility, centerCoefficient: c.hydra.centerCoef, adapter: adapter)
        hydra.trainTrunk = c.trainTrunk
        if let checkpoint {
            let file = try SafeTensorsFile(
                path: (checkpoint as NSString).appendingPathComponent("reward_head_optimizer.safetensors"))
            try hydra.optimizer.restore(m: try file.floats("m"), v: try file.floats("v"), step: optimizerStep)
        }
        return hydra
    }

    /// What one step adds up over the ranks.
    struct StepSums: RankSums {
        var loss = 0.0, tokens = 0.0, pairLoss = 0.0, pairCorrect = 0.0
        mutating func visitSums(_ visit: (inout Double) -> Void) {
            visit(&loss)
            visit(&tokens)
            visit(&pairLoss)
            visit(&pairCorrect)
        }
    }

    /// One optimizer step. Every rank builds the same global batch; rank r takes the r-th
    /// contiguous block of micro-batches. The loss is normalised by the whole batch's target
    /// tokens, so the sum over ranks of their gradients is exactly the single-process gradient.
    /// The trunk: under LoRA no step touches it, so it is frozen and the ranks of a host keep it
    /// once; trained in full, each rank's own (a checkpoint's model when resuming).
    static func makeTrunk(
        _ c: SFTConfig, tokenizer: any Tokenizer, checkpoint: String?, transport: any Transport,
        say: (String) -> Void
    ) async throws -> any CausalLM {
        guard c.lora == nil else {
            let host = c.run.sharing(try await c.run.hostGroup(transport))
            let trunk = try await SFTStage.frozenModel(c.run, tokenizer: tokenizer, host: host)
            if let line = HostWeights.summary(trunk, host: host) { say(line) }
            return trunk
        }
        let trunk =
            try checkpoint.map { try HFCheckpoint.load(directory: $0) }
            ?? SFTStage.makeModel(c, tokenizer: tokenizer, seed: c.run.seed)
        c.run.apply(to: trunk, frozen: false)
        return trunk
    }

    func step(_ step: Int) async throws -> SFTStepReport {
        let started = Date()
        trainer.beginStep()
        var sums = try languageModelGradients()
        if let hydra {
            let pairs = hydra.batch(cursor: state.pairCursor ?? 0)
            let share = hydra.batchSize / transport.size
            hydra.headSum.zero()
            (sums.pairLoss, sums.pairCorrect) = try hydra.accumulate(
                trunk: trunk, mine: Array(pairs[(transport.rank * share)..<((transport.rank + 1) * share)]),
                microBatch: c.hydra.pairMicroBatchSize, globalCount: hydra.batchSize,
                trunkGradients: trainer.gradients, trunkSum: trainer.sum)
        }
        let communicated = Date()
        // Head-only rm: the trunk has no gradient, so nothing to sum, clip or apply.
        if c.trainTrunk { try await trainer.allReduce(transport) }
        if let hydra {
            try await transport.allReduce(hydra.headSum)
            hydra.headSum.write(into: hydra.headGradients)
        }
        let totals = try await sums.summed(over: transport)
        let communicateSeconds = Date().timeIntervalSince(communicated)
        let lr = schedule.rate(step: step)
        let norm = c.trainTrunk ? trainer.apply(learningRate: lr, gradClip: c.train.gradClip) : 0
        if let hydra {
            clipGradientNorm(hydra.headGradients, maxNorm: c.train.gradClip)
            hydra.optimizer.update(parameters: hydra.head.parameters, gradients: hydra.headGradients, learningRate: lr)
            state.pairCursor = (state.pairCursor ?? 0) + hydra.batchSize
        }
        state.step = step
        if lmOn { state.cursor += c.train.batchSize }
        state.optimizerStep = trainer.optimizer.step
        state.learningRate = lr
        let seconds = Date().timeIntervalSince(started)
        if c.train.checkReplicas { try await trainer.checkReplicasAgree(transport) }
        return SFTStepReport(
            step: step, totals: totals, learningRate: lr, gradNorm: norm, seconds: seconds,
            communicateSeconds: communicateSeconds, pairBatch: hydra.map { Double($0.batchSize) },
            lmOn: lmOn, trainTrunk: c.trainTrunk)
    }

    /// This rank's micro-batches of the step's global batch: their gradients into the trainer's
    /// exact sum; returns the loss and token count they add.
    func languageModelGradients() throws -> StepSums {
        let microBatches =
            stream?.globalBatch(cursor: state.cursor, size: c.train.batchSize, microBatchSize: c.train.microBatchSize)
            ?? []
        let lossTokens = microBatches.reduce(0) { $0 + $1.lossTokens }
        let mine = lmOn ? microBatches[(transport.rank * accumulation)..<((transport.rank + 1) * accumulation)] : []
        var sums = StepSums()
        for (i, batch) in mine.enumerated() {
            let key = "\(batch.batch)x\(batch.length)"
            let lm = steps[key] ?? LanguageModelStep(trunk: trunk, batch: batch.batch, tokens: batch.length)
            steps[key] = lm
            trainer.beginMicroBatch()
            // The last backward of a full fine-tune starts each layer's all-reduce as it finishes it.
            let ready = i == mine.count - 1 ? trainer.overlappingLastMicroBatch(transport) : nil
            sums.loss += Double(
                try lm.run(
                    tokens: batch.tokens, targets: batch.targets, normalizer: lossTokens,
                    trunkGradients: trainer.gradients, gradientsReady: ready))
            trainer.endMicroBatch()
            sums.tokens += Double(batch.batch * batch.length)
        }
        return sums
    }

    /// Held-out loss and exact match, and the reward head's pairwise accuracy (rank 0), logged.
    func evaluateModel(step: Int) throws -> EvalResult {
        var record = SFTEvalRecord(step: step)
        var r = EvalResult(loss: 0, exactMatch: nil, examples: 0)
        if !data.evalExamples.isEmpty {
            r = try Evaluation.run(
                trunk: trunk, examples: data.evalExamples, tokenizer: tokenizer, maxLength: c.train.maxLength,
                maxNewTokens: c.cadence.evalMaxNewTokens, batchSize: max(c.train.microBatchSize, 32))
            record.evalLoss = r.loss
        }
        record.exactMatch = r.exactMatch
        if let (accuracy, _, rewards) = try hydra?.evaluate(trunk: trunk) {
            record.rewardAccuracy = accuracy
            lastRewardAccuracy = accuracy
            try RewardHistograms(step: step, rewards: rewards).write(folder: folder)
        }
        if c.data.task == .collapse, let (accuracy, kept, _) = try hydra?.evaluate(trunk: trunk, training: true) {
            record.trainRewardAccuracy = accuracy
            record.trainOrderKept = kept
            lastTrainRewardAccuracy = accuracy
            lastTrainOrderKept = kept
        }
        try folder.append(record)
        return r
    }

    func describe(_ r: EvalResult) -> String {
        (lmOn ? "eval loss \(String(format: "%.4f", r.loss))" : "eval")
            + (r.exactMatch.map { String(format: ", exact match %.1f%%", 100 * $0) } ?? "")
            + (hydra != nil
                ? lastRewardAccuracy.map { String(format: ", reward accuracy %.1f%%", 100 * $0) } ?? "" : "")
    }

    /// A checkpoint. With LoRA the model folder holds the merged weights (a plain reward model for
    /// ppo's model.init_from) and adapter/ the adapter itself (for resume).
    func save(step: Int) throws -> String {
        try Checkpoints.save(
            directory: folder.checkpoints, step: step, trunk: try adapter.map { try trunk.merging($0) } ?? trunk,
            optimizer: trainer.optimizer, state: state, tokenizer: tokenizer as? BPETokenizer,
            keepLast: c.cadence.keepLast
        ) { dir in
            // The checkpoint is the model (LoRA merged in): its card.
            try ModelCard.of(
                method: self.c.stageName + (self.adapter.map { ", LoRA rank \($0.config.rank) (merged)" } ?? ""),
                run: self.c.run, data: self.c.data, resolved: self.c.resolved, folder: self.folder,
                library: "transformers"
            ).write(into: dir)
            if let adapter = self.adapter {
                try PEFTAdapter.save(
                    adapter, directory: (dir as NSString).appendingPathComponent("adapter"),
                    baseModel: self.c.run.initFrom)
            }
            guard let hydra = self.hydra else { return }
            try ScalarHeadIO.save(hydra.head, directory: dir)
            try SafeTensorsFile.write(
                path: (dir as NSString).appendingPathComponent("reward_head_optimizer.safetensors"),
                tensors: [
                    (name: "m", shape: [hydra.head.parameters.count], data: UnsafePointer(hydra.optimizer.m.pointer)),
                    (name: "v", shape: [hydra.head.parameters.count], data: UnsafePointer(hydra.optimizer.v.pointer)),
                ])
        }
    }
}
