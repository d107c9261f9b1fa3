import Cluster
import Config
import Foundation
import Kernels
import Models
import Runs

/// A training stage that experiments chain (`pipeline`, `prefs`, `overopt`): it runs to a result
/// and says, through its failure context, where it is.
public protocol Stage: AnyObject {
    associatedtype Output
    var context: FailureContext { get }
    func run() async throws -> Output
}

extension SFTStage: Stage {}
extension DPOStage: Stage {}
extension PPOStage: Stage {}

/// Runs `stage` as the step `name` of an experiment, its failure context reported first.
func runStage<S: Stage>(_ stage: S, as name: String, onStage: (String, FailureContext) -> Void) async throws -> S.Output
{
    onStage(name, stage.context)
    return try await stage.run()
}

/// The run folder of a stage and the checkpoint it resumes from: rank 0 decides, every rank
/// uses its choice (one shared filesystem); the resolved config is printed and saved.
struct StageFolder {
    let folder: RunFolder, checkpoint: String?, resumeMessage: String
    let isLeader: Bool
    /// The model and data settings of this run (saved in its checkpoints' training state).
    let settings: [String: String]

    /// The run folder and checkpoint; a checkpoint trained with other model or data settings is
    /// refused (unless resume: force) before the folder's config.yaml is rewritten.
    /// `collective` false: rank 0 alone chooses (the other ranks serve placed roles meanwhile).
    /// `extra`: settings of the run beyond its config that a resume must keep.
    static func open(
        stage: String, run: RunSettings, resolved: ResolvedConfig, transport: any Transport, workingDirectory: String,
        collective: Bool = true, extra: [String: String] = [:], say: (String) -> Void
    ) async throws -> StageFolder {
        let (folder, checkpoint, message) =
            collective
            ? try await RunFolder.chooseCollectively(
                name: run.name, out: run.out, resume: run.resume, workingDirectory: workingDirectory,
                transport: transport)
            : try RunFolder.choose(name: run.name, out: run.out, resume: run.resume, workingDirectory: workingDirectory)
        if transport.rank == 0 { try Console.openLog(folder.log, slot: .stage) }
        say("\(stage): run folder \(folder.path)")
        if collective { RankStatus.shared.publish(runFolder: folder.path, size: transport.size) }
        let settings = ResumeSettings.of(resolved, extra: extra)
        if let checkpoint,
            let warning = try ResumeSettings.check(
                checkpoint: checkpoint, state: try Checkpoints.loadState(checkpoint), config: resolved,
                extra: extra, resume: run.resume)
        {
            say(warning)
        }
        say("resolved config (\(resolved.file ?? "defaults")):\n" + resolved.yaml)
        if transport.rank == 0 { try folder.writeConfig(resolved.yaml) }
        return StageFolder(
            folder: folder, checkpoint: checkpoint, resumeMessage: message, isLeader: transport.rank == 0,
            settings: settings)
    }

    /// The checkpoint's training state (checked to be this stage's, metrics after it dropped), or
    /// `fresh`; either way carrying this run's settings into the checkpoints it writes.
    func resumedState(stage: String, fresh: TrainingState) throws -> TrainingState {
        var state = fresh
        if let checkpoint {
            state = try Checkpoints.loadState(checkpoint)
            guard state.stage == stage else {
                throw TrainingError("\(checkpoint) is a '\(state.stage)' checkpoint, not \(stage)")
            }
            if isLeader {
                try folder.truncateMetrics(afterStep: state.step)
                try folder.truncateSamples(afterIteration: state.step)
            }
        }
        state.settings = settings
        return state
    }

    /// On resume, a run already at its last step says so (and trains nothing); one asked for fewer
    /// steps than its checkpoint has done is an error rather than a silent exit. `key` is the
    /// setting that gave `total` (train.steps, or train.epochs = `epochs`).
    func checkSteps(done: Int, total: Int, key: String, epochs: Double? = nil, say: (String) -> Void) throws {
        try checkRemainingSteps(checkpoint: checkpoint, done: done, total: total, key: key, epochs: epochs, say: say)
    }

    /// The sentence saying where the run starts (`unit`: step, or PPO's iteration).
    func resumeLine(step: Int, unit: String = "step") -> String {
        resumeMessage + (checkpoint != nil ? " at \(unit) \(step)" : "")
    }
}

/// `StageFolder.checkSteps` for any stage.
func checkRemainingSteps(
    checkpoint: String?, done: Int, total: Int, key: String, epochs: Double? = nil, say: (String) -> Void
) throws {
    guard let checkpoint, done >= total else { return }
    let setting = epochs.map { "'\(key)' \($0) gives \(total) steps" } ?? "'\(key)' is \(total)"
    guard done == total else {
        throw ConfigError(
            "\(setting), but \(checkpoint) has already done \(done): raise \(key) to continue it, or set resume: "
                + "never to start over"
        )
    }
    say("\(checkpoint) is at step \(done), the last of \(setting): nothing left to train (raise \(key) to continue)")
}

/// The trainable parameters of a data-parallel stage and their AdamW optimizer. Each rank adds its
/// micro-batches' gradients into an exact Float64 sum, the sums are all-reduced, and every rank
/// applies the same update: any number of ranks gives the same weights, bit for bit.
final class DataParallelOptimizer {
    let parameters: FloatBuffer
    let optimizer: AdamW
    /// One micro-batch's gradient (zeroed by `beginMicroBatch`), then the step's summed gradient.
    let gradients: FloatBuffer
    let sum: GradientSum
    /// The pieces the sum is all-reduced in, in order: a trunk's `gradientBuckets` (full
    /// fine-tuning, so the last backward can overlap them), or one piece for adapters.
    let buckets: [Range<Int>]
    /// Whether the last backward's buckets are reduced while it runs (`cluster.overlap_allreduce`).
    let overlap: OverlapPolicy
    private var overlapped: OverlappedReduction?

    init(
        parameters: FloatBuffer, layout: TensorLayout, hyper: AdamWHyperparameters, buckets: [Range<Int>]? = nil,
        overlap: OverlapPolicy = .never
    ) {
        self.parameters = parameters
        optimizer = AdamW(layout: layout, hyper: hyper)
        gradients = FloatBuffer(count: parameters.count)
        sum = GradientSum(count: parameters.count)
        self.buckets = buckets ?? [0..<parameters.count]
        self.overlap = overlap
    }

    /// For the run's log: when this trainer's all-reduce runs (nil in a world of one).
    func reductionLine(_ transport: any Transport) -> String? {
        guard transport.size > 1 else { return nil }
        guard buckets.count > 1 else {
            return
                "gradient all-reduce: after the backward, in one piece (adapters, or gradients added after the last "
                + "backward)"
        }
        return "gradient all-reduce: " + overlap.decide(transport).why
    }

    func beginStep() { sum.zero() }
    func beginMicroBatch() { gradients.zero() }
    func endMicroBatch() { if overlapped == nil { sum.add(gradients) } }

    /// For the step's last micro-batch, whose backward nothing else adds to afterwards: the hook
    /// that adds each bucket the backward finishes and starts its all-reduce at once (nil in a
    /// world of one, when the buckets are not a trunk's, or when the policy says not to).
    func overlappingLastMicroBatch(_ transport: any Transport) -> GradientsReady? {
        guard transport.size > 1, buckets.count > 1, overlap.decide(transport).overlap else { return nil }
        let reduction = OverlappedReduction(sum: sum, gradients: gradients, buckets: buckets, transport: transport)
        overlapped = reduction
        return reduction.ready
    }

    /// Σ over ranks, written back into `gradients`.
    func allReduce(_ transport: any Transport) async throws {
        if let reduction = overlapped {
            overlapped = nil
            try await reduction.finish()
        } else {
            try await OverlappedReduction.reduce(sum, buckets: buckets, transport: transport)
        }
        sum.write(into: gradients)
    }

    /// Debug option train.check_replicas: every rank's weights must be bit-identical after each
    /// step; a checksum of the raw bits is compared across ranks, and divergence stops the run.
    func checkReplicasAgree(_ transport: any Transport) async throws {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for i in 0..<parameters.count { hash = (hash ^ UInt64(parameters.pointer[i].bitPattern)) &* 0x100_0000_01b3 }
        let all = try await transport.allGather(withUnsafeBytes(of: hash) { Data($0) })
        let hashes = all.map { $0.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) } }
        if let bad = hashes.firstIndex(where: { $0 != hashes[0] }) {
            throw TrainingError("replica weights diverged: rank \(bad)'s checksum differs from rank 0's")
        }
    }

    /// Clips the summed gradient and applies AdamW; returns the norm before clipping.
    @discardableResult
    func apply(learningRate: Float, gradClip: Float) -> Float {
        let norm = clipGradientNorm(gradients, maxNorm: gradClip)
        optimizer.update(parameters: parameters, gradients: gradients, learningRate: learningRate)
        return norm
    }
}

/// A stage's LoRA adapter: the checkpoint's (its shape checked against the config) when resuming,
/// else a fresh one initialised from `seed`.
/// train.max_length must fit the model's context: found at load, not when a long example stops
/// the run partway.
func checkContext(_ model: any ModelConfiguration, maxLength: Int) throws {
    guard maxLength <= model.contextLength else {
        throw ConfigError(
            "'train.max_length' \(maxLength) exceeds the model's context of \(model.contextLength) "
                + "tokens\(model.contextNote)"
        )
    }
}

func stageAdapter(_ lora: LoRAConfig, model: any ModelConfiguration, checkpoint: String?, seed: UInt64) throws
    -> LoRAAdapter
{
    guard let checkpoint else {
        let adapter = try makeAdapter(lora, for: model)
        var rng = RNG(seed: seed)
        adapter.initialize(rng: &rng)
        return adapter
    }
    let loaded = try PEFTAdapter.load(
        directory: (checkpoint as NSString).appendingPathComponent("adapter"), modelConfig: model)
    guard loaded.config.rank == lora.rank, loaded.config.alpha == lora.alpha,
        Set(loaded.config.targets) == Set(model.resolving(lora.targets))
    else {
        throw ConfigError(
            "\(checkpoint)/adapter has rank \(loaded.config.rank), α \(loaded.config.alpha), targets "
                + "\(loaded.config.targets.map(\.name)); the config asks for \(lora.rank), \(lora.alpha), "
                + "\(lora.targets.map(\.name))"
        )
    }
    return loaded
}
