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

/// Online RL with PPO (docs/algorithms.md §2) or a critic-free estimator (§10) in the Hydra layout
/// (§1: one frozen trunk; policy and critic LoRA; reference and reward from one adapters-off
/// pass) or the separate layout (four full models). Colocated: every rank rolls out its share
/// of the prompts and the trainable roles all-reduce gradients. Placed: rank 0 drives and the
/// named roles answer from their ranks.
public final class PPOStage {
    let config: PPOConfig
    let transport: any Transport
    let workingDirectory: String
    let sayOnRankZero: (String) -> Void
    /// Where the run is, for failure reports (`rank r (ppo, step s): reason`).
    public var context: FailureContext { run?.context ?? startContext }
    let startContext: FailureContext
    var run: PPORun?

    public init(
        config: PPOConfig, transport: any Transport,
        workingDirectory: String = FileManager.default.currentDirectoryPath,
        say: @escaping (String) -> Void = { Console.note($0) }
    ) {
        self.config = config
        self.transport = transport
        self.workingDirectory = workingDirectory
        self.sayOnRankZero = say
        startContext = FailureContext(rank: transport.rank, role: "ppo", step: 0)
    }
    func say(_ m: String) { if transport.rank == 0 { sayOnRankZero(m) } }

    public func run() async throws -> PPOResult {
        let started = Date()
        FailureReport.current = context
        guard let session = try await PPOSession.start(config: config, transport: transport, say: say) else {
            return PPOResult(runFolder: "", kl: 0, seconds: Date().timeIntervalSince(started))
        }
        // Placed: the other ranks are serving roles, so rank 0 alone chooses (no collective).
        let stageFolder = try await StageFolder.open(
            stage: "ppo", run: config.run, resolved: config.resolved, transport: transport,
            workingDirectory: workingDirectory, collective: session.colocated,
            extra: PPORun.resumeExtra(session), say: say)
        session.describe()
        session.samplesFile = transport.rank == 0 ? stageFolder.folder.samples : nil
        try await session.preparePrompts(folder: stageFolder.folder)
        let run = PPORun(session: session, stageFolder: stageFolder, context: startContext)
        self.run = run
        try await run.restore()
        let loop = StageLoop(stage: run, transport: transport, say: say)
        _ = try await loop.run()
        var result = run.result
        result.seconds = Date().timeIntervalSince(started)
        return result
    }
}

/// A PPO run as `StageLoop` drives it: the session's iterations, held-out evaluations (exact
/// match; instruction following for ifeval), checkpoints and the final adapters.
final class PPORun {
    let session: PPOSession
    let stageFolder: StageFolder
    var context: FailureContext
    var completedIterations = 0
    var result: PPOResult

    var config: PPOConfig { session.cfg }
    var transport: any Transport { session.transport }

    init(session: PPOSession, stageFolder: StageFolder, context: FailureContext) {
        self.session = session
        self.stageFolder = stageFolder
        self.context = context
        result = PPOResult(runFolder: stageFolder.folder.path, kl: 0, seconds: 0)
    }

    /// Colocated, each rank samples its share of the prompts with its own seed, so the rollouts
    /// (unlike SFT's or DPO's sums) depend on the number of ranks: a resume must keep it. Not when
    /// the run is the same at any world size (docs/architecture.md §8): rollout units and
    /// micro-batches of fixed sizes, no PPO-ptx, no reward source that learns during the run.
    static func resumeExtra(_ s: PPOSession) -> [String: String] {
        let p = s.cfg.ppo
        let anyWorldSize =
            s.colocated && p.rolloutBatch > 0 && p.microBatchSize > 0 && p.ptxCoef == 0 && s.rewardModels == nil
        return [
            "ranks rolling out": anyWorldSize
                ? ResumeSettings.anyValue + " (ppo.rollout_batch and ppo.micro_batch_size set)"
                : String(s.colocated ? s.transport.size : 1)
        ]
    }

    /// Continues from the stage folder's checkpoint, if any: the session restores its own state,
    /// and the evaluation before training is the one the checkpoint kept.
    func restore() async throws {
        let fresh = TrainingState(
            stage: "ppo", step: 0, cursor: 0, optimizerStep: 0, learningRate: 0, rng: RNG(seed: config.run.seed),
            tokenizer: "", worldSize: transport.size)
        let state = try stageFolder.resumedState(stage: "ppo", fresh: fresh)
        if let checkpoint = stageFolder.checkpoint {
            try await session.restore(state, from: checkpoint)
            completedIterations = state.step
            // Checkpoints written before the state kept it: the step-0 evaluation's own report.
            result.initialInstructions =
                state.startingScore ?? InstructionEvaluation.savedScore(folder: stageFolder.folder.path, step: 0)
        }
        session.say(stageFolder.resumeLine(step: completedIterations, unit: "iteration"))
        try stageFolder.checkSteps(
            done: completedIterations, total: config.ppo.iterations, key: "ppo.iterations", say: session.say)
    }

    /// Held-out greedy exact match of the policy (rank 0), logged; nil without held-out examples.
    func evaluateExactMatch(iteration: Int) throws -> Double? {
        let s = session
        guard transport.rank == 0, !s.data.evalExamples.isEmpty else { return nil }
        let r = try Evaluation.run(
            trunk: s.roles.policyTrunk, adapter: s.roles.policyLoRA, examples: s.data.evalExamples,
            tokenizer: s.tokenizer,
            maxLength: config.maxLength, maxNewTokens: config.cadence.evalMaxNewTokens, batchSize: 64,
            responseText: s.responseText)
        try stageFolder.folder.append(PPOEvalRecord(step: iteration, evalLoss: r.loss, exactMatch: r.exactMatch ?? 0))
        s.say(
            String(
                format: "iteration %d: held-out exact match %.1f%%, eval loss %.4f", iteration,
                100 * (r.exactMatch ?? 0), r.loss))
        return r.exactMatch
    }

    /// Held-out instruction following of the policy (rank 0; ifeval), logged per constraint kind
    /// and written with sample replies to eval/instructions-step-N.json; nil without such prompts.
    func evaluateInstructions(iteration: Int) throws -> Double? {
        let s = session, folder = stageFolder.folder
        guard transport.rank == 0, !s.data.instructionEval.isEmpty else { return nil }
        let e = try InstructionEvaluation.run(
            trunk: s.roles.policyTrunk, adapter: s.roles.policyLoRA, prompts: s.data.instructionEval,
            tokenizer: s.tokenizer, maxNewTokens: config.cadence.evalMaxNewTokens, batchSize: 64,
            responseText: s.responseText)
        try folder.append(e.metrics(step: iteration, prompts: s.data.instructionEval.count))
        let directory = (folder.path as NSString).appendingPathComponent("eval")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = (directory as NSString).appendingPathComponent(
            String(format: "instructions-step-%05d.json", iteration))
        try JSONSerialization.data(
            withJSONObject: e.report(step: iteration), options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        )
        .write(to: URL(fileURLWithPath: path))
        let kinds = e.perKind.keys.sorted().map { kind in
            let count = e.perKind[kind] ?? (kept: 0, total: 0)
            return String(format: "%@ %.0f%%", kind, 100 * Double(count.kept) / Double(max(count.total, 1)))
        }
        s.say(
            String(
                format: "iteration %d: held-out instructions kept %.1f%% (%d/%d; %@)", iteration, 100 * e.score, e.kept,
                e.total,
                kinds.joined(separator: ", ")))
        return e.score
    }

    /// The policy in formats other tools read: a PEFT adapter over the SFT model, or a full model;
    /// the critic's adapter and value head.
    func saveFinal() throws {
        let final = (stageFolder.folder.path as NSString).appendingPathComponent("final"), r = session.roles
        try FileManager.default.createDirectory(atPath: final, withIntermediateDirectories: true)
        let policyFolder = final + (r.policyLoRA == nil ? "/policy" : "/policy_adapter")
        if let policyLoRA = r.policyLoRA {
            try PEFTAdapter.save(policyLoRA, directory: policyFolder, baseModel: config.run.initFrom)
        } else {
            try HFCheckpoint.save(r.policyTrunk, directory: policyFolder)
        }
        let p = config.ppo
        try ModelCard.of(
            method: "PPO, estimator \(p.estimator.rawValue), layout \(config.layout.rawValue), \(p.iterations) "
                + "iterations of \(p.prompts) prompts × \(p.samples) samples"
                + (r.policyLoRA.map { ", LoRA rank \($0.config.rank)" } ?? ", full fine-tuning"),
            run: config.run, data: config.data, resolved: config.resolved, folder: stageFolder.folder,
            library: r.policyLoRA == nil ? "transformers" : "peft"
        ).write(into: policyFolder)
        if let criticLoRA = r.criticLoRA {
            try PEFTAdapter.save(criticLoRA, directory: final + "/critic_adapter", baseModel: config.run.initFrom)
        }
        try ScalarHeadIO.save(r.valueHead, directory: final, fileName: "value_head.safetensors")
    }
}

extension PPORun: LoopedStage {
    var stageName: String { "ppo" }
    var totalSteps: Int { config.ppo.iterations }
    var completedSteps: Int { completedIterations }
    var cadence: CadenceSettings { config.cadence }
    var folder: RunFolder { stageFolder.folder }
    /// PPO's losses move both ways by design: no spike rule, only finite values.
    var divergenceRules: OptimizerSettings? { nil }
    var divergenceMemory: DivergenceMemory? {
        get { nil }
        set {}
    }
    var collective: Bool { session.colocated }

    func step(_ iteration: Int) async throws -> PPOMetrics {
        let metrics = try await session.iteration(iteration)
        completedIterations = iteration
        result.kl = metrics.meanKL
        return metrics
    }

    /// Rank 0 evaluates the policy (placed: after copying its trained state back); colocated,
    /// every rank waits for it.
    func evaluate(step iteration: Int) async throws -> String? {
        if transport.rank == 0 {
            if iteration > 0 { try await session.pullPlacedState() }
            let exactMatch = try evaluateExactMatch(iteration: iteration)
            let instructions = try evaluateInstructions(iteration: iteration)
            if iteration == 0 {
                (result.initialExactMatch, result.initialInstructions) = (exactMatch, instructions)
            } else {
                if let exactMatch { result.finalExactMatch = exactMatch }
                if let instructions { result.finalInstructions = instructions }
            }
        }
        if session.colocated { try await transport.barrier() }
        return nil
    }

    func save(step iteration: Int) async throws -> String {
        let s = session
        let snapshots = try await s.snapshots()
        let state = TrainingState(
            stage: "ppo", step: iteration, cursor: iteration * config.ppo.prompts,
            optimizerStep: snapshots["policy"]?.step ?? 0,
            learningRate: 0, rng: RNG(seed: config.run.seed),
            tokenizer: s.tokenizer is BPETokenizer ? "tokenizer.json" : "byte",
            worldSize: transport.size, klBeta: s.kl.beta, optimizerSteps: snapshots.mapValues(\.step),
            settings: stageFolder.settings, startingScore: result.initialInstructions)
        return try Checkpoints.saveFolder(
            directory: folder.checkpoints, step: iteration, keepLast: config.cadence.keepLast
        ) { dir in
            try Checkpoints.writeCommon(dir, optimizer: nil, state: state, tokenizer: s.tokenizer as? BPETokenizer)
            try PPOCheckpoint.write(snapshots, path: (dir as NSString).appendingPathComponent(PPOCheckpoint.fileName))
            try s.writeSourceState(directory: dir)
        }
    }

    /// The placed roles' trained state comes back to rank 0, the serving ranks are released, and
    /// rank 0 writes the final adapters (before the loop's last barrier).
    func finish() async throws {
        if transport.rank == 0 { try await session.pullPlacedState() }
        try await releaseServers()
        if transport.rank == 0 { try saveFinal() }
    }

    func releaseServers() async throws {
        for client in session.clients.values { try await client.stop() }
    }
}

/// A PPO exact-match evaluation's metrics line.
struct PPOEvalRecord: MetricsRecord {
    let step: Int
    let evalLoss: Double, exactMatch: Double

    enum CodingKeys: String, CodingKey {
        case step
        case evalLoss = "eval_loss", exactMatch = "exact_match"
    }
}

/// PPO's checkpoint tensors: each trainable part's parameters and AdamW moments, named
/// "<part>.parameters", "<part>.m", "<part>.v" (parts: policy, value_head, critic_adapter or
/// critic_trunk); the AdamW steps are in training_state.json.
enum PPOCheckpoint {
    static let fileName = "ppo_state.safetensors"

    static func write(_ snapshots: [String: TrainableSnapshot], path: String) throws {
        try writeFloatTensors(
            path: path,
            snapshots.keys.sorted().flatMap { name in
                [
                    (name + ".parameters", snapshots[name]!.parameters), (name + ".m", snapshots[name]!.m),
                    (name + ".v", snapshots[name]!.v),
                ]
            })
    }

    static func read(_ file: SafeTensorsFile, steps: [String: Int]) throws -> [String: TrainableSnapshot] {
        var out: [String: TrainableSnapshot] = [:]
        for (name, step) in steps {
            out[name] = TrainableSnapshot(
                parameters: try file.floats(name + ".parameters"), m: try file.floats(name + ".m"),
                v: try file.floats(name + ".v"), step: step)
        }
        return out
    }
}
