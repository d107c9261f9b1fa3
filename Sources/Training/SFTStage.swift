import Cluster
import Foundation
import Kernels
import Models
import Roles
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
}

/// Supervised fine-tuning: next-token loss on completions, AdamW with warm-up + cosine,
/// gradient clipping and accumulation, periodic evaluation and checkpoints, exact resume.
public final class SFTStage {
    public let config: SFTConfig
    let workingDirectory: String
    let transport: any Transport
    let sayOnRankZero: (String) -> Void
    /// Where the run is, for failure reports (`rank r (sft, step s): reason`).
    public private(set) var context: FailureContext

    /// `transport` is the data-parallel group: every rank runs this stage, shards each global
    /// batch, and all-reduces gradients; rank 0 alone prints, evaluates and writes files.
    public init(config: SFTConfig, transport: any Transport, workingDirectory: String = FileManager.default.currentDirectoryPath,
                say: @escaping (String) -> Void = { print($0); fflush(nil) }) {
        self.config = config; self.transport = transport; self.workingDirectory = workingDirectory
        self.sayOnRankZero = say
        context = FailureContext(rank: transport.rank, role: "sft", step: 0)
    }

    var isLeader: Bool { transport.rank == 0 }
    func say(_ message: String) { if isLeader { sayOnRankZero(message) } }

    /// Builds the model: from a Hugging Face folder, or a preset sized to the tokenizer.
    static func makeModel(_ c: SFTConfig, tokenizer: any Tokenizer, seed: UInt64) throws -> GPT2Trunk {
        try makeModel(initFrom: c.initFrom, preset: c.preset, tokenizer: tokenizer, seed: seed)
    }

    static func makeModel(initFrom: String, preset: String, tokenizer: any Tokenizer, seed: UInt64) throws -> GPT2Trunk {
        if !initFrom.isEmpty {
            let trunk = try HFCheckpoint.load(directory: initFrom)
            guard tokenizer.vocabSize <= trunk.config.vocabSize else {
                throw TrainingError("tokenizer has \(tokenizer.vocabSize) ids but \(initFrom) has a vocabulary of \(trunk.config.vocabSize)")
            }
            return trunk
        }
        var shape = try GPT2Config.preset(preset)
        shape.vocabSize = tokenizer.vocabSize
        shape.bosTokenId = tokenizer.bosTokenId.map(Int.init)
        shape.eosTokenId = tokenizer.eosTokenId.map(Int.init)
        let trunk = try GPT2Trunk(config: shape)
        var rng = RNG(seed: seed)
        trunk.initialize(rng: &rng)
        return trunk
    }

    public func run() async throws -> SFTResult {
        let c = config
        let worldSize = transport.size
        FailureReport.current = context
        let tokenizer = try Tokenizers.load(c.tokenizer)
        let (train, evalSet): ([SFTExample], [SFTExample])
        if c.task == "arith" {
            let task = ArithTask(seed: c.dataSeed, flaw: c.flaw, flawShare: c.flawShare, evalSize: c.evalSize)
            (train, evalSet) = (task.sftExamples(), task.evalExamples())
        } else if c.lmWeight > 0 {
            train = try JSONL.sft(path: c.trainFile)
            evalSet = c.evalFile.isEmpty ? [] : try JSONL.sft(path: c.evalFile)
        } else {
            (train, evalSet) = ([], [])
        }
        // Reward model only (rm): no demonstrations, no LM evaluation.
        let lmOn = c.lmWeight > 0
        let tokenized = lmOn ? try train.map { try SFTTokenization.tokenize($0, tokenizer: tokenizer, maxLength: c.maxLength) } : []
        var preferences: (train: [PreferenceExample], eval: [PreferenceExample]) = ([], [])
        if c.rewardWeight > 0 {
            if c.task == "arith" {
                let task = ArithTask(seed: c.dataSeed, flaw: c.flaw, flawShare: c.flawShare, evalSize: c.evalSize)
                preferences = (task.preferenceExamples(eval: false), task.preferenceExamples(eval: true))
            } else {
                preferences = (try JSONL.preferences(path: c.prefsFile), c.evalPrefsFile.isEmpty ? [] : try JSONL.preferences(path: c.evalPrefsFile))
            }
            guard c.pairBatchSize % (c.pairMicroBatchSize * worldSize) == 0 else {
                throw ConfigError("'hydra.pair_batch_size' (\(c.pairBatchSize)) must be a multiple of hydra.pair_micro_batch_size × ranks (\(c.pairMicroBatchSize) × \(worldSize))")
            }
        }
        let evalExamples = lmOn ? Array(evalSet.prefix(c.evalMaxExamples)) : []
        let accumulation = try c.accumulationSteps(worldSize: worldSize)
        // SFT has one role, the policy, trained data-parallel on every rank.
        let placement = try Placement.parse(c.placement, worldSize: worldSize)
        guard placement.remote.isEmpty else {
            throw ConfigError("'placement': SFT trains only the policy, replicated on every rank; use colocated")
        }
        let stepsPerEpoch = lmOn ? Double(train.count) / Double(c.batchSize) : Double(preferences.train.count) / Double(c.pairBatchSize)
        let totalSteps = c.steps > 0 ? c.steps : max(1, Int((c.epochs * stepsPerEpoch).rounded(.up)))

        // Rank 0 chooses the run folder and checkpoint; every rank uses its choice (shared filesystem).
        let (folder, checkpoint, resumeMessage) = try await RunFolder.chooseCollectively(
            name: c.name, out: c.out, resume: c.resume, workingDirectory: workingDirectory, transport: transport)
        say("\(c.stageName): run folder \(folder.path)")
        say("resolved config (\(c.resolved.file ?? "defaults")):\n" + c.resolved.yaml)
        say("""
            derived: world size \(worldSize), global batch \(c.batchSize) sequences = micro-batch \(c.microBatchSize) × \
            \(accumulation) accumulation steps × \(worldSize) ranks; \(train.count) training examples, \
            \(String(format: "%.2f", stepsPerEpoch)) optimizer steps per epoch, \(totalSteps) optimizer steps \
            (\(String(format: "%.2f", Double(totalSteps) / stepsPerEpoch)) epochs); \(evalExamples.count) eval examples
            roles: \(!lmOn ? "reward model (pair loss \(c.rmUtility)\(c.centerCoef > 0 ? " + centering \(c.centerCoef)" : ""), \(c.pairBatchSize) pairs per step, \(preferences.train.count) pairs)" : "policy" + (c.rewardWeight > 0 ? " + reward head (Hydra-SFT, w = \(c.rewardWeight), \(c.pairBatchSize) pairs per step, \(preferences.train.count) pairs)" : "")) → ranks 0…\(worldSize - 1) (data parallel)
            tokenizer: \(tokenizer.summary); \(BLAS.summary)
            """)
        if isLeader { try folder.writeConfig(c.resolved.yaml) }
        if c.task == "arith" && isLeader {
            _ = try ArithTask(seed: c.dataSeed, flaw: c.flaw, flawShare: c.flawShare, evalSize: c.evalSize)
                .write(to: (folder.path as NSString).appendingPathComponent("data"))
        }

        let trunk: GPT2Trunk
        var state = TrainingState(stage: c.stageName, step: 0, cursor: 0, optimizerStep: 0, learningRate: 0, rng: RNG(seed: c.seed &+ 7),
                                  tokenizer: c.tokenizer == "byte" ? "byte" : "tokenizer.json", worldSize: worldSize)
        if let checkpoint {
            // LoRA: the checkpoint's model is the merged one; training continues on the base.
            trunk = c.lora != nil ? try Self.makeModel(c, tokenizer: tokenizer, seed: c.seed) : try HFCheckpoint.load(directory: checkpoint)
            state = try Checkpoints.loadState(checkpoint)
            guard state.stage == c.stageName else { throw TrainingError("\(checkpoint) is a '\(state.stage)' checkpoint, not \(c.stageName)") }
            if isLeader { try folder.truncateMetrics(afterStep: state.step) }
        } else {
            trunk = try Self.makeModel(c, tokenizer: tokenizer, seed: c.seed)
        }
        say(resumeMessage + (checkpoint != nil ? " at step \(state.step)" : ""))
        say("model: \(trunk.config.layers) layers, \(trunk.config.heads) heads, \(trunk.config.channels) wide, vocab \(trunk.config.vocabSize), \(trunk.layout.parameterCount) parameters")

        var adapter: LoRAAdapter?
        if let lora = c.lora {
            if let checkpoint { adapter = try PEFTAdapter.load(directory: (checkpoint as NSString).appendingPathComponent("adapter"), modelConfig: trunk.config) }
            else {
                adapter = try LoRAAdapter(config: lora, modelConfig: trunk.config)
                var rng = RNG(seed: c.seed &+ 13)
                adapter!.initialize(rng: &rng)
            }
            say("LoRA rank \(lora.rank) on the frozen trunk: \(adapter!.weights.count) trained parameters besides the head")
        }
        let trainable = adapter?.weights ?? trunk.weights
        let optimizer = AdamW(layout: adapter?.layout ?? trunk.layout.tensors,
                              hyper: AdamWHyperparameters(learningRate: c.lr, beta1: c.beta1, beta2: c.beta2, eps: c.eps, weightDecay: adapter == nil ? c.weightDecay : 0))
        if let checkpoint { try Checkpoints.loadOptimizer(checkpoint, into: optimizer, step: state.optimizerStep) }
        // Hydra-SFT's reward head: from the checkpoint, from init_from when it has one, else fresh.
        var hydra: HydraPairs?
        if c.rewardWeight > 0 {
            let channels = trunk.config.channels
            let headSource = checkpoint ?? (c.initFrom.isEmpty ? nil : c.initFrom)
            let head: ScalarHead
            if let headSource, FileManager.default.fileExists(atPath: (headSource as NSString).appendingPathComponent(ScalarHeadIO.fileName)) {
                head = try ScalarHeadIO.load(directory: headSource, channels: channels)
            } else {
                head = ScalarHead(channels: channels)
                var rng = RNG(seed: c.seed &+ 11)
                head.initialize(rng: &rng)
            }
            hydra = try HydraPairs(train: preferences.train, eval: preferences.eval, tokenizer: tokenizer, maxLength: c.maxLength,
                                   weight: c.rewardWeight, batchSize: c.pairBatchSize, seed: c.seed, head: head, hyper: optimizer.hyper,
                                   utility: c.rmUtility, centerCoefficient: c.centerCoef, adapter: adapter)
            hydra!.trainTrunk = c.trainTrunk
            if let checkpoint {
                let file = try SafeTensorsFile(path: (checkpoint as NSString).appendingPathComponent("reward_head_optimizer.safetensors"))
                try hydra!.optimizer.restore(m: try file.floats("m"), v: try file.floats("v"), step: state.optimizerStep)
            }
        }
        let schedule = LearningRateSchedule(peak: c.lr, minRatio: c.minLRRatio, warmupSteps: c.warmupSteps, totalSteps: totalSteps)
        let stream = lmOn ? DataStream(examples: tokenized, seed: c.seed) : nil
        let gradients = FloatBuffer(count: trainable.count)
        let gradientSum = GradientSum(count: trainable.count)
        var steps: [String: LanguageModelStep] = [:]
        var result = SFTResult(runFolder: folder.path, steps: totalSteps)
        let tokenizerFile = (tokenizer as? BPETokenizer)?.path

        var lastRewardAccuracy: Double?
        func evaluate(step: Int) throws -> EvalResult {
            var metrics: [String: Any] = ["step": step]
            var r = EvalResult(loss: 0, exactMatch: nil, examples: 0)
            if !evalExamples.isEmpty {
                r = try Evaluation.run(trunk: trunk, examples: evalExamples, tokenizer: tokenizer, maxLength: c.maxLength,
                                       maxNewTokens: c.evalMaxNewTokens, batchSize: max(c.microBatchSize, 32))
                metrics["eval_loss"] = r.loss
            }
            if let em = r.exactMatch { metrics["exact_match"] = em }
            if let (accuracy, rewards) = try hydra?.evaluate(trunk: trunk) {
                metrics["reward_accuracy"] = accuracy; lastRewardAccuracy = accuracy
                try RewardHistograms(step: step, rewards: rewards).write(folder: folder)
            }
            try folder.appendMetrics(metrics)
            return r
        }
        func describe(_ r: EvalResult) -> String {
            (lmOn ? "eval loss \(String(format: "%.4f", r.loss))" : "eval") + (r.exactMatch.map { String(format: ", exact match %.1f%%", 100 * $0) } ?? "")
                + (hydra != nil ? lastRewardAccuracy.map { String(format: ", reward accuracy %.1f%%", 100 * $0) } ?? "" : "")
        }
        func save(step: Int) throws {
            // With LoRA the model folder holds the merged weights (a plain reward model for ppo's
            // model.init_from) and adapter/ the adapter itself (for resume).
            result.lastCheckpoint = try Checkpoints.save(directory: folder.checkpoints, step: step, trunk: try adapter.map { try $0.merged(into: trunk) } ?? trunk,
                                                         optimizer: optimizer, state: state, tokenizerFile: tokenizerFile, keepLast: c.keepLast) { dir in
                if let adapter { try PEFTAdapter.save(adapter, directory: (dir as NSString).appendingPathComponent("adapter"), baseModel: c.initFrom) }
                guard let hydra else { return }
                try ScalarHeadIO.save(hydra.head, directory: dir)
                try SafeTensorsFile.write(path: (dir as NSString).appendingPathComponent("reward_head_optimizer.safetensors"), tensors: [
                    (name: "m", shape: [hydra.head.parameters.count], data: UnsafePointer(hydra.optimizer.m.pointer)),
                    (name: "v", shape: [hydra.head.parameters.count], data: UnsafePointer(hydra.optimizer.v.pointer))])
            }
        }

        let hasEval = !evalExamples.isEmpty || !(hydra?.evalPairs.isEmpty ?? true)
        if isLeader && state.step == 0 && hasEval && c.evalEvery > 0 {
            let r = try evaluate(step: 0)
            result.initialEval = r
            say("step 0: \(describe(r))")
        }
        let progress = Progress(total: totalSteps, every: c.logEvery, startStep: state.step)
        while state.step < totalSteps {
            let started = Date()
            let step = state.step + 1
            context.step = step
            FailureReport.current = context
            // Every rank builds the same global batch; rank r takes the r-th contiguous block of
            // micro-batches. The loss is normalised by the whole batch's target tokens, so the
            // sum over ranks of their gradients is exactly the single-process gradient.
            let microBatches = stream?.globalBatch(cursor: state.cursor, size: c.batchSize, microBatchSize: c.microBatchSize) ?? []
            let lossTokens = microBatches.reduce(0) { $0 + $1.lossTokens }
            let mine = lmOn ? microBatches[(transport.rank * accumulation)..<((transport.rank + 1) * accumulation)] : []
            gradientSum.zero()
            var loss = 0.0
            var tokens = 0
            for batch in mine {
                let key = "\(batch.batch)x\(batch.length)"
                let lm = steps[key] ?? LanguageModelStep(trunk: trunk, batch: batch.batch, tokens: batch.length)
                steps[key] = lm
                gradients.zero()
                loss += Double(try lm.run(tokens: batch.tokens, targets: batch.targets, normalizer: lossTokens, trunkGradients: gradients))
                gradientSum.add(gradients)
                tokens += batch.batch * batch.length
            }
            var pairLoss = 0.0, pairCorrect = 0.0
            if let hydra {
                let pairs = hydra.batch(cursor: state.pairCursor ?? 0)
                let share = hydra.batchSize / worldSize
                hydra.headSum.zero()
                (pairLoss, pairCorrect) = try hydra.accumulate(trunk: trunk, mine: Array(pairs[(transport.rank * share)..<((transport.rank + 1) * share)]), microBatch: c.pairMicroBatchSize,
                                                               globalCount: hydra.batchSize, trunkGradients: gradients, trunkSum: gradientSum)
            }
            let communicated = Date()
            // Head-only rm: the trunk has no gradient, so nothing to sum, clip or apply.
            if c.trainTrunk {
                try await transport.allReduce(gradientSum)
                gradientSum.write(into: gradients)
            }
            if let hydra {
                try await transport.allReduce(hydra.headSum)
                hydra.headSum.write(into: hydra.headGradients)
            }
            let totals = try await transport.allReduce([loss, Double(tokens), pairLoss, pairCorrect], op: .sum)
            loss = totals[0]; tokens = Int(totals[1]); pairLoss = totals[2]; pairCorrect = totals[3]
            let communicateSeconds = Date().timeIntervalSince(communicated)
            let norm = c.trainTrunk ? clipGradientNorm(gradients, maxNorm: c.gradClip) : 0
            let lr = schedule.rate(step: step)
            if c.trainTrunk { optimizer.update(parameters: trainable, gradients: gradients, learningRate: lr) }
            if let hydra {
                clipGradientNorm(hydra.headGradients, maxNorm: c.gradClip)
                hydra.optimizer.update(parameters: hydra.head.parameters, gradients: hydra.headGradients, learningRate: lr)
                state.pairCursor = (state.pairCursor ?? 0) + hydra.batchSize
            }
            state.step = step
            if lmOn { state.cursor += c.batchSize }
            state.optimizerStep = optimizer.step
            state.learningRate = lr
            let seconds = Date().timeIntervalSince(started)
            guard loss.isFinite else { throw TrainingError("loss is \(loss); lower train.lr or check the data") }
            if c.checkReplicas { try await checkReplicasAgree(trainable) }
            if isLeader {
                try folder.appendMetrics(["step": step, "loss": Double(loss), "lr": Double(lr), "grad_norm": Double(norm),
                                          "tokens_per_s": Double(tokens) / max(seconds, 1e-9), "seconds": seconds,
                                          "communicate_seconds": communicateSeconds]
                                         .merging(hydra.map { ["bt_loss": pairLoss / Double($0.batchSize), "pair_accuracy": pairCorrect / Double($0.batchSize)] } ?? [:]) { a, _ in a })
                progress.update(step: step, fields: lmOn ? String(format: "loss %.4f lr %.2e |g| %.3f", loss, lr, norm)
                    : String(format: "pair loss %.4f pair accuracy %.3f lr %.2e", pairLoss / Double(c.pairBatchSize), pairCorrect / Double(c.pairBatchSize), lr))
            }
            let last = step == totalSteps
            if isLeader && hasEval && c.evalEvery > 0 && (step % c.evalEvery == 0 || last) {
                let r = try evaluate(step: step)
                result.finalEval = r
                progress.line("step \(step): \(describe(r))")
            }
            if isLeader && (last || (c.checkpointEvery > 0 && step % c.checkpointEvery == 0)) { try save(step: step) }
        }
        // Nobody leaves before the last checkpoint is on disk.
        try await transport.barrier()
        if result.lastCheckpoint == nil { result.lastCheckpoint = Checkpoints.newest(in: folder.checkpoints) }
        result.rewardAccuracy = lastRewardAccuracy
        return result
    }

    /// Debug option train.check_replicas: every rank's weights must be bit-identical after each
    /// step; a checksum of the raw bits is compared across ranks, and divergence stops the run.
    func checkReplicasAgree(_ weights: FloatBuffer) async throws {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for i in 0..<weights.count { hash = (hash ^ UInt64(weights.pointer[i].bitPattern)) &* 0x100_0000_01b3 }
        let all = try await transport.allGather(withUnsafeBytes(of: hash) { Data($0) })
        let hashes = all.map { $0.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) } }
        if let bad = hashes.firstIndex(where: { $0 != hashes[0] }) {
            throw TrainingError("replica weights diverged: rank \(bad)'s checksum differs from rank 0's")
        }
    }
}
