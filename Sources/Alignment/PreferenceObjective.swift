import Foundation

/// InSPO variants of the official code (docs/algorithms.md §6.3).
public enum InSPOVariant: String, Sendable, CaseIterable, Codable {
    case dpo23, dpo22, ipo, simpo, rdpo
}

/// Which offline preference loss a `dpo` stage optimises.
public enum PreferenceLossKind: Sendable, Equatable {
    /// DPO, IPO, cDPO, robust DPO, hinge (§4.2).
    case family(DPOVariant)
    /// Contrastive Preference Learning (§5): no reference.
    case cpl
    /// CPL-BC (§5.2): CPL with λ = 1 plus a behaviour-cloning term on both responses (no reference).
    case cplBC
    /// InSPO (§6): the policy conditioned on the other response, unconditional reference.
    case inspo(InSPOVariant)

    public init?(loss: String, inspoVariant: InSPOVariant = .dpo23) {
        if loss == "cpl" {
            self = .cpl
        } else if loss == "cpl_bc" {
            self = .cplBC
        } else if loss == "inspo" {
            self = .inspo(inspoVariant)
        } else if let v = DPOVariant(rawValue: loss) {
            self = .family(v)
        } else {
            return nil
        }
    }
    public var name: String {
        switch self {
        case .family(let v): return v.rawValue
        case .cpl: return "cpl"
        case .cplBC: return "cpl_bc"
        case .inspo(let v): return "inspo-\(v.rawValue)"
        }
    }
}

/// One pair's loss from its token log-probs, with dL/d log p for every response token of every
/// sequence the loss reads. Sequences: y_w and y_l after x (unconditional), and for InSPO y_w
/// after [x; y_l] and y_l after [x; y_w] (conditional). Reference log-probs are sums over the
/// unconditional responses (π_ref(y|x)), as the InSPO docstring and its IPO variant use.
public struct PreferenceObjective: Sendable, Equatable {
    public var kind: PreferenceLossKind
    /// β of the DPO family and of InSPO's DPO forms; IPO's τ (TRL uses τ = β).
    public var beta = 0.1
    /// ε of cdpo and robust.
    public var labelSmoothing = 0.0
    /// IPO on per-token means of the log-ratios (TRL, confirmed with the IPO authors) rather
    /// than on sums (OpenRLHF).
    public var ipoLengthNormalised = true
    /// + coefficient × NLL(y_w)/|y_w| on the unconditional chosen response: RPO's term (Pang et al.
    /// 2024) with the DPO family, ours with every other loss. It is not CPL-BC's BC term, which
    /// covers both responses (`cplBCCoefficient`); `name` shows it as "+nll".
    public var nllCoefficient = 0.0
    /// CPL's α, conservative bias λ (`cpl` only: CPL-BC has λ = 1) and per-token discount γ.
    public var cplAlpha = 0.1, cplLambda = 0.5, cplGamma = 1.0
    /// CPL-BC's bc_coeff: 1.0 in the official state-based cpl_bc configurations, 1.5 in the image ones.
    public var cplBCCoefficient = 1.0
    /// InSPO: IPO-25's τ, SimPO's γ, R-DPO's α.
    public var inspoTau = 1.0, simpoGamma = 0.1, rdpoAlpha = 0.0
    /// Ours, off by default: neither InSPO's paper nor its code has an unconditional term. When
    /// set, + μ_dpo × DPO on the unconditional π_θ(y|x) (same β and reference) carries what the
    /// conditional policy learns to the policy used at inference (§6.4); `name` shows it as "+dpo".
    public var muDPO = 0.0

    public init(kind: PreferenceLossKind) { self.kind = kind }

    /// The loss's name with every term added to the named paper's loss: "+dpo" for InSPO's
    /// unconditional DPO term, "+nll" for the NLL on the chosen response. "cpl+nll" is neither CPL
    /// nor CPL-BC (whose BC term covers both responses and which drops the conservative bias).
    public var name: String {
        var name = kind.name
        if case .inspo = kind, muDPO != 0 { name += "+dpo" }
        if nllCoefficient != 0 { name += "+nll" }
        return name
    }

    public var needsConditional: Bool {
        if case .inspo = kind { return true }
        return false
    }
    public var needsUnconditional: Bool {
        if case .inspo = kind { return muDPO != 0 || nllCoefficient != 0 }
        return true
    }

    public struct PairLogProbs: Sendable {
        public var chosen: [Double], rejected: [Double]
        public var conditionalChosen: [Double], conditionalRejected: [Double]
        public var refChosen: Double, refRejected: Double
        public init(
            chosen: [Double], rejected: [Double], conditionalChosen: [Double] = [], conditionalRejected: [Double] = [],
            refChosen: Double, refRejected: Double
        ) {
            self.chosen = chosen
            self.rejected = rejected
            self.conditionalChosen = conditionalChosen
            self.conditionalRejected = conditionalRejected
            self.refChosen = refChosen
            self.refRejected = refRejected
        }
    }

    public struct PairGradient: Sendable {
        public var loss: Double
        public var chosen: [Double], rejected: [Double], conditionalChosen: [Double], conditionalRejected: [Double]
    }

    /// InSPO's loss on the conditioned sequences and its derivatives with respect to their sums
    /// (the official code's variants).
    func inspoLoss(_ variant: InSPOVariant, _ p: PairLogProbs) -> (loss: Double, dChosen: Double, dRejected: Double) {
        let cw = p.conditionalChosen.reduce(0, +), cl = p.conditionalRejected.reduce(0, +)
        let (ncw, ncl) = (p.conditionalChosen.count, p.conditionalRejected.count)
        switch variant {
        case .dpo23:
            return InSPO.dpo23(
                conditionalChosen: cw, conditionalRejected: cl, refChosen: p.refChosen, refRejected: p.refRejected,
                beta: beta)
        case .dpo22:
            let (l, dl) = InSPO.dpo22(conditionalRejected: cl, refRejected: p.refRejected, beta: beta)
            return (l, 0, dl)
        case .ipo:
            return InSPO.ipo25(
                conditionalChosen: cw, conditionalRejected: cl, refChosen: p.refChosen, refRejected: p.refRejected,
                tau: inspoTau)
        case .simpo:
            return InSPO.simpo(
                conditionalChosen: cw, conditionalRejected: cl, chosenLength: ncw, rejectedLength: ncl, beta: beta,
                gamma: simpoGamma)
        case .rdpo:
            return InSPO.rdpo(
                conditionalChosen: cw, conditionalRejected: cl, refChosen: p.refChosen, refRejected: p.refRejected,
                chosenLength: ncw, rejectedLength: ncl, beta: beta, alpha: rdpoAlpha)
        }
    }

    public func evaluate(_ p: PairLogProbs) -> PairGradient {
        let nw = p.chosen.count, nl = p.rejected.count
        var g = PairGradient(
            loss: 0, chosen: .init(repeating: 0, count: nw), rejected: .init(repeating: 0, count: nl),
            conditionalChosen: .init(repeating: 0, count: p.conditionalChosen.count),
            conditionalRejected: .init(repeating: 0, count: p.conditionalRejected.count))
        func add(_ a: inout [Double], _ d: Double) { for i in a.indices { a[i] += d } }
        let sw = p.chosen.reduce(0, +), sl = p.rejected.reduce(0, +)
        switch kind {
        case .family(let variant):
            if variant == .ipo && ipoLengthNormalised {
                let h = PreferenceLosses.ipoLengthNormalisedMargin(
                    chosen: sw, rejected: sl, refChosen: p.refChosen, refRejected: p.refRejected,
                    chosenLength: nw, rejectedLength: nl)
                let (l, dh) = PreferenceLosses.dpoFamily(.ipo, h: h, beta: beta)
                g.loss = l
                add(&g.chosen, dh / Double(nw))
                add(&g.rejected, -dh / Double(nl))
            } else {
                let h = PreferenceLosses.margin(
                    chosen: sw, rejected: sl, refChosen: p.refChosen, refRejected: p.refRejected)
                let (l, dh) = PreferenceLosses.dpoFamily(variant, h: h, beta: beta, epsilon: labelSmoothing)
                g.loss = l
                add(&g.chosen, dh)
                add(&g.rejected, -dh)
            }
        case .cpl:
            let (l, dw, dl) = PreferenceLosses.cpl(
                positive: p.chosen, negative: p.rejected, alpha: cplAlpha, lambda: cplLambda, gamma: cplGamma)
            g.loss = l
            g.chosen = dw
            g.rejected = dl
        case .cplBC:
            let r = PreferenceLosses.cplBC(
                positive: p.chosen, negative: p.rejected, alpha: cplAlpha, gamma: cplGamma,
                bcCoefficient: cplBCCoefficient)
            (g.loss, g.chosen, g.rejected) = (r.loss, r.dPositive, r.dNegative)
        case .inspo(let variant):
            let (l, dw, dl) = inspoLoss(variant, p)
            g.loss = l
            add(&g.conditionalChosen, dw)
            add(&g.conditionalRejected, dl)
            if muDPO != 0 {
                let h = PreferenceLosses.margin(
                    chosen: sw, rejected: sl, refChosen: p.refChosen, refRejected: p.refRejected)
                let (u, dh) = PreferenceLosses.dpoFamily(.dpo, h: h, beta: beta)
                g.loss += muDPO * u
                add(&g.chosen, muDPO * dh)
                add(&g.rejected, -muDPO * dh)
            }
        }
        if nllCoefficient != 0 && nw > 0 {
            g.loss += nllCoefficient * -sw / Double(nw)
            add(&g.chosen, -nllCoefficient / Double(nw))
        }
        return g
    }
}

extension PreferenceLosses {
    /// CPL-BC as the official code runs it (Hejna et al. 2024, jhejna/cpl: research/algs/cpl.py with
    /// configs/*/cpl_bc.yaml, docs/algorithms.md §5.2): CPL without the conservative bias
    /// (contrastive_bias λ = 1) plus bc_coeff × the mean −log π over every token of both segments
    /// (bc_data: all), L = softplus(−(S⁺ − S⁻))
    ///                    + c_bc · (−Σ log π(a⁺) − Σ log π(a⁻)) / (|σ⁺| + |σ⁻|),
    /// S± = α Σ_t γ^t log π(a±_t|s±_t). The official segments all have one length, so its batch mean
    /// is this per-pair mean averaged over pairs. Returns the loss and dL/dlog π per token.
    public static func cplBC(
        positive: [Double], negative: [Double], alpha: Double, gamma: Double = 1, bcCoefficient: Double
    ) -> (loss: Double, dPositive: [Double], dNegative: [Double]) {
        let (l, dp, dn) = cpl(positive: positive, negative: negative, alpha: alpha, lambda: 1, gamma: gamma)
        let tokens = positive.count + negative.count
        guard tokens > 0 else { return (l, dp, dn) }
        let bc = -(positive.reduce(0, +) + negative.reduce(0, +)) / Double(tokens)
        let d = -bcCoefficient / Double(tokens)
        return (l + bcCoefficient * bc, dp.map { $0 + d }, dn.map { $0 + d })
    }
}
