import Cluster
import Config
import Foundation
import Runs

/// What one step (a PPO iteration) reports: its metrics line, its progress fields and the values
/// the divergence guard watches.
protocol StepReport: MetricsRecord {
    /// The progress line's fields after the step number ("loss 0.1234 lr 3.00e-04 …").
    var progressFields: String { get }
    var watched: WatchedValues { get }
}

/// What the divergence guard checks after a step.
enum WatchedValues {
    /// A loss that stays positive (cross-entropy, Bradley–Terry, DPO): every rule of
    /// `DivergenceGuard`; `gradNorm` nil when the step trained nothing whose norm could be checked.
    case loss(Double, name: String, gradNorm: Double?)
    /// Losses that move both ways by design (PPO): only a non-finite value stops the run.
    case finite([(name: String, value: Double)])
}

/// A stage that `StageLoop` drives: it supplies its step, its evaluation and its save; the loop
/// owns everything around them.
protocol LoopedStage: AnyObject {
    associatedtype Report: StepReport
    /// The stage in failure reports and stop messages: sft, hydra-sft, rm, dpo or ppo.
    var stageName: String { get }
    var context: FailureContext { get set }
    var totalSteps: Int { get }
    var completedSteps: Int { get }
    var cadence: CadenceSettings { get }
    var folder: RunFolder { get }
    /// The divergence rules (nil: PPO, whose losses only need to stay finite).
    var divergenceRules: OptimizerSettings? { get }
    /// The guard's memory, kept in the training state so that a resumed run judges alike.
    var divergenceMemory: DivergenceMemory? { get set }
    /// Every rank runs the loop and agrees on stops; false when rank 0 alone drives (PPO with
    /// roles placed on other ranks, which serve them meanwhile).
    var collective: Bool { get }

    /// Step `step` (the first is 1), its figures summed over the ranks.
    func step(_ step: Int) async throws -> Report
    /// Held-out evaluation after `step` (0: before the first), on every rank (the stage decides
    /// who works); returns what rank 0's progress line prints, or nil when the stage printed.
    func evaluate(step: Int) async throws -> String?
    /// A checkpoint of the state after `step` (rank 0 only); its folder.
    func save(step: Int) async throws -> String
    /// After the last step, before every rank's final barrier: final files, placed state pulled.
    func finish() async throws
    /// Before a stop's barrier: ranks serving placed roles are released (PPO).
    func releaseServers() async throws
}

extension LoopedStage {
    func releaseServers() async throws {}
}

/// A data-parallel stage whose progress is a `TrainingState` (sft, hydra-sft, rm, dpo): the
/// steps done and the divergence guard's memory live there, and every rank runs the loop.
protocol TrainingStateStage: LoopedStage {
    var state: TrainingState { get set }
}

extension TrainingStateStage {
    var completedSteps: Int { state.step }
    var divergenceMemory: DivergenceMemory? {
        get { state.divergence }
        set { state.divergence = newValue }
    }
    var collective: Bool { true }
}

/// The per-step skeleton every stage shares (nanoGPT's loop, once): failure context, the step,
/// the divergence guard, agreement on stop signals, metrics + progress + TensorBoard, evaluation
/// and checkpoint cadence, the final save and barrier. Rank 0 prints and writes files.
struct StageLoop<Stage: LoopedStage> {
    let stage: Stage
    let transport: any Transport
    /// Rank 0's printer for lines outside the progress display (the step-0 evaluation).
    let say: (String) -> Void

    var isLeader: Bool { transport.rank == 0 }

    /// Runs the stage from its completed steps to its total; returns the last checkpoint the
    /// cadence wrote (rank 0; nil elsewhere or when none was due).
    func run() async throws -> String? {
        if stage.completedSteps == 0 && stage.cadence.evalEvery > 0, let line = try await stage.evaluate(step: 0) {
            if isLeader { say("step 0: " + line) }
        }
        let evaluator =
            isLeader && !stage.cadence.evalCommand.isEmpty
            ? CheckpointEvaluator(
                command: stage.cadence.evalCommand, timeout: stage.cadence.evalCommandTimeout, folder: stage.folder)
            : nil
        let lastSaved: String?
        do { lastSaved = try await steps(evaluator: evaluator) } catch {
            evaluator?.cancel()  // a stop or a failure: the running evaluation ends with the run
            throw error
        }
        try await stage.finish()
        // Nobody leaves before the last files are on disk.
        try await transport.barrier()
        // After the barrier, so that no rank waits for the last evaluations in a collective.
        try evaluator?.finish()
        return lastSaved
    }

    /// The steps from the stage's completed ones to its total; the last checkpoint saved.
    func steps(evaluator: CheckpointEvaluator?) async throws -> String? {
        let progress = Progress(total: stage.totalSteps, every: stage.cadence.logEvery, startStep: stage.completedSteps)
        let rules = stage.divergenceRules
        var divergence = DivergenceGuard(
            spikeFactor: rules?.lossSpike ?? 0, maxGradNorm: rules?.maxGradNormAbort ?? 0,
            checkpoints: stage.folder.checkpoints, memory: stage.divergenceMemory)
        var lastSaved: String?
        while stage.completedSteps < stage.totalSteps {
            let step = stage.completedSteps + 1
            stage.context.step = step
            FailureReport.current = stage.context
            let report = try await stage.step(step)
            try evaluator?.check()
            try check(report.watched, step: step, divergence: &divergence)
            let stop = step < stage.totalSteps ? try await agreedStop() : nil
            if isLeader {
                try stage.folder.append(report)
                progress.update(step: step, fields: report.progressFields)
            }
            if stage.cadence.evaluates(after: step, of: stage.totalSteps),
                let line = try await stage.evaluate(step: step)
            {
                if isLeader { progress.line("step \(step): " + line) }
            }
            var saved: String?
            if isLeader && stage.cadence.checkpoints(after: step, of: stage.totalSteps) {
                saved = try await stage.save(step: step)
                lastSaved = saved
                if let saved { try evaluator?.submit(checkpoint: saved, step: step) }
            }
            if let stop { try await stopAfter(stop, step: step, saved: saved) }
        }
        return lastSaved
    }

    /// The divergence guard on this step's figures (the same on every rank: they are summed).
    func check(_ watched: WatchedValues, step: Int, divergence: inout DivergenceGuard) throws {
        switch watched {
        case .loss(let loss, let name, let gradNorm):
            try divergence.check(step: step, loss: loss, gradNorm: gradNorm, lossName: name)
            stage.divergenceMemory = divergence.memory
        case .finite(let values):
            guard let (name, value) = values.first(where: { !$0.value.isFinite }) else { return }
            throw divergence.diverged("the \(name) is \(value)", step: step)
        }
    }

    /// A stop signal every rank agreed on, asked right after the step's own all-reduce while the
    /// ranks are in step; when rank 0 drives alone, its own signal.
    func agreedStop() async throws -> StopSignal? {
        if stage.collective { return try await StopRequest.agreed(transport) }
        return StopRequest.local.map { StopSignal(number: $0, ranks: [0]) }
    }

    /// Ends the stage after `step`: rank 0 writes a checkpoint unless `saved` holds this step's,
    /// placed roles are released, every rank waits for it, and the stage ends with `RunStopped`.
    func stopAfter(_ signal: StopSignal, step: Int, saved: String?) async throws -> Never {
        var checkpoint = saved
        if isLeader && checkpoint == nil { checkpoint = try await stage.save(step: step) }
        try await stage.releaseServers()
        try await transport.barrier()
        throw RunStopped(signal: signal, stage: stage.stageName, step: step, checkpoint: checkpoint)
    }
}
