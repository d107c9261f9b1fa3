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
    /// `PreferenceObjective.name`: the loss with every term it adds ("cpl+nll").
    public var loss: String
    public var initialEval: PreferenceEval?
    public var finalEval: PreferenceEval?
    public var trainSeconds: Double
    public var referenceSeconds: Double
    public var lastCheckpoint: String?
}

/// Offline preference optimisation (docs/algorithms.md §4–§6): DPO, IPO, cDPO, robust, hinge, CPL,
/// CPL-BC and InSPO on preference pairs. With LoRA the reference is the same trunk with adapters off;
/// otherwise the policy trains a copy and the loaded model stays frozen as the reference. The
/// reference's log-probs are computed once (sharded over ranks) and cached in the run folder.
/// Data parallel as SFT: each rank takes a contiguous share of the global pair batch and
/// gradients are summed exactly (Float64), so any world size gives the single-process result.
public final class DPOStage {
    public let config: DPOConfig
    let transport: any Transport
    let workingDirectory: String
    let sayOnRankZero: (String) -> Void
    /// Where the run is, for failure reports (`rank r (dpo, step s): reason`).
    public var context: FailureContext { session?.context ?? startContext }
    let startContext: FailureContext
    var session: DPOSession?

    public init(
        config: DPOConfig, transport: any Transport,
        workingDirectory: String = FileManager.default.currentDirectoryPath,
        say: @escaping (String) -> Void = { Console.note($0) }
    ) {
        self.config = config
        self.transport = transport
        self.workingDirectory = workingDirectory
        self.sayOnRankZero = say
        startContext = FailureContext(rank: transport.rank, role: "dpo", step: 0)
    }
    var isLeader: Bool { transport.rank == 0 }
    func say(_ m: String) { if isLeader { sayOnRankZero(m) } }

    public func run() async throws -> DPOResult {
        FailureReport.current = context
        let s = try await DPOSession(self)
        session = s
        let saved = try await StageLoop(stage: s, transport: transport, say: say).run()
        return DPOResult(
            runFolder: s.folder.path, loss: config.objective.name, initialEval: s.initialEval,
            finalEval: s.finalEval,
            trainSeconds: s.trainSeconds, referenceSeconds: s.referenceSeconds,
            lastCheckpoint: saved ?? Checkpoints.newest(in: s.folder.checkpoints))
    }

    /// The run's description: batch arithmetic, data, loss, policy and reference.
    func derived(
        accumulation: Int, pairs: (train: Int, eval: Int, prompts: Int), steps: (perEpoch: Double, total: Int),
        parameters: (trunk: Int, trained: Int), tokenizer: any Tokenizer
    ) -> String {
        let cfg = config, worldSize = transport.size, lora = cfg.lora.rank > 0
        return """
            derived: world size \(worldSize), global batch \(cfg.train.batchSize) pairs = micro-batch \
            \(cfg.train.microBatchSize) × \(accumulation) \
            accumulation steps × \(worldSize) ranks; \(pairs.train) training pairs, \
            \(String(format: "%.2f", steps.perEpoch)) steps per epoch, \
            \(steps.total) steps; \(pairs.eval) held-out pairs, \(pairs.prompts) held-out prompts
            loss: \(Self.describe(cfg.objective)); policy: \(lora ? "LoRA rank \(cfg.lora.rank) on the frozen trunk; " +
                "reference: adapters off" : "full fine-tune; reference: frozen copy"); \
            \(parameters.trunk) trunk parameters, \(parameters.trained) trained
            tokenizer: \(tokenizer.summary); \(BLAS.summary)
            \(cfg.run.precisionLine)
            """
    }

    /// The reference's log-probs, once: read from the run folder or computed sharded over ranks; timed and reported.
    func timedReference(base: any CausalLM, train: [TokenizedPair], eval: [TokenizedPair], folder: RunFolder)
        async throws
        -> (sums: (train: [ReferenceSums], eval: [ReferenceSums]), seconds: Double)
    {
        let started = Date()
        let (reference, wasCached) = try await referenceLogProbs(base: base, train: train, eval: eval, folder: folder)
        let seconds = Date().timeIntervalSince(started)
        say(
            String(
                format: "reference log-probs: %d + %d pairs in %.2f s (%@ reference_logps.safetensors)", train.count,
                eval.count, seconds,
                wasCached ? "read from" : "computed once, cached in"))
        return (reference, seconds)
    }

    /// A checkpoint: the policy model (full fine-tuning) or its adapter, the optimizer and the state.
    func saveCheckpoint(
        step: Int, policy: any CausalLM, adapter: LoRAAdapter?, optimizer: AdamW, state: TrainingState,
        tokenizer: any Tokenizer,
        folder: RunFolder
    ) throws -> String {
        try Checkpoints.save(
            directory: folder.checkpoints, step: step, trunk: adapter == nil ? policy : nil, optimizer: optimizer,
            state: state, tokenizer: tokenizer as? BPETokenizer, keepLast: config.cadence.keepLast
        ) { dir in
            if let adapter {
                try PEFTAdapter.save(
                    adapter, directory: (dir as NSString).appendingPathComponent("adapter"),
                    baseModel: self.config.run.initFrom)
            }
        }
    }

    /// The models: the loaded model is the reference; the policy is it plus LoRA (the checkpoint's
    /// adapter when resuming), or a copy (the checkpoint's model when resuming); its optimizer.
    /// The loaded model is frozen, so the ranks of a host keep it once (`HostWeights`).
    func models(tokenizer: any Tokenizer, checkpoint: String?) async throws
        -> (base: any CausalLM, policy: any CausalLM, adapter: LoRAAdapter?, trainer: DataParallelOptimizer)
    {
        let cfg = config
        let host = cfg.run.sharing(try await cfg.run.hostGroup(transport))
        let base = try await SFTStage.frozenModel(cfg.run, tokenizer: tokenizer, host: host)
        if let line = HostWeights.summary(base, host: host) { say(line) }
        try checkContext(base.config, maxLength: cfg.train.maxLength)
        let adapter = try cfg.lora.config.map {
            try stageAdapter($0, model: base.config, checkpoint: checkpoint, seed: cfg.run.seed &+ 3)
        }
        let policy = adapter != nil ? base : try checkpoint.map { try HFCheckpoint.load(directory: $0) } ?? base.clone()
        if policy !== base { cfg.run.apply(to: policy, frozen: false) }
        let trainer = DataParallelOptimizer(
            parameters: adapter?.weights ?? policy.weights, layout: adapter?.layout ?? policy.parameterLayout,
            hyper: AdamWHyperparameters(
                learningRate: cfg.train.lr, beta1: cfg.train.beta1, beta2: cfg.train.beta2,
                eps: cfg.train.eps, weightDecay: adapter != nil ? 0 : cfg.train.weightDecay),
            buckets: adapter == nil ? policy.gradientBuckets : nil, overlap: cfg.run.overlap)
        return (base, policy, adapter, trainer)
    }

    /// The trained policy as other tools read it: a PEFT adapter over the SFT model, or a full model.
    func saveFinal(_ policy: any CausalLM, adapter: LoRAAdapter?, folder: RunFolder) throws {
        let final = (folder.path as NSString).appendingPathComponent("final")
        let policyFolder = final + (adapter == nil ? "/policy" : "/policy_adapter")
        if let adapter {
            try PEFTAdapter.save(adapter, directory: policyFolder, baseModel: config.run.initFrom)
        } else {
            try HFCheckpoint.save(policy, directory: policyFolder)
        }
        try ModelCard.of(
            method: "\(Self.describe(config.objective)) (rlhf dpo)"
                + (adapter.map { ", LoRA rank \($0.config.rank)" } ?? ", full fine-tuning"),
            run: config.run, data: config.data, resolved: config.resolved, folder: folder,
            library: adapter == nil ? "transformers" : "peft"
        ).write(into: policyFolder)
    }

    static func describe(_ e: PreferenceEval) -> String {
        [
            e.exactMatch.map { String(format: "exact match %.1f%%", 100 * $0) },
            e.conditionedExactMatch.map { String(format: "conditioned on own draft %.1f%%", 100 * $0) },
            e.rewardAccuracy.map { String(format: "implicit-reward accuracy %.1f%%", 100 * $0) },
            e.kl.map { String(format: "KL to reference %.4f", $0) },
        ]
        .compactMap { $0 }.joined(separator: ", ")
    }

    /// The loss's name (every term beyond the named paper's loss shows: "cpl+nll", "inspo-dpo23+dpo")
    /// with the weights of the terms it adds.
    static func describe(_ objective: PreferenceObjective) -> String {
        var terms: [String] = []
        if case .cplBC = objective.kind { terms.append("\(objective.cplBCCoefficient) × BC(both responses)") }
        if case .inspo = objective.kind, objective.muDPO != 0 {
            terms.append("\(objective.muDPO) × DPO(unconditional)")
        }
        if objective.nllCoefficient != 0 { terms.append("\(objective.nllCoefficient) × NLL(chosen)") }
        return objective.name + (terms.isEmpty ? "" : " (+ " + terms.joined(separator: " + ") + ")")
    }

    /// Preference pairs (train and held-out, tokenised) and, for exact match, held-out prompts with answers.
    func loadPairs(tokenizer: any Tokenizer, conditioned: Bool) throws -> (
        train: [TokenizedPair], eval: [TokenizedPair], examples: [SFTExample]
    ) {
        let cfg = config, maxLength = cfg.train.maxLength, notes = cfg.data.notes()
        var trainExamples: [PreferenceExample], evalPairExamples: [PreferenceExample], evalExamples: [SFTExample]
        if cfg.data.task == .arith {
            let task = cfg.data.arithTask
            trainExamples = task.preferenceExamples(eval: false)
            evalPairExamples = task.preferenceExamples(eval: true)
            evalExamples = task.evalExamples()
        } else {
            // Rankings of K > 2 responses become their C(K, 2) pairs.
            let lines = try JSONL.preferences(path: cfg.data.prefs, chat: tokenizer.chat, notes: notes)
            trainExamples = lines.flatMap(\.pairs)
            if trainExamples.count > lines.count {
                say("data.prefs: \(lines.count) lines hold rankings; trained as \(trainExamples.count) pairs")
            }
            evalPairExamples =
                cfg.data.evalPrefs.isEmpty
                ? []
                : try JSONL.preferences(path: cfg.data.evalPrefs, chat: tokenizer.chat, notes: notes).flatMap(\.pairs)
            evalExamples =
                cfg.data.eval.isEmpty ? [] : try JSONL.sft(path: cfg.data.eval, chat: tokenizer.chat, notes: notes)
        }
        let evalLimit = cfg.cadence.evalMaxExamples
        let train = try notes.keepingFitting(trainExamples) {
            try TokenizedPair($0, tokenizer: tokenizer, maxLength: maxLength, conditioned: conditioned)
        }
        let evalPairs = try notes.keepingFitting(Array(evalPairExamples.prefix(evalLimit))) {
            try TokenizedPair($0, tokenizer: tokenizer, maxLength: maxLength, conditioned: false)
        }
        for line in notes.report { say(line) }
        return (train, evalPairs, Array(evalExamples.prefix(evalLimit)))
    }

    /// What one step's gradient needs: the pairs, their reference sums, the loss and the policy.
    struct PairStep {
        let cursor: Int
        let train: [TokenizedPair]
        let reference: [ReferenceSums]
        let kinds: [PairSequenceKind]
        let objective: PreferenceObjective
        let policy: any CausalLM
        let adapter: LoRAAdapter?
    }

    /// This rank's share of the global pair batch at `cursor`: the loss's gradient through the
    /// token log-probs, micro-batch by micro-batch, into `trainer`'s exact sum. Returns Σ loss,
    /// Σ [implicit reward of chosen > rejected], Σ chosen reward, Σ rejected reward over the share.
    func pairGradients(step p: PairStep, trainer: DataParallelOptimizer, cache steps: inout [String: TokenLogProbStep])
        throws -> DPOStepSums
    {
        let cfg = config, lora = p.adapter != nil
        let share = cfg.train.batchSize / transport.size
        let global = pairOrder(count: p.train.count, seed: cfg.run.seed, cursor: p.cursor, size: cfg.train.batchSize)
        let mine = Array(global[(transport.rank * share)..<((transport.rank + 1) * share)])
        trainer.beginStep()
        var sums = DPOStepSums()
        let lastStart = (mine.count - 1) / cfg.train.microBatchSize * cfg.train.microBatchSize
        for start in stride(from: 0, to: mine.count, by: cfg.train.microBatchSize) {
            let indices = Array(mine[start..<min(start + cfg.train.microBatchSize, mine.count)])
            let batch = PreferenceBatch(indices.map { p.train[$0] }, kinds: p.kinds)
            let key = "\(batch.batch)x\(batch.length)"
            if steps[key] == nil && steps.count >= 8 { steps.removeAll() }
            let lp =
                steps[key]
                ?? TokenLogProbStep(trunk: p.policy, batch: batch.batch, tokens: batch.length, adapter: p.adapter)
            steps[key] = lp
            let logProbs = try lp.forward(tokens: batch.tokens, targets: batch.targets)
            let grads = pairLosses(
                batch.responseLogProbs(logProbs, pairs: indices.count), indices: indices, step: p, sums: &sums)
            // Mean over the global batch: every pair's gradient is divided by its size.
            var dLogProbs = [Float](repeating: 0, count: logProbs.count)
            for s in batch.spans {
                guard let d = grads[s.pair][s.kind], !d.isEmpty else { continue }
                for t in 0..<s.count {
                    dLogProbs[s.row * batch.length + s.start + t] = Float(d[t] / Double(cfg.train.batchSize))
                }
            }
            trainer.beginMicroBatch()
            // The last backward of a full fine-tune starts each layer's all-reduce as it finishes it.
            let ready = start == lastStart && !lora ? trainer.overlappingLastMicroBatch(transport) : nil
            lp.backward(
                dLogProbs: dLogProbs, trunkGradients: lora ? nil : trainer.gradients,
                adapterGradients: lora ? trainer.gradients : nil,
                gradientsReady: ready)
            trainer.endMicroBatch()
        }
        return sums
    }

    /// Each pair's loss and its gradient per sequence kind; the loss, implicit-reward accuracy and
    /// rewards added into `sums`.
    func pairLosses(
        _ perPair: [[PairSequenceKind: [Double]]], indices: [Int], step p: PairStep, sums: inout DPOStepSums
    ) -> [[PairSequenceKind: [Double]]] {
        let objective = p.objective
        return indices.enumerated().map { i, index in
            let q = perPair[i]
            let input = PreferenceObjective.PairLogProbs(
                chosen: q[.chosen] ?? [], rejected: q[.rejected] ?? [],
                conditionalChosen: q[.conditionalChosen] ?? [], conditionalRejected: q[.conditionalRejected] ?? [],
                refChosen: p.reference[index].chosen, refRejected: p.reference[index].rejected)
            let g = objective.evaluate(input)
            sums.loss += g.loss
            // Implicit rewards β(log π − log π_ref) of the policy the loss trains (conditional for
            // InSPO without its DPO term).
            let w = (q[.chosen] ?? q[.conditionalChosen]!).reduce(0, +)
            let l = (q[.rejected] ?? q[.conditionalRejected]!).reduce(0, +)
            let rw = objective.beta * (w - input.refChosen), rl = objective.beta * (l - input.refRejected)
            if rw > rl { sums.correct += 1 }
            sums.chosenReward += rw
            sums.rejectedReward += rl
            return [
                .chosen: g.chosen, .rejected: g.rejected, .conditionalChosen: g.conditionalChosen,
                .conditionalRejected: g.conditionalRejected,
            ]
        }
    }

    struct ReferenceSums: Sendable { var chosen: Double, rejected: Double }

    /// Σ log π_ref over each pair's chosen and rejected response. Chunks of 32 pairs go to ranks
    /// round-robin and are gathered, so the values do not depend on the number of ranks; they are
    /// rounded to Float32 (the file's precision) so a resumed run reads exactly what a fresh run used.
    func referenceLogProbs(base: any CausalLM, train: [TokenizedPair], eval: [TokenizedPair], folder: RunFolder)
        async throws
        -> (sums: (train: [ReferenceSums], eval: [ReferenceSums]), cached: Bool)
    {
        let path = (folder.path as NSString).appendingPathComponent("reference_logps.safetensors")
        if FileManager.default.fileExists(atPath: path), let file = try? SafeTensorsFile(path: path),
            let tc = try? file.floats("train_chosen"), let tr = try? file.floats("train_rejected"),
            let ec = try? file.floats("eval_chosen"), let er = try? file.floats("eval_rejected"),
            tc.count == train.count, tr.count == train.count, ec.count == eval.count, er.count == eval.count
        {
            return (
                (
                    zip(tc, tr).map { ReferenceSums(chosen: Double($0), rejected: Double($1)) },
                    zip(ec, er).map { ReferenceSums(chosen: Double($0), rejected: Double($1)) }
                ), true
            )
        }
        let all = train + eval
        // Chunks of 32 pairs, the held-out ones starting a chunk of their own: the evaluator
        // batches them the same way, so at equal weights its sums equal these bit for bit.
        let chunk = 32
        let starts =
            Array(stride(from: 0, to: train.count, by: chunk))
            + Array(stride(from: train.count, to: all.count, by: chunk))
        // Each rank fills its chunks and leaves the rest 0, so a sum over ranks assembles them
        // exactly (x + 0 = x); values are Float-rounded first, the file's precision.
        var partial = [Double](repeating: 0, count: 2 * all.count)  // per pair: chosen, rejected
        for k in stride(from: transport.rank, to: starts.count, by: transport.size) {
            let end = min(starts[k] + chunk, starts[k] < train.count ? train.count : all.count)
            let sums = try base.responseLogProbSums(
                PreferenceBatch(Array(all[starts[k]..<end]), kinds: [.chosen, .rejected]), adapter: nil)
            for (i, v) in sums.enumerated() { partial[2 * starts[k] + i] = Double(Float(v)) }
        }
        let values = try await transport.allReduce(partial, op: .sum).map { Float($0) }
        let sums = (0..<all.count).map {
            ReferenceSums(chosen: Double(values[2 * $0]), rejected: Double(values[2 * $0 + 1]))
        }
        if isLeader {
            func column(_ range: Range<Int>, _ side: Int) -> [Float] { range.map { values[2 * $0 + side] } }
            let columns = [
                ("train_chosen", column(0..<train.count, 0)), ("train_rejected", column(0..<train.count, 1)),
                ("eval_chosen", column(train.count..<all.count, 0)),
                ("eval_rejected", column(train.count..<all.count, 1)),
            ]
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
