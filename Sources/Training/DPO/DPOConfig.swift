import Alignment
import Config
import Foundation
import Models

/// dpo.loss: the DPO family, CPL and CPL-BC (no reference) or InSPO (conditioned on the other response).
public enum PreferenceLossName: String, ConfigChoice {
    case dpo, ipo, cdpo, robust, hinge, cpl, cplBC = "cpl_bc", inspo
}
/// IPO's margin on per-token means of the log-ratios (TRL) or on sums (OpenRLHF).
public enum IPONormalisation: String, ConfigChoice { case mean, sum }

/// Keys of the offline preference stage (`rlhf dpo`): the DPO family, CPL and InSPO
/// (docs/algorithms.md §4–§6). Defaults follow TRL where it has one; our choices are noted.
public struct PreferenceSettings: Sendable {
    static let loss = Key<PreferenceLossName>(
        "dpo.loss", .dpo,
        "dpo (sigmoid), ipo, cdpo (label smoothing), robust, hinge, cpl (no reference), cpl_bc (CPL-BC: λ = 1 "
            + "and BC on both responses), inspo (conditioned on the other response)"
    )
    static let beta = Key<Double>(
        "dpo.beta", 0.1, "β of dpo, cdpo, robust, hinge and inspo's DPO forms; IPO's τ (TRL: τ = β)", .positive)
    static let labelSmoothing = Key<Double>(
        "dpo.label_smoothing", 0.1, "ε of cdpo and robust (not read by the other losses)", .from(0, below: 0.5))
    static let ipoNormalisation = Key<IPONormalisation>(
        "dpo.ipo_normalisation", .mean, "IPO's margin on per-token means of the log-ratios (TRL) or on sums (OpenRLHF)")
    static let nllCoef = Key<Double>(
        "dpo.nll_coef", 0,
        "+ coef × NLL(y_w)/|y_w| on the chosen response (RPO's term; ours with other losses, named +nll: not CPL-BC)",
        .nonNegative)
    static let cplAlpha = Key<Double>("cpl.alpha", 0.1, "CPL α: the score of a segment is α Σ γ^t log π", .positive)
    static let cplLambda = Key<Double>(
        "cpl.lambda", 0.5,
        "CPL conservative bias λ ∈ (0, 1] on the rejected segment's score (cpl; cpl_bc has λ = 1)",
        .above(0, upTo: 1))
    static let cplGamma = Key<Double>("cpl.gamma", 1, "CPL per-token discount γ", .above(0, upTo: 1))
    static let cplBCCoef = Key<Double>(
        "cpl.bc_coef", 1, "cpl_bc's bc_coeff: + coef × mean −log π over the tokens of both responses (official: 1)",
        .nonNegative)
    static let inspoVariant = Key<InSPOVariant>("inspo.variant", .dpo23, "InSPO's loss (official code's formulas)")
    static let muDPO = Key<Double>(
        "inspo.mu_dpo", 0,
        "ours, off as in InSPO's paper and code: + μ × DPO on the unconditional π(y|x), carrying the conditional "
            + "policy's gain to inference (named +dpo)", .nonNegative)
    static let inspoTau = Key<Double>("inspo.tau", 1, "τ of inspo ipo", .positive)
    static let simpoGamma = Key<Double>("inspo.simpo_gamma", 0.1, "γ margin of inspo simpo")
    static let rdpoAlpha = Key<Double>("inspo.rdpo_alpha", 0, "α length term of inspo rdpo")
    static let klTemperature = Key<Double>(
        "eval.kl_temperature", 1, "sampling temperature of the KL-to-reference estimate on held-out prompts", .positive)
    static let keys =
        [
            loss.declaration, beta.declaration, labelSmoothing.declaration, ipoNormalisation.declaration,
            nllCoef.declaration,
            cplAlpha.declaration, cplLambda.declaration, cplGamma.declaration, cplBCCoef.declaration,
            inspoVariant.declaration,
            muDPO.declaration,
            inspoTau.declaration, simpoGamma.declaration, rdpoAlpha.declaration,
        ]
        + LoRASettings.keys(
            rank: 16,
            rankHelp:
                "LoRA rank of the policy; the reference is the same trunk with adapters off (0: full fine-tune, "
                + "frozen copy)"
        )
        + [klTemperature.declaration]

    public var objective: PreferenceObjective
    public var klTemperature: Float

    init(_ c: ResolvedConfig) {
        let loss = c[Self.loss], variant = c[Self.inspoVariant]
        let kind: PreferenceLossKind
        switch loss {
        case .cpl: kind = .cpl
        case .cplBC: kind = .cplBC
        case .inspo: kind = .inspo(variant)
        case .dpo: kind = .family(.dpo)
        case .ipo: kind = .family(.ipo)
        case .cdpo: kind = .family(.cdpo)
        case .robust: kind = .family(.robust)
        case .hinge: kind = .family(.hinge)
        }
        var o = PreferenceObjective(kind: kind)
        o.beta = c[Self.beta]
        o.labelSmoothing = c[Self.labelSmoothing]
        o.ipoLengthNormalised = c[Self.ipoNormalisation] == .mean
        o.nllCoefficient = c[Self.nllCoef]
        o.cplAlpha = c[Self.cplAlpha]
        o.cplLambda = c[Self.cplLambda]
        o.cplGamma = c[Self.cplGamma]
        o.cplBCCoefficient = c[Self.cplBCCoef]
        o.muDPO = c[Self.muDPO]
        o.inspoTau = c[Self.inspoTau]
        o.simpoGamma = c[Self.simpoGamma]
        o.rdpoAlpha = c[Self.rdpoAlpha]
        objective = o
        klTemperature = Float(c[Self.klTemperature])
    }
}

/// `rlhf dpo`. train.batch_size and train.micro_batch_size count preference pairs.
public let dpoSchema = ConfigSchema(
    CommonKeys.run + DataSettings.keys.without(["data.train"]) + CommonKeys.training + CommonKeys.evaluation
        + PreferenceSettings.keys)

public struct DPOConfig: Sendable {
    public let resolved: ResolvedConfig
    public var run: RunSettings
    public var data: DataSettings
    public var train: OptimizerSettings
    public var cadence: CadenceSettings
    public var lora: LoRASettings
    public var preference: PreferenceSettings

    public init(_ c: ResolvedConfig) throws {
        resolved = c
        run = try RunSettings(c)
        data = try DataSettings(c)
        train = OptimizerSettings(c)
        cadence = CadenceSettings(c)
        lora = try LoRASettings(c)
        preference = PreferenceSettings(c)
        if c[PreferenceSettings.loss] == .cplBC && c.isSet(PreferenceSettings.cplLambda.path) {
            throw ConfigError("'cpl.lambda' is CPL's conservative bias; dpo.loss cpl_bc has none (λ = 1): drop one")
        }
        guard data.task != .ifeval else {
            throw ConfigError("data.task ifeval has prompts only (no preference pairs): it is for rlhf ppo")
        }
        guard data.task != .collapse else {
            throw ConfigError("data.task collapse holds rankings for reward models: it is for rlhf rm")
        }
        guard data.task == .arith || !data.prefs.isEmpty else {
            throw ConfigError("set 'data.task' or 'data.prefs' (preference pairs JSONL)")
        }
    }

    public var objective: PreferenceObjective { preference.objective }

    /// Micro-batches of pairs each rank runs per optimizer step.
    public func accumulationSteps(worldSize: Int) throws -> Int {
        try train.accumulationSteps(worldSize: worldSize, unit: " pairs")
    }
}
