import Alignment
import Foundation
import Models

/// Keys of the offline preference stage (`rlhf dpo`): the DPO family, CPL and InSPO
/// (algorithms.md §4–§6). Defaults follow TRL where it has one; our choices are noted.
let preferenceKeys: [ConfigKey] = [
    ConfigKey("dpo.loss", .choice(["dpo", "ipo", "cdpo", "robust", "hinge", "cpl", "inspo"]), .string("dpo"),
              "dpo (sigmoid), ipo, cdpo (label smoothing), robust, hinge, cpl (no reference), inspo (conditioned on the other response)"),
    ConfigKey("dpo.beta", .float, .float(0.1), "β of dpo, cdpo, robust, hinge and inspo's DPO forms; IPO's τ (TRL: τ = β)"),
    ConfigKey("dpo.label_smoothing", .float, .float(0.1), "ε of cdpo and robust (ignored by the other losses)"),
    ConfigKey("dpo.ipo_normalisation", .choice(["mean", "sum"]), .string("mean"),
              "IPO's margin on per-token means of the log-ratios (TRL) or on sums (OpenRLHF)"),
    ConfigKey("dpo.nll_coef", .float, .float(0), "+ coef × NLL(y_w)/|y_w| on the chosen response (RPO; CPL-BC's bc_coeff)"),
    ConfigKey("cpl.alpha", .float, .float(0.1), "CPL α: the score of a segment is α Σ γ^t log π"),
    ConfigKey("cpl.lambda", .float, .float(0.5), "CPL conservative bias λ ∈ (0, 1] on the rejected segment's score"),
    ConfigKey("cpl.gamma", .float, .float(1), "CPL per-token discount γ"),
    ConfigKey("inspo.variant", .choice(InSPOVariant.allCases.map(\.rawValue)), .string("dpo23"), "InSPO's loss (official code's formulas)"),
    ConfigKey("inspo.mu_dpo", .float, .float(1), "weight of the unconditional DPO term (carries the conditional policy's gain to inference)"),
    ConfigKey("inspo.tau", .float, .float(1), "τ of inspo ipo"),
    ConfigKey("inspo.simpo_gamma", .float, .float(0.1), "γ margin of inspo simpo"),
    ConfigKey("inspo.rdpo_alpha", .float, .float(0), "α length term of inspo rdpo"),
    ConfigKey("lora.rank", .int, .int(16), "LoRA rank of the policy; the reference is the same trunk with adapters off (0: full fine-tune, frozen copy)"),
    ConfigKey("lora.alpha", .float, .float(32), "LoRA α"),
    ConfigKey("lora.targets", .string, .string("attn.c_attn,attn.c_proj,mlp.c_fc,mlp.c_proj"), "wrapped projections"),
    ConfigKey("eval.kl_temperature", .float, .float(1), "sampling temperature of the KL-to-reference estimate on held-out prompts"),
]

/// `rlhf dpo`. train.batch_size and train.micro_batch_size count preference pairs.
public let dpoSchema = ConfigSchema(CommonKeys.run + CommonKeys.data + CommonKeys.training + CommonKeys.evaluation + preferenceKeys)

public struct DPOConfig: Sendable {
    public let resolved: ResolvedConfig
    var c: ResolvedConfig { resolved }

    public init(_ resolved: ResolvedConfig) throws {
        self.resolved = resolved
        func check(_ ok: Bool, _ message: String) throws { if !ok { throw ConfigError(message) } }
        try check(!name.isEmpty && !name.contains("/"), "'name' must be a non-empty name without '/'")
        try check(task == "arith" || !c.string("data.prefs").isEmpty, "set 'data.task' or 'data.prefs' (preference pairs JSONL)")
        try check(batchSize > 0 && microBatchSize > 0, "'train.batch_size' and 'train.micro_batch_size' must be positive")
        try check(c.double("dpo.beta") > 0, "'dpo.beta' must be > 0")
        let eps = c.double("dpo.label_smoothing")
        try check(eps >= 0 && eps < 0.5, "'dpo.label_smoothing' must be in [0, 0.5)")
        try check(c.double("cpl.lambda") > 0 && c.double("cpl.lambda") <= 1, "'cpl.lambda' must be in (0, 1]")
        try check(c.double("cpl.gamma") > 0 && c.double("cpl.gamma") <= 1, "'cpl.gamma' must be in (0, 1]")
        try check(c.double("inspo.tau") > 0, "'inspo.tau' must be > 0")
        try check(c.int("lora.rank") >= 0, "'lora.rank' must be ≥ 0")
        try check(c.int("checkpoint.keep_last") >= 1, "'checkpoint.keep_last' must be at least 1")
        try check(["auto", "never"].contains(resume) || FileManager.default.fileExists(atPath: resume),
                  "'resume' must be auto, never or an existing checkpoint folder; '\(resume)' does not exist")
        _ = try loraTargets()
    }

    public var name: String { c.string("name") }
    public var out: String { c.string("out") }
    public var seed: UInt64 { UInt64(truncatingIfNeeded: c.int("seed")) }
    public var resume: String { c.string("resume") }
    public var task: String { c.string("data.task") }
    public var initFrom: String { c.string("model.init_from") }
    public var batchSize: Int { c.int("train.batch_size") }
    public var microBatchSize: Int { c.int("train.micro_batch_size") }
    public var loraRank: Int { c.int("lora.rank") }

    public var arithTask: ArithTask {
        ArithTask(c)
    }

    public var objective: PreferenceObjective {
        var o = PreferenceObjective(kind: PreferenceLossKind(loss: c.string("dpo.loss"), inspoVariant: InSPOVariant(rawValue: c.string("inspo.variant"))!)!)
        o.beta = c.double("dpo.beta"); o.labelSmoothing = c.double("dpo.label_smoothing")
        o.ipoLengthNormalised = c.string("dpo.ipo_normalisation") == "mean"; o.nllCoefficient = c.double("dpo.nll_coef")
        o.cplAlpha = c.double("cpl.alpha"); o.cplLambda = c.double("cpl.lambda"); o.cplGamma = c.double("cpl.gamma")
        o.muDPO = c.double("inspo.mu_dpo"); o.inspoTau = c.double("inspo.tau")
        o.simpoGamma = c.double("inspo.simpo_gamma"); o.rdpoAlpha = c.double("inspo.rdpo_alpha")
        return o
    }

    public func loraTargets() throws -> [LoRATarget] { try parseLoRATargets(c.string("lora.targets")) }

    /// Micro-batches of pairs each rank runs per optimizer step.
    public func accumulationSteps(worldSize: Int) throws -> Int {
        let perStep = microBatchSize * worldSize
        guard batchSize % perStep == 0 else {
            throw ConfigError("'train.batch_size' (\(batchSize) pairs) must be a multiple of train.micro_batch_size × ranks (\(microBatchSize) × \(worldSize))")
        }
        return batchSize / perStep
    }
}
