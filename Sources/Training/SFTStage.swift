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
        context = FailureContext(rank: transport.rank, role: config.stageName, step: 0)
    }

    var isLeader: Bool { transport.rank == 0 }
    func say(_ message: String) { if isLeader { sayOnRankZero(message) } }

    /// Builds the model: from a Hugging Face folder, or a preset sized to the tokenizer.
    static func makeModel(_ c: SFTConfig, tokenizer: any Tokenizer, seed: UInt64) throws -> any CausalLM {
        try makeModel(initFrom: c.run.initFrom, family: c.run.family, preset: c.run.preset, tokenizer: tokenizer, seed: seed)
    }

    static func makeModel(initFrom: String, family: String, preset: String, tokenizer: any Tokenizer, seed: UInt64) throws -> any CausalLM {
        if !initFrom.isEmpty {
            let trunk = try HFCheckpoint.load(directory: initFrom)
            guard tokenizer.vocabSize <= trunk.config.vocabSize else {
                throw TrainingError("tokenizer has \(tokenizer.vocabSize) ids but \(initFrom) has a vocabulary of \(trunk.config.vocabSize)")
            }
            return trunk
        }
        let shape = try ModelFamilies.preset(preset, family: family).withVocabulary(size: tokenizer.vocabSize, bosTokenId: tokenizer.bosTokenId.map(Int.init),
                                                                    eosTokenId: tokenizer.eosTokenId.map(Int.init))
        let trunk = try shape.makeModel(weights: nil)
        var rng = RNG(seed: seed)
        trunk.initialize(rng: &rng)
        return trunk
    }

    public func run() async throws -> SFTResult {
        let c = config
        FailureReport.current = context
        let s = try await SFTSession(c, transport: transport, workingDirectory: workingDirectory, say: say)
        var result = SFTResult(runFolder: s.folder.path, steps: s.totalSteps)
        if isLeader && s.state.step == 0 && s.hasEval && c.cadence.evalEvery > 0 {
            let r = try s.evaluate(step: 0)
            result.initialEval = r
            say("step 0: \(s.describe(r))")
        }
        let progress = Progress(total: s.totalSteps, every: c.cadence.logEvery, startStep: s.state.step)
        var divergence = DivergenceGuard(c.train, checkpoints: s.folder.checkpoints, memory: s.state.divergence)
        while s.state.step < s.totalSteps {
            let started = Date()
            context.step = s.state.step + 1
            FailureReport.current = context
            let r = try await s.step()
            let step = s.state.step, seconds = Date().timeIntervalSince(started)
            // rm trains the pair loss alone; its "loss" is that mean.
            try divergence.check(step: step, loss: s.lmOn ? r.loss : r.pairLoss / Double(c.hydra.pairBatchSize), gradNorm: c.trainTrunk ? Double(r.gradNorm) : nil,
                                 lossName: s.lmOn ? "loss" : "pair loss")
            s.state.divergence = divergence.memory
            if c.train.checkReplicas { try await s.trainer.checkReplicasAgree(transport) }
            let stop = step < s.totalSteps ? try await StopRequest.agreed(transport) : nil
            if isLeader {
                var metrics: [String: Any] = ["step": step, "loss": r.loss, "lr": Double(r.learningRate), "grad_norm": Double(r.gradNorm),
                                              "tokens_per_s": Double(r.tokens) / max(seconds, 1e-9), "seconds": seconds, "communicate_seconds": r.communicateSeconds]
                if let hydra = s.hydra { metrics["bt_loss"] = r.pairLoss / Double(hydra.batchSize); metrics["pair_accuracy"] = r.pairCorrect / Double(hydra.batchSize) }
                try s.folder.appendMetrics(metrics)
                progress.update(step: step, fields: s.lmOn ? String(format: "loss %.4f lr %.2e |g| %.3f", r.loss, r.learningRate, r.gradNorm)
                    : String(format: "pair loss %.4f pair accuracy %.3f lr %.2e", r.pairLoss / Double(c.hydra.pairBatchSize), r.pairCorrect / Double(c.hydra.pairBatchSize), r.learningRate))
            }
            if isLeader && s.hasEval && c.cadence.evaluates(after: step, of: s.totalSteps) {
                let e = try s.evaluate(step: step)
                result.finalEval = e
                progress.line("step \(step): \(s.describe(e))")
            }
            var saved: String?
            if isLeader && c.cadence.checkpoints(after: step, of: s.totalSteps) { saved = try s.save(step: step); result.lastCheckpoint = saved }
            if let stop { try await stopAfterStep(stop, transport, stage: c.stageName, step: step, saved: saved) { try s.save(step: step) } }
        }
        // Nobody leaves before the last checkpoint is on disk.
        try await transport.barrier()
        if result.lastCheckpoint == nil { result.lastCheckpoint = Checkpoints.newest(in: s.folder.checkpoints) }
        result.rewardAccuracy = s.lastRewardAccuracy
        return result
    }
}
