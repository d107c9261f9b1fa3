import Alignment
import Cluster
import Foundation
import Kernels
import Models
import Roles
import Runs
import Tokenizers

public struct PPOResult: Sendable {
    public var runFolder: String
    public var initialExactMatch: Double?
    public var finalExactMatch: Double?
    /// ifeval: held-out instruction-level accuracy before the first iteration and at the last evaluation.
    public var initialInstructions: Double?
    public var finalInstructions: Double?
    public var kl: Double
    public var seconds: Double
}

/// Online RL with PPO (algorithms.md §2) or a critic-free estimator (§10) in the Hydra layout
/// (§1: one frozen trunk; policy and critic LoRA; reference and reward from one adapters-off
/// pass) or the separate layout (four full models). Colocated: every rank rolls out its share
/// of the prompts and the trainable roles all-reduce gradients. Placed: rank 0 drives and the
/// named roles answer from their ranks.
public final class PPOStage {
    let config: PPOConfig
    let transport: any Transport
    let workingDirectory: String
    let sayOnRankZero: (String) -> Void
    public private(set) var context: FailureContext

    public init(config: PPOConfig, transport: any Transport, workingDirectory: String = FileManager.default.currentDirectoryPath,
                say: @escaping (String) -> Void = { print($0); fflush(nil) }) {
        self.config = config; self.transport = transport; self.workingDirectory = workingDirectory; self.sayOnRankZero = say
        context = FailureContext(rank: transport.rank, role: "ppo", step: 0)
    }
    func say(_ m: String) { if transport.rank == 0 { sayOnRankZero(m) } }

    public func run() async throws -> PPOResult {
        let cfg = config, started = Date()
        FailureReport.current = context
        guard let session = try await PPOSession.start(config: cfg, transport: transport, say: say) else {
            return PPOResult(runFolder: "", kl: 0, seconds: Date().timeIntervalSince(started))
        }
        // Run folder and checkpoint to resume from (rank 0 decides). Placed: the other ranks are
        // serving roles, so rank 0 alone decides (no collective).
        let (folder, checkpoint, resumeMessage) = session.colocated
            ? try await RunFolder.chooseCollectively(name: cfg.run.name, out: cfg.run.out, resume: cfg.run.resume, workingDirectory: workingDirectory, transport: transport)
            : try RunFolder.choose(name: cfg.run.name, out: cfg.run.out, resume: cfg.run.resume, workingDirectory: workingDirectory)
        if let checkpoint, let warning = try ResumeSettings.check(checkpoint: checkpoint, state: try Checkpoints.loadState(checkpoint),
                                                                  config: cfg.resolved, extra: resumeExtra(session), resume: cfg.run.resume) {
            say(warning)
        }
        if transport.rank == 0 { try folder.writeConfig(cfg.resolved.yaml) }
        if session.colocated { RankStatus.shared.publish(runFolder: folder.path, size: transport.size) }
        session.describe(folder: folder)
        var result = PPOResult(runFolder: folder.path, kl: 0, seconds: 0)
        try await session.preparePrompts(folder: folder)
        let startIteration = try await resume(session, from: checkpoint, folder: folder)
        say(resumeMessage + (checkpoint != nil ? " at iteration \(startIteration - 1)" : ""))
        try checkRemainingSteps(checkpoint: checkpoint, done: startIteration - 1, total: cfg.ppo.iterations, key: "ppo.iterations", say: say)
        if checkpoint == nil && cfg.cadence.evalEvery > 0 {
            result.initialExactMatch = try evaluate(session, iteration: 0, folder: folder)
            result.initialInstructions = try evaluateInstructions(session, iteration: 0, folder: folder)
        } else if checkpoint != nil && !session.data.instructionEval.isEmpty {
            // Resumed: the score before training is the one the first evaluation wrote.
            let path = (folder.path as NSString).appendingPathComponent("eval/instructions-step-00000.json")
            let report = FileManager.default.contents(atPath: path).flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] }
            result.initialInstructions = report?["instructions"] as? Double
        }
        if session.colocated { try await transport.barrier() }
        // PPO-ptx demonstrations consumed before the first iteration run here.
        if cfg.ppo.ptxCoef > 0 { session.ptxCursor += (startIteration - 1) * cfg.ppo.epochs * session.myPrompts * cfg.ppo.samples }

        let progress = Progress(total: cfg.ppo.iterations, every: cfg.cadence.logEvery, startStep: startIteration - 1)
        for iteration in startIteration...max(cfg.ppo.iterations, startIteration) where iteration <= cfg.ppo.iterations {
            context.step = iteration
            FailureReport.current = context
            let metrics = try await session.iteration(iteration)
            try checkFinite(metrics, checkpoints: folder.checkpoints)
            let stop = iteration < cfg.ppo.iterations ? try await stopSignal(session) : nil
            result.kl = metrics.meanKL
            if transport.rank == 0 {
                try folder.appendMetrics(metrics.json)
                let rule = metrics.value("reward_instructions_mean").map { ("instructions", $0) } ?? ("verifier", metrics.value("reward_verifier_mean") ?? 0)
                progress.update(step: iteration, fields: String(format: "reward %.3f %@ %.3f kl %.4f clip %.3f len %.1f",
                                                                metrics.value("reward_mean") ?? 0, rule.0, rule.1,
                                                                metrics.meanKL, metrics.clipFraction, metrics.meanResponseLength))
            }
            if cfg.cadence.evaluates(after: iteration, of: cfg.ppo.iterations) {
                if transport.rank == 0 { try await session.pullPlacedState() }
                if let em = try evaluate(session, iteration: iteration, folder: folder) { result.finalExactMatch = em }
                if let score = try evaluateInstructions(session, iteration: iteration, folder: folder) { result.finalInstructions = score }
                if session.colocated { try await transport.barrier() }
            }
            var saved: String?
            if transport.rank == 0 && cfg.cadence.checkpoints(after: iteration, of: cfg.ppo.iterations) {
                saved = try await save(session, iteration: iteration, folder: folder)
            }
            if let stop { try await stopAfterIteration(stop, session, iteration: iteration, saved: saved, folder: folder) }
        }
        if transport.rank == 0 { try await session.pullPlacedState() }
        for client in session.clients.values { try await client.stop() }
        try await transport.barrier()
        if transport.rank == 0 { try saveFinal(session, folder: folder) }
        result.seconds = Date().timeIntervalSince(started)
        return result
    }

    /// Held-out greedy exact match of the policy (rank 0), logged; nil without held-out examples.
    func evaluate(_ s: PPOSession, iteration: Int, folder: RunFolder) throws -> Double? {
        guard transport.rank == 0, !s.data.evalExamples.isEmpty else { return nil }
        let r = try Evaluation.run(trunk: s.roles.policyTrunk, adapter: s.roles.policyLoRA, examples: s.data.evalExamples, tokenizer: s.tokenizer,
                                   maxLength: config.maxLength, maxNewTokens: config.cadence.evalMaxNewTokens, batchSize: 64)
        try folder.appendMetrics(["step": iteration, "eval_loss": r.loss, "exact_match": r.exactMatch ?? 0])
        say(String(format: "iteration %d: held-out exact match %.1f%%, eval loss %.4f", iteration, 100 * (r.exactMatch ?? 0), r.loss))
        return r.exactMatch
    }

    /// Held-out instruction following of the policy (rank 0; ifeval), logged per constraint kind
    /// and written with sample replies to eval/instructions-step-N.json; nil without such prompts.
    func evaluateInstructions(_ s: PPOSession, iteration: Int, folder: RunFolder) throws -> Double? {
        guard transport.rank == 0, !s.data.instructionEval.isEmpty else { return nil }
        let e = try InstructionEvaluation.run(trunk: s.roles.policyTrunk, adapter: s.roles.policyLoRA, prompts: s.data.instructionEval,
                                              tokenizer: s.tokenizer, maxNewTokens: config.cadence.evalMaxNewTokens, batchSize: 64)
        try folder.appendMetrics(e.metrics(step: iteration, prompts: s.data.instructionEval.count))
        let directory = (folder.path as NSString).appendingPathComponent("eval")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = (directory as NSString).appendingPathComponent(String(format: "instructions-step-%05d.json", iteration))
        try JSONSerialization.data(withJSONObject: e.report(step: iteration), options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
            .write(to: URL(fileURLWithPath: path))
        let kinds = e.perKind.keys.sorted().map { String(format: "%@ %.0f%%", $0, 100 * Double(e.perKind[$0]!.kept) / Double(max(e.perKind[$0]!.total, 1))) }
        say(String(format: "iteration %d: held-out instructions kept %.1f%% (%d/%d; %@)", iteration, 100 * e.score, e.kept, e.total, kinds.joined(separator: ", ")))
        return e.score
    }

    /// Restores a checkpoint's trainable state and KL coefficient; returns the first iteration to run.
    func resume(_ s: PPOSession, from checkpoint: String?, folder: RunFolder) async throws -> Int {
        guard let checkpoint else { return 1 }
        let state = try Checkpoints.loadState(checkpoint)
        guard state.stage == "ppo" else { throw TrainingError("\(checkpoint) is a '\(state.stage)' checkpoint, not ppo") }
        let file = try SafeTensorsFile(path: (checkpoint as NSString).appendingPathComponent(PPOCheckpoint.fileName))
        try await s.restore(try PPOCheckpoint.read(file, steps: state.optimizerSteps ?? [:]), directory: checkpoint)
        s.kl.beta = state.klBeta ?? s.kl.beta
        if transport.rank == 0 { try folder.truncateMetrics(afterStep: state.step) }
        return state.step + 1
    }

    /// The iteration's losses, KL and gradient norm must be finite (the divergence guard; PPO's
    /// losses move both ways by design, so no spike rule).
    func checkFinite(_ m: PPOMetrics, checkpoints: String) throws {
        let watched = [("gradient norm", m.gradNorm), ("policy loss", m.policyLoss), ("KL", m.meanKL), ("value loss", m.valueLoss ?? 0)]
        guard let (name, value) = watched.first(where: { !$0.1.isFinite }) else { return }
        throw DivergenceGuard(spikeFactor: 0, maxGradNorm: 0, checkpoints: checkpoints).diverged("the \(name) is \(value)", step: m.iteration)
    }

    /// Colocated, every rank agrees on a signal right after the iteration; placed, rank 0 (the
    /// driver, the only rank in this loop) decides alone. Ranks serving placed roles keep the
    /// default signal actions (see PPOSession.start).
    func stopSignal(_ s: PPOSession) async throws -> StopSignal? {
        if s.colocated { return try await StopRequest.agreed(transport) }
        return StopRequest.local.map { StopSignal(number: $0, ranks: [0]) }
    }

    /// Ends the run after `iteration` with a checkpoint; placed, the serving ranks are released
    /// first (they end in the barrier every run ends with).
    func stopAfterIteration(_ signal: StopSignal, _ s: PPOSession, iteration: Int, saved: String?, folder: RunFolder) async throws -> Never {
        if s.colocated {
            try await stopAfterStep(signal, transport, stage: "ppo", step: iteration, saved: saved) { try await self.save(s, iteration: iteration, folder: folder) }
        }
        var checkpoint = saved
        if checkpoint == nil { checkpoint = try await save(s, iteration: iteration, folder: folder) }
        for client in s.clients.values { try await client.stop() }
        try await transport.barrier()
        throw RunStopped(signal: signal, stage: "ppo", step: iteration, checkpoint: checkpoint)
    }

    /// Colocated, each rank samples its share of the prompts with its own seed, so the rollouts
    /// (unlike SFT's or DPO's sums) depend on the number of ranks: a resume must keep it.
    func resumeExtra(_ s: PPOSession) -> [String: String] { ["ranks rolling out": String(s.colocated ? transport.size : 1)] }

    @discardableResult
    func save(_ s: PPOSession, iteration: Int, folder: RunFolder) async throws -> String {
        let snapshots = try await s.snapshots()
        let state = TrainingState(stage: "ppo", step: iteration, cursor: iteration * config.ppo.prompts, optimizerStep: snapshots["policy"]!.step,
                                  learningRate: 0, rng: RNG(seed: config.run.seed), tokenizer: s.tokenizer is BPETokenizer ? "tokenizer.json" : "byte",
                                  worldSize: transport.size, klBeta: s.kl.beta, optimizerSteps: snapshots.mapValues(\.step),
                                  settings: ResumeSettings.of(config.resolved, extra: resumeExtra(s)))
        return try Checkpoints.saveFolder(directory: folder.checkpoints, step: iteration, keepLast: config.cadence.keepLast) { dir in
            try Checkpoints.writeCommon(dir, optimizer: nil, state: state, tokenizer: s.tokenizer as? BPETokenizer)
            try PPOCheckpoint.write(snapshots, path: (dir as NSString).appendingPathComponent(PPOCheckpoint.fileName))
            try s.writeSourceState(directory: dir)
        }
    }

    /// The policy in formats other tools read: a PEFT adapter over the SFT model, or a full model;
    /// the critic's adapter and value head.
    func saveFinal(_ s: PPOSession, folder: RunFolder) throws {
        let final = (folder.path as NSString).appendingPathComponent("final"), r = s.roles
        try FileManager.default.createDirectory(atPath: final, withIntermediateDirectories: true)
        if let policyLoRA = r.policyLoRA { try PEFTAdapter.save(policyLoRA, directory: final + "/policy_adapter", baseModel: config.run.initFrom) }
        else { try HFCheckpoint.save(r.policyTrunk, directory: final + "/policy") }
        if let criticLoRA = r.criticLoRA { try PEFTAdapter.save(criticLoRA, directory: final + "/critic_adapter", baseModel: config.run.initFrom) }
        try ScalarHeadIO.save(r.valueHead, directory: final, fileName: "value_head.safetensors")
    }
}

/// PPO's checkpoint tensors: each trainable part's parameters and AdamW moments, named
/// "<part>.parameters", "<part>.m", "<part>.v" (parts: policy, value_head, critic_adapter or
/// critic_trunk); the AdamW steps are in training_state.json.
enum PPOCheckpoint {
    static let fileName = "ppo_state.safetensors"

    static func write(_ snapshots: [String: TrainableSnapshot], path: String) throws {
        try writeFloatTensors(path: path, snapshots.keys.sorted().flatMap { name in
            [(name + ".parameters", snapshots[name]!.parameters), (name + ".m", snapshots[name]!.m), (name + ".v", snapshots[name]!.v)]
        })
    }

    static func read(_ file: SafeTensorsFile, steps: [String: Int]) throws -> [String: TrainableSnapshot] {
        var out: [String: TrainableSnapshot] = [:]
        for (name, step) in steps {
            out[name] = TrainableSnapshot(parameters: try file.floats(name + ".parameters"), m: try file.floats(name + ".m"), v: try file.floats(name + ".v"), step: step)
        }
        return out
    }
}
