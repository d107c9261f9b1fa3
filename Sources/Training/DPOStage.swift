import Alignment
import Cluster
import Foundation
import Kernels
import Models
import Tokenizers

/// Held-out figures of a preference-trained policy.
public struct PreferenceEval: Sendable, Equatable {
    /// Greedy generation from π(y|x): the production setting.
    public var exactMatch: Double?
    /// InSPO: greedy generation conditioned on the model's own draft, π(y | x, draft) (§6.4).
    public var conditionedExactMatch: Double?
    /// Share of held-out pairs with implicit reward β log π/π_ref higher for the chosen response.
    public var rewardAccuracy: Double?
    /// Mean over held-out prompts of Σ_t log π − log π_ref on samples from π (k1, unbiased).
    public var kl: Double?
}

public struct DPOResult: Sendable {
    public var runFolder: String
    public var loss: String
    public var initialEval: PreferenceEval?
    public var finalEval: PreferenceEval?
    public var trainSeconds: Double
    public var referenceSeconds: Double
    public var lastCheckpoint: String?
}

/// Offline preference optimisation (algorithms.md §4–§6): DPO, IPO, cDPO, robust, hinge, CPL and
/// InSPO on preference pairs. With LoRA the reference is the same trunk with adapters off;
/// otherwise the policy trains a copy and the loaded model stays frozen as the reference. The
/// reference's log-probs are computed once (sharded over ranks) and cached in the run folder.
/// Data parallel as SFT: each rank takes a contiguous share of the global pair batch and
/// gradients are summed exactly (Float64), so any world size gives the single-process result.
public final class DPOStage {
    public let config: DPOConfig
    let transport: any Transport
    let workingDirectory: String
    let sayOnRankZero: (String) -> Void
    public private(set) var context: FailureContext

    public init(config: DPOConfig, transport: any Transport, workingDirectory: String = FileManager.default.currentDirectoryPath,
                say: @escaping (String) -> Void = { print($0); fflush(nil) }) {
        self.config = config; self.transport = transport; self.workingDirectory = workingDirectory; self.sayOnRankZero = say
        context = FailureContext(rank: transport.rank, role: "dpo", step: 0)
    }
    var isLeader: Bool { transport.rank == 0 }
    func say(_ m: String) { if isLeader { sayOnRankZero(m) } }

    public func run() async throws -> DPOResult {
        let cfg = config, c = config.resolved, worldSize = transport.size
        let objective = cfg.objective
        FailureReport.current = context
        let tokenizer = try Tokenizers.load(cfg.initFrom.isEmpty ? c.string("tokenizer") : cfg.initFrom)
        let maxLength = c.int("train.max_length")

        // Data: preference pairs (train and held-out) and, for exact match, held-out prompts with answers.
        var trainExamples: [PreferenceExample], evalPairExamples: [PreferenceExample], evalExamples: [SFTExample]
        if cfg.task == "arith" {
            let task = cfg.arithTask
            trainExamples = task.preferenceExamples(eval: false)
            evalPairExamples = task.preferenceExamples(eval: true)
            evalExamples = task.evalExamples()
        } else {
            // Rankings of K > 2 responses become their C(K, 2) pairs.
            let lines = try JSONL.preferences(path: c.string("data.prefs"))
            trainExamples = lines.flatMap(\.pairs)
            if trainExamples.count > lines.count { say("data.prefs: \(lines.count) lines hold rankings; trained as \(trainExamples.count) pairs") }
            evalPairExamples = c.string("data.eval_prefs").isEmpty ? [] : try JSONL.preferences(path: c.string("data.eval_prefs")).flatMap(\.pairs)
            evalExamples = c.string("data.eval").isEmpty ? [] : try JSONL.sft(path: c.string("data.eval"))
        }
        let evalLimit = c.int("eval.max_examples")
        evalPairExamples = Array(evalPairExamples.prefix(evalLimit))
        evalExamples = Array(evalExamples.prefix(evalLimit))
        let conditioned = objective.needsConditional
        let train = try trainExamples.map { try TokenizedPair($0, tokenizer: tokenizer, maxLength: maxLength, conditioned: conditioned) }
        let evalPairs = try evalPairExamples.map { try TokenizedPair($0, tokenizer: tokenizer, maxLength: maxLength, conditioned: false) }
        guard !train.isEmpty else { throw DatasetError("no preference pairs to train on") }
        let accumulation = try cfg.accumulationSteps(worldSize: worldSize)
        let stepsPerEpoch = Double(train.count) / Double(cfg.batchSize)
        let totalSteps = c.int("train.steps") > 0 ? c.int("train.steps") : max(1, Int((c.double("train.epochs") * stepsPerEpoch).rounded(.up)))

        let (folder, checkpoint, resumeMessage) = try await RunFolder.chooseCollectively(
            name: cfg.name, out: cfg.out, resume: cfg.resume, workingDirectory: workingDirectory, transport: transport)
        say("dpo: run folder \(folder.path)")
        say("resolved config (\(c.file ?? "defaults")):\n" + c.yaml)
        if isLeader { try folder.writeConfig(c.yaml) }

        // Models: the loaded model is the reference; the policy is it plus LoRA, or a copy.
        let base = try SFTStage.makeModel(initFrom: cfg.initFrom, preset: c.string("model.preset"), tokenizer: tokenizer, seed: cfg.seed)
        let lora = cfg.loraRank > 0
        var policyLoRA: LoRAAdapter?
        let policyTrunk: GPT2Trunk
        if lora {
            let loraConfig = LoRAConfig(rank: cfg.loraRank, alpha: c.float("lora.alpha"), targets: try cfg.loraTargets())
            if let checkpoint {
                let loaded = try PEFTAdapter.load(directory: (checkpoint as NSString).appendingPathComponent("adapter"), modelConfig: base.config)
                guard loaded.config.rank == loraConfig.rank, loaded.config.alpha == loraConfig.alpha, loaded.config.targets == loraConfig.targets else {
                    throw ConfigError("\(checkpoint)/adapter has rank \(loaded.config.rank), α \(loaded.config.alpha), targets \(loaded.config.targets.map(\.rawValue)); the config asks for \(loraConfig.rank), \(loraConfig.alpha), \(loraConfig.targets.map(\.rawValue))")
                }
                policyLoRA = loaded
            } else {
                policyLoRA = try LoRAAdapter(config: loraConfig, modelConfig: base.config)
                var rng = RNG(seed: cfg.seed &+ 3)
                policyLoRA!.initialize(rng: &rng)
            }
            policyTrunk = base
        } else {
            policyTrunk = try checkpoint.map { try HFCheckpoint.load(directory: $0) } ?? GPT2Trunk(config: base.config, weights: base.weights.clone())
        }
        let trainable = policyLoRA?.weights ?? policyTrunk.weights
        let optimizer = AdamW(layout: policyLoRA?.layout ?? policyTrunk.layout.tensors,
                              hyper: AdamWHyperparameters(learningRate: c.float("train.lr"), beta1: c.float("train.beta1"), beta2: c.float("train.beta2"),
                                                          eps: c.float("train.eps"), weightDecay: lora ? 0 : c.float("train.weight_decay")))
        var state = TrainingState(stage: "dpo", step: 0, cursor: 0, optimizerStep: 0, learningRate: 0, rng: RNG(seed: cfg.seed),
                                  tokenizer: tokenizer is BPETokenizer ? "tokenizer.json" : "byte", worldSize: worldSize)
        if let checkpoint {
            state = try Checkpoints.loadState(checkpoint)
            guard state.stage == "dpo" else { throw TrainingError("\(checkpoint) is a '\(state.stage)' checkpoint, not dpo") }
            try Checkpoints.loadOptimizer(checkpoint, into: optimizer, step: state.optimizerStep)
            if isLeader { try folder.truncateMetrics(afterStep: state.step) }
        }
        say(resumeMessage + (checkpoint != nil ? " at step \(state.step)" : ""))
        say("""
            derived: world size \(worldSize), global batch \(cfg.batchSize) pairs = micro-batch \(cfg.microBatchSize) × \(accumulation) \
            accumulation steps × \(worldSize) ranks; \(train.count) training pairs, \(String(format: "%.2f", stepsPerEpoch)) steps per epoch, \
            \(totalSteps) steps; \(evalPairs.count) held-out pairs, \(evalExamples.count) held-out prompts
            loss: \(objective.kind.name)\(objective.nllCoefficient != 0 ? " + \(objective.nllCoefficient) × NLL(chosen)" : ""); \
            policy: \(lora ? "LoRA rank \(cfg.loraRank) on the frozen trunk; reference: adapters off" : "full fine-tune; reference: frozen copy"); \
            \(base.layout.parameterCount) trunk parameters, \(trainable.count) trained
            tokenizer: \(tokenizer.summary); \(BLAS.summary)
            """)

        // The reference's log-probs, once: loaded from the run folder or computed sharded over ranks.
        let referenceStarted = Date()
        let (reference, wasCached) = try await referenceLogProbs(base: base, train: train, eval: evalPairs, folder: folder)
        let referenceSeconds = Date().timeIntervalSince(referenceStarted)
        say(String(format: "reference log-probs: %d + %d pairs in %.2f s (%@ reference_logps.safetensors)", train.count, evalPairs.count, referenceSeconds,
                   wasCached ? "read from" : "computed once, cached in"))

        let kinds: [PairSequenceKind] = (objective.needsUnconditional ? [.chosen, .rejected] : []) + (conditioned ? [.conditionalChosen, .conditionalRejected] : [])
        let schedule = LearningRateSchedule(peak: c.float("train.lr"), minRatio: c.float("train.min_lr_ratio"), warmupSteps: c.int("train.warmup_steps"), totalSteps: totalSteps)
        let gradients = FloatBuffer(count: trainable.count)
        let gradientSum = GradientSum(count: trainable.count)
        var steps: [String: TokenLogProbStep] = [:]
        var result = DPOResult(runFolder: folder.path, loss: objective.kind.name, trainSeconds: 0, referenceSeconds: referenceSeconds)
        let evaluator = PreferenceEvaluator(policy: policyTrunk, adapter: policyLoRA, reference: base, tokenizer: tokenizer, evalPairs: evalPairs,
                                            referenceSums: reference.eval, evalExamples: evalExamples, maxLength: maxLength, beta: objective.beta,
                                            maxNewTokens: c.int("eval.max_new_tokens"), conditioned: conditioned,
                                            klTemperature: c.float("eval.kl_temperature"), seed: cfg.seed)
        func evaluate(step: Int) throws -> PreferenceEval {
            let e = try evaluator.run()
            var m: [String: Any] = ["step": step]
            if let v = e.exactMatch { m["exact_match"] = v }
            if let v = e.conditionedExactMatch { m["conditioned_exact_match"] = v }
            if let v = e.rewardAccuracy { m["eval_reward_accuracy"] = v }
            if let v = e.kl { m["kl"] = v }
            try folder.appendMetrics(m)
            return e
        }
        func describe(_ e: PreferenceEval) -> String {
            [e.exactMatch.map { String(format: "exact match %.1f%%", 100 * $0) }, e.conditionedExactMatch.map { String(format: "conditioned on own draft %.1f%%", 100 * $0) },
             e.rewardAccuracy.map { String(format: "implicit-reward accuracy %.1f%%", 100 * $0) }, e.kl.map { String(format: "KL to reference %.4f", $0) }]
                .compactMap { $0 }.joined(separator: ", ")
        }
        let tokenizerFile = (tokenizer as? BPETokenizer)?.path
        func save(step: Int) throws {
            result.lastCheckpoint = try Checkpoints.save(directory: folder.checkpoints, step: step, trunk: lora ? nil : policyTrunk, optimizer: optimizer,
                                                         state: state, tokenizerFile: tokenizerFile, keepLast: c.int("checkpoint.keep_last")) { dir in
                if let policyLoRA { try PEFTAdapter.save(policyLoRA, directory: (dir as NSString).appendingPathComponent("adapter"), baseModel: cfg.initFrom) }
            }
        }
        let evalEvery = c.int("eval.every"), checkpointEvery = c.int("checkpoint.every")
        if isLeader && state.step == 0 && evalEvery > 0 {
            let e = try evaluate(step: 0)
            result.initialEval = e
            say("step 0: \(describe(e))")
        }

        let progress = Progress(total: totalSteps, every: c.int("log.every"), startStep: state.step)
        let share = cfg.batchSize / worldSize
        var trainSeconds = 0.0
        while state.step < totalSteps {
            let started = Date()
            let step = state.step + 1
            context.step = step
            FailureReport.current = context
            let global = pairOrder(count: train.count, seed: cfg.seed, cursor: state.cursor, size: cfg.batchSize)
            let mine = Array(global[(transport.rank * share)..<((transport.rank + 1) * share)])
            gradientSum.zero()
            // Σ loss, Σ [h > 0], Σ chosen reward, Σ rejected reward over this rank's pairs.
            var sums = [0.0, 0.0, 0.0, 0.0]
            for start in stride(from: 0, to: mine.count, by: cfg.microBatchSize) {
                let indices = Array(mine[start..<min(start + cfg.microBatchSize, mine.count)])
                let pairs = indices.map { train[$0] }
                let batch = PreferenceBatch(pairs, kinds: kinds)
                let key = "\(batch.batch)x\(batch.length)"
                if steps[key] == nil && steps.count >= 8 { steps.removeAll() }
                let lp = steps[key] ?? TokenLogProbStep(trunk: policyTrunk, batch: batch.batch, tokens: batch.length, adapter: policyLoRA)
                steps[key] = lp
                let logProbs = try lp.forward(tokens: batch.tokens, targets: batch.targets)
                let perPair = batch.responseLogProbs(logProbs, pairs: pairs.count)
                var dLogProbs = [Float](repeating: 0, count: logProbs.count)
                var grads: [[PairSequenceKind: [Double]]] = []
                for (i, index) in indices.enumerated() {
                    let p = perPair[i]
                    let input = PreferenceObjective.PairLogProbs(chosen: p[.chosen] ?? [], rejected: p[.rejected] ?? [],
                                                                 conditionalChosen: p[.conditionalChosen] ?? [], conditionalRejected: p[.conditionalRejected] ?? [],
                                                                 refChosen: reference.train[index].chosen, refRejected: reference.train[index].rejected)
                    let g = objective.evaluate(input)
                    sums[0] += g.loss
                    // Implicit rewards β(log π − log π_ref) of the policy the loss trains (conditional for InSPO without its DPO term).
                    let w = (p[.chosen] ?? p[.conditionalChosen]!).reduce(0, +), l = (p[.rejected] ?? p[.conditionalRejected]!).reduce(0, +)
                    let rw = objective.beta * (w - input.refChosen), rl = objective.beta * (l - input.refRejected)
                    if rw > rl { sums[1] += 1 }
                    sums[2] += rw; sums[3] += rl
                    grads.append([.chosen: g.chosen, .rejected: g.rejected, .conditionalChosen: g.conditionalChosen, .conditionalRejected: g.conditionalRejected])
                }
                // Mean over the global batch: every pair's gradient is divided by its size.
                for s in batch.spans {
                    guard let d = grads[s.pair][s.kind], !d.isEmpty else { continue }
                    for t in 0..<s.count { dLogProbs[s.row * batch.length + s.start + t] = Float(d[t] / Double(cfg.batchSize)) }
                }
                gradients.zero()
                lp.backward(dLogProbs: dLogProbs, trunkGradients: lora ? nil : gradients, adapterGradients: lora ? gradients : nil)
                gradientSum.add(gradients)
            }
            let communicated = Date()
            try await transport.allReduce(gradientSum)
            gradientSum.write(into: gradients)
            let totals = try await transport.allReduce(sums, op: .sum)
            let communicateSeconds = Date().timeIntervalSince(communicated)
            let norm = clipGradientNorm(gradients, maxNorm: c.float("train.grad_clip"))
            let lr = schedule.rate(step: step)
            optimizer.update(parameters: trainable, gradients: gradients, learningRate: lr)
            state.step = step; state.cursor += cfg.batchSize; state.optimizerStep = optimizer.step; state.learningRate = lr
            let seconds = Date().timeIntervalSince(started)
            trainSeconds += seconds
            let n = Double(cfg.batchSize), loss = totals[0] / n
            guard loss.isFinite else { throw TrainingError("loss is \(loss) at step \(step); lower train.lr or dpo.beta, or check the data") }
            if isLeader {
                try folder.appendMetrics(["step": step, "loss": loss, "lr": Double(lr), "grad_norm": Double(norm), "reward_accuracy": totals[1] / n,
                                          "chosen_reward": totals[2] / n, "rejected_reward": totals[3] / n, "margin": (totals[2] - totals[3]) / n,
                                          "pairs_per_s": n / max(seconds, 1e-9), "seconds": seconds, "communicate_seconds": communicateSeconds])
                progress.update(step: step, fields: String(format: "loss %.4f acc %.3f margin %.3f lr %.2e |g| %.3f", loss, totals[1] / n, (totals[2] - totals[3]) / n, lr, norm))
            }
            let last = step == totalSteps
            if isLeader && evalEvery > 0 && (step % evalEvery == 0 || last) {
                let e = try evaluate(step: step)
                result.finalEval = e
                progress.line("step \(step): \(describe(e))")
            }
            if isLeader && (last || (checkpointEvery > 0 && step % checkpointEvery == 0)) { try save(step: step) }
        }
        if isLeader && state.step == totalSteps {
            let final = (folder.path as NSString).appendingPathComponent("final")
            if let policyLoRA { try PEFTAdapter.save(policyLoRA, directory: final + "/policy_adapter", baseModel: cfg.initFrom) }
            else { try HFCheckpoint.save(policyTrunk, directory: final + "/policy") }
        }
        try await transport.barrier()
        if result.lastCheckpoint == nil { result.lastCheckpoint = Checkpoints.newest(in: folder.checkpoints) }
        result.trainSeconds = trainSeconds
        return result
    }

    struct ReferenceSums: Sendable { var chosen: Double, rejected: Double }

    /// Σ log π_ref over each pair's chosen and rejected response. Chunks of 32 pairs go to ranks
    /// round-robin and are gathered, so the values do not depend on the number of ranks; they are
    /// rounded to Float32 (the file's precision) so a resumed run reads exactly what a fresh run used.
    func referenceLogProbs(base: GPT2Trunk, train: [TokenizedPair], eval: [TokenizedPair], folder: RunFolder) async throws
        -> (sums: (train: [ReferenceSums], eval: [ReferenceSums]), cached: Bool) {
        let path = (folder.path as NSString).appendingPathComponent("reference_logps.safetensors")
        if FileManager.default.fileExists(atPath: path), let file = try? SafeTensorsFile(path: path),
           let tc = try? file.floats("train_chosen"), let tr = try? file.floats("train_rejected"),
           let ec = try? file.floats("eval_chosen"), let er = try? file.floats("eval_rejected"),
           tc.count == train.count, tr.count == train.count, ec.count == eval.count, er.count == eval.count {
            return ((zip(tc, tr).map { ReferenceSums(chosen: Double($0), rejected: Double($1)) }, zip(ec, er).map { ReferenceSums(chosen: Double($0), rejected: Double($1)) }), true)
        }
        let all = train + eval
        // Chunks of 32 pairs, the held-out ones starting a chunk of their own: the evaluator
        // batches them the same way, so at equal weights its sums equal these bit for bit.
        let chunk = 32
        let starts = Array(stride(from: 0, to: train.count, by: chunk)) + Array(stride(from: train.count, to: all.count, by: chunk))
        // Each rank fills its chunks and leaves the rest 0, so a sum over ranks assembles them
        // exactly (x + 0 = x); values are Float-rounded first, the file's precision.
        var partial = [Double](repeating: 0, count: 2 * all.count)   // per pair: chosen, rejected
        for k in stride(from: transport.rank, to: starts.count, by: transport.size) {
            let end = min(starts[k] + chunk, starts[k] < train.count ? train.count : all.count)
            let sums = try base.responseLogProbSums(PreferenceBatch(Array(all[starts[k]..<end]), kinds: [.chosen, .rejected]), adapter: nil)
            for (i, v) in sums.enumerated() { partial[2 * starts[k] + i] = Double(Float(v)) }
        }
        let values = try await transport.allReduce(partial, op: .sum).map { Float($0) }
        let sums = (0..<all.count).map { ReferenceSums(chosen: Double(values[2 * $0]), rejected: Double(values[2 * $0 + 1])) }
        if isLeader {
            func column(_ range: Range<Int>, _ side: Int) -> [Float] { range.map { values[2 * $0 + side] } }
            let columns = [("train_chosen", column(0..<train.count, 0)), ("train_rejected", column(0..<train.count, 1)),
                           ("eval_chosen", column(train.count..<all.count, 0)), ("eval_rejected", column(train.count..<all.count, 1))]
            try writeFloatTensors(path: path, columns)
        }
        return ((Array(sums.prefix(train.count)), Array(sums.suffix(eval.count))), false)
    }
}

/// The global batch of pair indices at `cursor` (pairs consumed), each epoch in its own seeded order.
func pairOrder(count: Int, seed: UInt64, cursor: Int, size: Int) -> [Int] {
    var out: [Int] = []
    var cache: (epoch: Int, order: [Int])?
    for position in cursor..<(cursor + size) {
        let epoch = position / count
        if cache?.epoch != epoch {
            var rng = RNG(seed: seed &+ 0xD90 &+ UInt64(epoch) &* 0x9E37_79B9)
            var order = Array(0..<count)
            shuffle(&order, &rng)
            cache = (epoch, order)
        }
        out.append(cache!.order[position % count])
    }
    return out
}

