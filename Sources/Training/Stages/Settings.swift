import Alignment
import Cluster
import Config
import Datasets
import Foundation
import Kernels
import Models
import Roles
import Runs

// The configuration groups every stage shares, typed: each group declares its keys (type,
// default, help, valid range) and builds itself from a resolved config. Stage configs are
// made of groups; stage code reads fields, never keys.

extension ArithFlaw: ConfigChoice {}
extension AdvantageEstimator: ConfigChoice {}
extension KLEstimator: ConfigChoice {}
extension LossAggregation: ConfigChoice {}
extension InSPOVariant: ConfigChoice {}
extension PrecisionSetting: ConfigChoice {}
extension ReductionShape: ConfigChoice {}

/// The built-in task generated in memory, or none (data comes from files).
/// The built-in tasks: arith (sums from a flawed demonstrator; every stage), ifeval (instruction
/// prompts; ppo), collapse (rankings for closed and open-ended prompts; rm).
public enum DataTask: String, ConfigChoice { case none = "", arith, ifeval, collapse }

/// When a data-parallel step's gradient all-reduce runs beside the last backward pass.
public enum OverlapPolicy: String, ConfigChoice {
    /// Overlapped when the ranks span several hosts: there the reduction waits on the network,
    /// and the backward can use the time. On one host it is shared-memory copying on the same
    /// cores the backward needs, and overlapping only adds contention (measured, issue 13).
    case auto
    case always, never

    /// Whether a step on `transport` overlaps, and a line saying why.
    public func decide(_ transport: any Transport) -> (overlap: Bool, why: String) {
        let hosts = transport.hostCount
        switch self {
        case .always: return (true, "overlapped with the backward (cluster.overlap_allreduce: always)")
        case .never: return (false, "after the backward (cluster.overlap_allreduce: never)")
        case .auto where hosts.count > 1:
            return (true, "overlapped with the backward: the ranks span several hosts (\(hosts.source))")
        case .auto:
            return (
                false,
                "after the backward: every rank is on one host (\(hosts.source)), where overlapping only competes "
                    + "for the cores; cluster.overlap_allreduce: always overlaps anyway"
            )
        }
    }
}

/// A model shape by name, from the families' presets.
public struct PresetName: ConfigScalar, Equatable {
    public let name: String
    public static var configType: ConfigType { .choice(ModelFamilies.presetNames) }
    public init?(configValue: ConfigValue) {
        guard case .string(let v) = configValue else { return nil }
        name = v
    }
    public init(_ name: String) { self.name = name }
    public var configValue: ConfigValue { .string(name) }
}

/// A model family with presets, by Hugging Face's model_type (gpt2, llama, qwen2).
public struct FamilyName: ConfigScalar, Equatable {
    public let name: String
    public static var configType: ConfigType { .choice(ModelFamilies.presetFamilies) }
    public init?(configValue: ConfigValue) {
        guard case .string(let v) = configValue else { return nil }
        name = v
    }
    public init(_ name: String) { self.name = name }
    public var configValue: ConfigValue { .string(name) }
}

let validName = ConfigCheck<String>("a non-empty name without '/'") { !$0.isEmpty && !$0.contains("/") }

/// The run: its name and folder, seed, resume policy, tokenizer, model, cluster and placement.
public struct RunSettings: Sendable {
    static let name = Key<String>(
        "name", "experiment", "run name; the run folder is runs/<name>-<timestamp>", validName)
    static let out = Key<ConfigPath>("out", "", "run folder (default runs/<name>-<timestamp> under the working folder)")
    static let seed = Key<Int>("seed", 1, "seed of every random choice (init, data order, sampling)")
    static let resume = Key<String>(
        "resume", "auto",
        "auto (newest intact checkpoint of this run name), force (auto, even with changed model/data settings), "
            + "never, or a checkpoint path"
    )
    static let tokenizer = Key<String>(
        "tokenizer", "byte", "byte, a tokenizer.json (or folder holding one), or a GGUF file")
    public static let timeout = Key<Double>(
        "cluster.timeout", 300, "seconds any wait for another rank may last before the run stops", .positive)
    static let overlap = Key<OverlapPolicy>(
        "cluster.overlap_allreduce", .auto,
        "auto (overlap the gradient all-reduce with the backward when ranks span several hosts), always, or never")
    static let reduction = Key<ReductionShape>(
        "cluster.reduction", .flat,
        "how gradient sums travel: flat (one all-reduce over every rank) or hierarchical (summed within each host "
            + "through shared memory, all-reduced between one rank per host, copied back); the same bits either way")
    static let bucketMiB = Key<Double>(
        "cluster.bucket_mib", 0,
        "MiB per gradient message between hosts (hierarchical) or between all ranks (flat); 0: sized from the link "
            + "measured at start when the ranks span several hosts, else 1", .within(0, 1024))
    static let shareWeights = Key<Bool>(
        "cluster.share_weights", true,
        "keep frozen weights (Hydra's trunk, a reference) once per host in shared memory (/dev/shm) instead of "
            + "once per rank")
    static let placement = Key<String>(
        "placement", "colocated", "colocated, or role=rank pairs (e.g. reference=1,reward=1)")
    static let family = Key<FamilyName>(
        "model.family", FamilyName("gpt2"), "architecture of a freshly initialised model (its presets: model.preset)")
    static let preset = Key<PresetName>(
        "model.preset", PresetName("tiny"), "shape of a freshly initialised model of model.family")
    static let initFrom = Key<ConfigPath>(
        "model.init_from", "", "Hugging Face model folder or GGUF file to start from (overrides preset)")
    static let precision = Key<PrecisionSetting>(
        "precision", .fp32,
        "number format of the weight products: fp32 (exact reference), bf16 (bf16 inputs, fp32 sums and outputs, "
            + "as PyTorch's CPU autocast), or auto (bf16 where the CPU has avx512_bf16 or amx_bf16, else fp32)")
    static let keys = [
        name.declaration, out.declaration, seed.declaration, resume.declaration, tokenizer.declaration,
        timeout.declaration, overlap.declaration, reduction.declaration, bucketMiB.declaration,
        shareWeights.declaration, placement.declaration, family.declaration,
        preset.declaration,
        initFrom.declaration, precision.declaration,
    ]

    public var name: String, out: String, seed: UInt64, resume: ResumePolicy, tokenizer: String
    public var timeout: Double, overlap: OverlapPolicy, placement: String, family: String, preset: String,
        initFrom: String
    /// Frozen weights once per host (`HostWeights`) rather than once per rank.
    public var shareWeights: Bool
    /// `cluster.reduction` and `cluster.bucket_mib`.
    public var reduction: ReductionSetting
    /// `precision` resolved on this CPU, with the reason said at start.
    public var precision: PrecisionSetting.Decision

    init(_ c: ResolvedConfig) throws {
        name = c[Self.name]
        out = c[Self.out].path
        seed = UInt64(truncatingIfNeeded: c[Self.seed])
        resume = try ResumePolicy(c[Self.resume])
        tokenizer = c.optional(Self.tokenizer) ?? Self.tokenizer.defaultValue
        timeout = c[Self.timeout]
        shareWeights = c[Self.shareWeights]
        reduction = Self.reduction(c)
        overlap = c.optional(Self.overlap) ?? Self.overlap.defaultValue
        placement = c[Self.placement]
        preset = (c.optional(Self.preset) ?? Self.preset.defaultValue).name
        family = (c.optional(Self.family) ?? Self.family.defaultValue).name
        initFrom = c[Self.initFrom].path
        precision = (c.optional(Self.precision) ?? Self.precision.defaultValue).decide(cpu: .current)
        if c.schema.keys.contains(where: { $0.path == Self.preset.path }) {
            do { _ = try ModelFamilies.preset(preset, family: family) } catch let ModelError.invalidConfig(message) {
                throw ConfigError("'model.preset': \(message)")
            }
        }
    }
}

extension RunSettings {
    /// `cluster.reduction` and `cluster.bucket_mib` of any stage's config.
    public static func reduction(_ c: ResolvedConfig) -> ReductionSetting {
        let mib = c.optional(Self.bucketMiB) ?? 0
        // A positive value never rounds to 0 bytes (which would mean "measure").
        return ReductionSetting(
            shape: c.optional(Self.reduction) ?? Self.reduction.defaultValue,
            bucketBytes: mib > 0 ? max(8, Int((mib * 1_048_576).rounded())) : 0)
    }

    /// Said at start beside the BLAS line: the precision chosen and why, and what runs bf16 products.
    public var precisionLine: String {
        precision.precision == .bf16 ? "\(precision.reason); bf16 products: \(BFloat16GEMM.summary)" : precision.reason
    }

    /// Puts `trunk` in this run's precision. `frozen`: no optimizer step changes its weights (a
    /// base under LoRA, a reference, a reward model), so its bf16 copy is made once.
    public func apply(to trunk: any CausalLM, frozen: Bool) {
        trunk.use(precision.precision, frozen: frozen)
    }

    /// The ranks of this rank's host (nil for a single rank). A collective over `transport`.
    public func hostGroup(_ transport: any Transport) async throws -> (any Transport)? {
        transport.size > 1 ? try await transport.hostGroup() : nil
    }

    /// The ranks that keep frozen weights once (`HostWeights`): the host's, unless
    /// `cluster.share_weights` is false.
    public func sharing(_ host: (any Transport)?) -> (any Transport)? { shareWeights ? host : nil }

    /// The model at `directory`, frozen in this run's precision: read by the host's first rank
    /// and shared with the host's others (`host`), or read by this rank alone (nil).
    public func loadFrozen(_ directory: String, host: (any Transport)?) async throws -> any CausalLM {
        try await HostWeights.frozen(
            host: host, precision: precision.precision, config: { try HFCheckpoint.readConfig(directory: directory) },
            load: { try HFCheckpoint.load(directory: directory) })
    }
}

/// Where the data comes from: a built-in task, or JSONL files.
public struct DataSettings: Sendable {
    static let task = Key<DataTask>("data.task", .none, "built-in task generated in memory (instead of files)")
    static let seed = Key<Int>("data.seed", 1, "seed of the built-in task's split and flaws")
    static let flaw = Key<ArithFlaw>("data.flaw", .dropCarry, "arith: the demonstrator's habit")
    static let flawShare = Key<Double>(
        "data.flaw_share", 0.6, "arith: share of eligible demos that carry the flaw", .within(0, 1))
    static let evalSize = Key<Int>(
        "data.eval_size", 500, "held-out examples: arith (a, b) pairs, ifeval prompts, collapse prompts", .positive)
    static let collapsePrompts = Key<Int>(
        "data.collapse_prompts", 2000,
        "collapse: training prompts (half open-ended); fewer let a reward model interpolate their rankings",
        .positive)
    static let train = Key<ConfigPath>("data.train", "", "training JSONL (when no task)")
    static let eval = Key<ConfigPath>("data.eval", "", "evaluation JSONL (when no task)")
    static let prefs = Key<ConfigPath>("data.prefs", "", "preference pairs JSONL for Hydra-SFT (when no task)")
    static let evalPrefs = Key<ConfigPath>("data.eval_prefs", "", "held-out preference pairs JSONL (reward accuracy)")
    static let skipTooLong = Key<Bool>(
        "data.skip_too_long", false,
        "drop examples (and prompts) longer than train.max_length at load, counted, instead of stopping with an error")
    static let allowReplacement = Key<Bool>(
        "data.allow_replacement", false,
        "read invalid UTF-8 with U+FFFD in place of the bad bytes, counted, instead of stopping with an error")
    /// data.prompt_key, …: the dataset's name of each of our fields (TRL's and OpenRLHF's *_key).
    static let fieldKeys = DataFields.mappable.map { name in
        Key<String>(
            "data.\(name)_key", name,
            "the data files' field holding '\(name)' (e.g. question, instruction, output; 'messages' may hold "
                + "ShareGPT turns of from/value)")
    }
    static let keys =
        [
            task.declaration, seed.declaration, flaw.declaration, flawShare.declaration, evalSize.declaration,
            collapsePrompts.declaration, train.declaration, eval.declaration, prefs.declaration, evalPrefs.declaration,
            skipTooLong.declaration, allowReplacement.declaration,
        ] + fieldKeys.map(\.declaration)

    public var task: DataTask, seed: UInt64, flaw: ArithFlaw, flawShare: Double, evalSize: Int, collapsePrompts: Int
    public var train: String, eval: String, prefs: String, evalPrefs: String
    public var skipTooLong: Bool, allowReplacement: Bool
    /// How the data files name our fields.
    public var fields: DataFields

    /// A fresh record of what loading notices, with these settings' rules.
    public func notes() -> DataNotes {
        DataNotes(allowReplacement: allowReplacement, skipTooLong: skipTooLong, fields: fields)
    }

    init(_ c: ResolvedConfig) throws {
        var names: [String: String] = [:]
        for (name, key) in zip(DataFields.mappable, Self.fieldKeys) {
            guard let value = c.optional(key) else { continue }
            guard !value.isEmpty else { throw ConfigError("\(key.path) is empty: name the data files' field") }
            names[name] = value
        }
        fields = DataFields(names)
        if !fields.renamed.isEmpty && c[Self.task] != .none {
            throw ConfigError(
                "data.\(fields.renamed.keys.sorted()[0])_key names a field of data files, and data.task "
                    + "\(c[Self.task].rawValue) generates its data: drop one")
        }
        task = c[Self.task]
        seed = UInt64(truncatingIfNeeded: c[Self.seed])
        flaw = c[Self.flaw]
        flawShare = c[Self.flawShare]
        evalSize = c[Self.evalSize]
        collapsePrompts = c.optional(Self.collapsePrompts) ?? Self.collapsePrompts.defaultValue
        if c.isSet(Self.collapsePrompts.path) && task != .collapse {
            throw ConfigError("'data.collapse_prompts' sizes data.task collapse, but data.task is '\(task.rawValue)'")
        }
        train = c.optional(Self.train)?.path ?? ""
        eval = c.optional(Self.eval)?.path ?? ""
        prefs = c.optional(Self.prefs)?.path ?? ""
        evalPrefs = c.optional(Self.evalPrefs)?.path ?? ""
        skipTooLong = c[Self.skipTooLong]
        allowReplacement = c[Self.allowReplacement]
    }

    /// The arith task these settings describe.
    public var arithTask: ArithTask { ArithTask(seed: seed, flaw: flaw, flawShare: flawShare, evalSize: evalSize) }
    /// The ifeval task these settings describe.
    public var ifevalTask: IFEvalTask { IFEvalTask(seed: seed, evalSize: evalSize) }
    public var collapseTask: CollapseTask { CollapseTask(seed: seed, prompts: collapsePrompts, evalPrompts: evalSize) }
}

/// Optimisation of the supervised stages (sft, hydra-sft, rm, dpo).
public struct OptimizerSettings: Sendable {
    static let steps = Key<Int>("train.steps", 0, "optimizer steps (0: derive from train.epochs)", .nonNegative)
    static let epochs = Key<Double>("train.epochs", 1, "passes over the data when train.steps is 0", .positive)
    static let batchSize = Key<Int>("train.batch_size", 32, "global batch: sequences per optimizer step", .positive)
    static let microBatchSize = Key<Int>(
        "train.micro_batch_size", 8, "sequences per forward/backward on one rank", .positive)
    static let maxLength = Key<Int>(
        "train.max_length", 64, "longest tokenised example kept (longer ones are an error)", .positive)
    static let lr = Key<Double>("train.lr", 1e-3, "peak learning rate", .positive)
    static let minLRRatio = Key<Double>("train.min_lr_ratio", 0.1, "cosine floor as a share of train.lr", .within(0, 1))
    static let warmupSteps = Key<Int>("train.warmup_steps", 20, "linear warm-up steps", .nonNegative)
    static let weightDecay = Key<Double>(
        "train.weight_decay", 0.01, "AdamW decoupled decay (matrices and embeddings only)", .nonNegative)
    static let beta1 = Key<Double>("train.beta1", 0.9, "AdamW β1", .from(0, below: 1))
    static let beta2 = Key<Double>("train.beta2", 0.999, "AdamW β2", .from(0, below: 1))
    static let eps = Key<Double>("train.eps", 1e-8, "AdamW ε", .positive)
    static let gradClip = Key<Double>(
        "train.grad_clip", 1.0, "clip the global gradient norm to this (0: off)", .nonNegative)
    static let checkReplicas = Key<Bool>(
        "train.check_replicas", false, "debug: compare weight checksums across ranks after every step")
    static let lossSpike = Key<Double>(
        "train.loss_spike", 10,
        "stop when a step's loss exceeds this many times both the running mean and the first step's loss (0: off)",
        .nonNegative)
    static let maxGradNormAbort = Key<Double>(
        "train.max_grad_norm_abort", 0, "stop when the gradient norm before clipping exceeds this (0: off)",
        .nonNegative)
    static let keys = [
        steps.declaration, epochs.declaration, batchSize.declaration, microBatchSize.declaration, maxLength.declaration,
        lr.declaration, minLRRatio.declaration, warmupSteps.declaration, weightDecay.declaration, beta1.declaration,
        beta2.declaration, eps.declaration, gradClip.declaration, checkReplicas.declaration, lossSpike.declaration,
        maxGradNormAbort.declaration,
    ]

    public var steps: Int, epochs: Double, batchSize: Int, microBatchSize: Int, maxLength: Int
    public var lr: Float, minLRRatio: Float, warmupSteps: Int, weightDecay: Float, beta1: Float, beta2: Float,
        eps: Float, gradClip: Float
    public var checkReplicas: Bool
    /// The divergence guard's rules (DivergenceGuard).
    public var lossSpike: Double, maxGradNormAbort: Double

    init(_ c: ResolvedConfig) {
        steps = c[Self.steps]
        epochs = c[Self.epochs]
        batchSize = c[Self.batchSize]
        microBatchSize = c[Self.microBatchSize]
        maxLength = c[Self.maxLength]
        lr = Float(c[Self.lr])
        minLRRatio = Float(c[Self.minLRRatio])
        warmupSteps = c[Self.warmupSteps]
        weightDecay = Float(c[Self.weightDecay])
        beta1 = Float(c[Self.beta1])
        beta2 = Float(c[Self.beta2])
        eps = Float(c[Self.eps])
        gradClip = Float(c[Self.gradClip])
        checkReplicas = c[Self.checkReplicas]
        lossSpike = c[Self.lossSpike]
        maxGradNormAbort = c[Self.maxGradNormAbort]
    }

    /// Micro-batches each rank runs per optimizer step: global batch = micro × accumulation × ranks.
    public func accumulationSteps(worldSize: Int, unit: String = "") throws -> Int {
        let perStep = microBatchSize * worldSize
        guard batchSize % perStep == 0 else {
            throw ConfigError(
                "'train.batch_size' (\(batchSize)\(unit)) must be a multiple of train.micro_batch_size × ranks "
                    + "(\(microBatchSize) × \(worldSize))"
            )
        }
        return batchSize / perStep
    }
}

/// When to evaluate, checkpoint and print. `eval.every` N > 0: every N steps and at the end; 0: never.
public struct CadenceSettings: Sendable {
    static let evalEvery = Key<Int>(
        "eval.every", 100, "evaluate every N optimizer steps and at the end (0: never)", .nonNegative)
    static let evalMaxExamples = Key<Int>("eval.max_examples", 200, "held-out examples per evaluation", .nonNegative)
    static let evalMaxNewTokens = Key<Int>(
        "eval.max_new_tokens", 8, "greedy decoding budget for exact match", .positive)
    static let checkpointEvery = Key<Int>(
        "checkpoint.every", 200, "save every N optimizer steps (and at the end; 0: end only)", .nonNegative)
    static let keepLast = Key<Int>("checkpoint.keep_last", 2, "checkpoints kept; older ones are deleted", .atLeast(1))
    static let logEvery = Key<Int>(
        "log.every", 10, "print a line every N steps when stdout is not a terminal", .positive)
    static let evalCommand = Key<String>(
        "eval.command", "",
        "your own evaluation of each checkpoint, run by /bin/sh beside training: {checkpoint} and {step} are "
            + "replaced (also $RLHF_CHECKPOINT, $RLHF_STEP); its last stdout line, a JSON object of numbers, goes "
            + "to metrics.jsonl and TensorBoard")
    static let evalCommandTimeout = Key<Double>(
        "eval.command_timeout", 3600, "seconds eval.command may take on one checkpoint", .positive)
    static func keys(
        evalEvery: Int = 100, maxExamples: Int = 200, checkpointEvery: Int = 200, logEvery: Int = 10,
        unit: String = "optimizer steps"
    ) -> [ConfigKey] {
        [
            Key<Int>("eval.every", evalEvery, "evaluate every N \(unit) and at the end (0: never)", .nonNegative)
                .declaration,
            evalMaxExamples.withDefault(maxExamples).declaration, evalMaxNewTokens.declaration,
            Key<Int>(
                "checkpoint.every", checkpointEvery, "save every N \(unit) (and at the end; 0: end only)", .nonNegative
            ).declaration,
            keepLast.declaration,
            Key<Int>("log.every", logEvery, "print a line every N \(unit) when stdout is not a terminal", .positive)
                .declaration,
            evalCommand.declaration, evalCommandTimeout.declaration,
        ]
    }

    public var evalEvery: Int, evalMaxExamples: Int, evalMaxNewTokens: Int, checkpointEvery: Int, keepLast: Int,
        logEvery: Int
    /// eval.command ("" for none) and its timeout.
    public var evalCommand: String, evalCommandTimeout: Double

    init(_ c: ResolvedConfig) {
        evalEvery = c[Self.evalEvery]
        evalMaxExamples = c[Self.evalMaxExamples]
        evalMaxNewTokens = c.optional(Self.evalMaxNewTokens) ?? Self.evalMaxNewTokens.defaultValue
        checkpointEvery = c[Self.checkpointEvery]
        keepLast = c[Self.keepLast]
        logEvery = c[Self.logEvery]
        evalCommand = c.optional(Self.evalCommand) ?? ""
        evalCommandTimeout = c.optional(Self.evalCommandTimeout) ?? Self.evalCommandTimeout.defaultValue
    }

    /// Evaluate after `step` of `total`?
    public func evaluates(after step: Int, of total: Int) -> Bool {
        evalEvery > 0 && (step % evalEvery == 0 || step == total)
    }
    /// Checkpoint after `step` of `total`?
    public func checkpoints(after step: Int, of total: Int) -> Bool {
        step == total || (checkpointEvery > 0 && step % checkpointEvery == 0)
    }
}

/// LoRA adapters on a frozen trunk; rank 0 means full fine-tuning where the stage allows it.
public struct LoRASettings: Sendable {
    static let rank = Key<Int>("lora.rank", 16, "LoRA rank", .nonNegative)
    static let alpha = Key<Double>("lora.alpha", 32, "LoRA α", .positive)
    static let targets = Key<String>(
        "lora.targets", "all-linear",
        "wrapped projections: all-linear (every projection of the model's family, PEFT's term) or module names "
            + "(gpt2: attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj; llama, qwen2, mistral: q_proj, k_proj, v_proj, "
            + "o_proj, gate_proj, up_proj, down_proj)"
    )
    static func keys(rank defaultRank: Int, rankHelp: String) -> [ConfigKey] {
        [
            Key<Int>("lora.rank", defaultRank, rankHelp, .nonNegative).declaration, alpha.declaration,
            targets.declaration,
        ]
    }

    public var rank: Int, alpha: Float, targets: [LoRATarget]

    init(_ c: ResolvedConfig) throws {
        rank = c[Self.rank]
        alpha = Float(c[Self.alpha])
        targets = try parseLoRATargets(c[Self.targets])
    }

    /// The adapter configuration, nil for rank 0.
    public var config: LoRAConfig? { rank > 0 ? LoRAConfig(rank: rank, alpha: alpha, targets: targets) : nil }
}

/// 'lora.targets': comma-separated projection names; which exist depends on the model's family,
/// so `makeAdapter` checks them once the model is loaded, before step 1.
func parseLoRATargets(_ list: String) throws -> [LoRATarget] {
    let names = list.split(separator: ",", omittingEmptySubsequences: false).map {
        $0.trimmingCharacters(in: .whitespaces)
    }
    guard !names.contains(where: \.isEmpty) else {
        throw ConfigError("'lora.targets': give comma-separated projection names, got '\(list)'")
    }
    // A name no family has is a typo: refuse it at load (the model's own family checks again once it is read).
    // Families sharing their names are listed together (llama, qwen2, mistral).
    var byNames: [(families: [String], names: [String])] = []
    for family in ModelFamilies.all {
        if let i = byNames.firstIndex(where: { $0.names == family.loraTargetNames }) {
            byNames[i].families.append(family.modelType)
        } else {
            byNames.append(([family.modelType], family.loraTargetNames))
        }
    }
    for name in names where name != LoRATarget.allLinear.name && !byNames.contains(where: { $0.names.contains(name) }) {
        throw ConfigError(
            "'lora.targets': '\(name)' is not a projection of any model family ("
                + byNames.map { "\($0.families.joined(separator: ", ")): \($0.names.joined(separator: ", "))" }.joined(
                    separator: "; ") + ")")
    }
    return names.map { LoRATarget($0) }
}

/// A LoRA adapter over a model of `model`'s shape; a target the family lacks is an error naming 'lora.targets'.
func makeAdapter(_ config: LoRAConfig, for model: any ModelConfiguration) throws -> LoRAAdapter {
    for target in model.resolving(config.targets) {
        do { _ = try model.loraProjection(target) } catch let ModelError.invalidConfig(message) {
            throw ConfigError("'lora.targets': \(message)")
        }
    }
    return try LoRAAdapter(config: config, modelConfig: model)
}
