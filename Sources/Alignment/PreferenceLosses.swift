import Foundation

/// Offline preference losses (docs/algorithms.md §3–§6). Inputs are sequence log-probs (sums over
/// response tokens); each loss returns its value and its derivatives, so a stage can backpropagate
/// through the token log-probs. softplus(z) = log(1 + e^z) = −log σ(−z).
@inline(__always) func softplus(_ z: Double) -> Double { z > 0 ? z + log1p(exp(-z)) : log1p(exp(z)) }
@inline(__always) func sigmoid(_ z: Double) -> Double { 1 / (1 + exp(-z)) }

public enum DPOVariant: String, Sendable, CaseIterable, Codable {
    /// −log σ(βh) (Rafailov et al. 2023).
    case dpo
    /// (h − 1/(2τ))², τ = β (Azar et al. 2023), h on sums (OpenRLHF) unless length-normalised.
    case ipo
    /// (1 − ε)·softplus(−βh) + ε·softplus(βh): label smoothing (conservative DPO).
    case cdpo
    /// [(1 − ε)·softplus(−βh) − ε·softplus(βh)] / (1 − 2ε) (Chowdhury et al. 2024).
    case robust
    /// max(0, 1 − βh) (SLiC-HF).
    case hinge
}

public enum PreferenceLosses {
    /// h = [log π(y_w) − log π_ref(y_w)] − [log π(y_l) − log π_ref(y_l)].
    public static func margin(chosen: Double, rejected: Double, refChosen: Double, refRejected: Double) -> Double {
        (chosen - refChosen) - (rejected - refRejected)
    }

    /// A DPO-family loss of the margin h and dL/dh. For IPO with `lengths` (|y_w|, |y_l|), the
    /// caller passes the length-normalised margin (TRL's choice) — see `ipoLengthNormalisedMargin`.
    public static func dpoFamily(_ variant: DPOVariant, h: Double, beta: Double, epsilon: Double = 0) -> (
        loss: Double, dh: Double
    ) {
        switch variant {
        case .dpo:
            return (softplus(-beta * h), -beta * sigmoid(-beta * h))
        case .ipo:
            let d = h - 1 / (2 * beta)
            return (d * d, 2 * d)
        case .cdpo:
            return (
                (1 - epsilon) * softplus(-beta * h) + epsilon * softplus(beta * h),
                -(1 - epsilon) * beta * sigmoid(-beta * h) + epsilon * beta * sigmoid(beta * h)
            )
        case .robust:
            let scale = 1 / (1 - 2 * epsilon)
            return (
                ((1 - epsilon) * softplus(-beta * h) - epsilon * softplus(beta * h)) * scale,
                (-(1 - epsilon) * beta * sigmoid(-beta * h) - epsilon * beta * sigmoid(beta * h)) * scale
            )
        case .hinge:
            let m = 1 - beta * h
            return (max(0, m), m > 0 ? -beta : 0)
        }
    }

    /// TRL's IPO margin: per-token means of the log-ratios, (Δ_w)/|y_w| − (Δ_l)/|y_l|.
    public static func ipoLengthNormalisedMargin(
        chosen: Double, rejected: Double, refChosen: Double, refRejected: Double,
        chosenLength: Int, rejectedLength: Int
    ) -> Double {
        (chosen - refChosen) / Double(chosenLength) - (rejected - refRejected) / Double(rejectedLength)
    }

    /// CPL (Hejna et al. 2024): S± = α Σ_t γ^t log π(a_t±|s_t±); L = softplus(−(S+ − λ·S−)).
    /// Returns the loss and dL/dlog π per token of each segment.
    public static func cpl(positive: [Double], negative: [Double], alpha: Double, lambda: Double, gamma: Double = 1)
        -> (loss: Double, dPositive: [Double], dNegative: [Double])
    {
        func discounted(_ x: [Double]) -> (Double, [Double]) {
            var s = 0.0, w = 1.0
            var weights: [Double] = []
            for v in x {
                s += w * v
                weights.append(w)
                w *= gamma
            }
            return (alpha * s, weights.map { alpha * $0 })
        }
        let (sp, wp) = discounted(positive), (sn, wn) = discounted(negative)
        let z = sp - lambda * sn
        let dz = -sigmoid(-z)  // d softplus(−z) / dz
        return (softplus(-z), wp.map { dz * $0 }, wn.map { -lambda * dz * $0 })
    }

    /// K-wise ranking (InstructGPT): mean over the C(K, 2) ordered pairs of −log σ(r_i − r_j), scores
    /// listed best first. Returns the loss and dL/dr.
    public static func kwise(_ scores: [Double]) -> (loss: Double, dScores: [Double]) {
        var loss = 0.0
        var grad = [Double](repeating: 0, count: scores.count)
        var pairs = 0.0
        for i in scores.indices {
            for j in scores.indices where j > i {
                let d = scores[i] - scores[j]
                loss += softplus(-d)
                grad[i] -= sigmoid(-d)
                grad[j] += sigmoid(-d)
                pairs += 1
            }
        }
        return pairs > 0 ? (loss / pairs, grad.map { $0 / pairs }) : (0, grad)
    }
}

/// Utilities of the reward-collapse paper (Song et al. 2023, official RankLoss, ε = 0.1) on
/// d = σ(r_pos) − σ(r_neg); the loss is −U(d). `adaptive` picks x for closed prompts and −1/x for
/// open-ended ones.
public enum RankUtility: String, Sendable, CaseIterable, Codable {
    case x, log, xInverse = "x_inv", logsigmoid
    static let eps = 0.1

    /// Loss −U(d) and its derivative with respect to d.
    public func loss(_ d: Double) -> (loss: Double, dd: Double) {
        switch self {
        case .x: return (-d, -1)
        case .log:
            return d > 0
                ? (-(Foundation.log(d + Self.eps) - Foundation.log(Self.eps)), -1 / (d + Self.eps)) : (-10 * d, -10)
        case .xInverse:
            return d > 0
                ? (1 / (d + Self.eps) - 1 / Self.eps, -1 / ((d + Self.eps) * (d + Self.eps))) : (-100 * d, -100)
        case .logsigmoid: return (softplus(-4 * d), -4 * sigmoid(-4 * d))
        }
    }

    /// The loss of one pair from the reward logits, with derivatives for both.
    public func pairLoss(positive: Double, negative: Double) -> (loss: Double, dPositive: Double, dNegative: Double) {
        let sp = sigmoid(positive), sn = sigmoid(negative)
        let (l, dd) = loss(sp - sn)
        return (l, dd * sp * (1 - sp), -dd * sn * (1 - sn))
    }
}

/// InSPO (Li, Lan, Qi 2025; official code's formulas, docs/algorithms.md §6.3) with unconditional
/// reference log-probs: the policy terms are conditioned on the other response.
public enum InSPO {
    /// DPO-23: −log σ(β[(log π(y_w|x,y_l) − ref_w) − (log π(y_l|x,y_w) − ref_l)]); (loss, dW, dL).
    public static func dpo23(
        conditionalChosen w: Double, conditionalRejected l: Double, refChosen: Double, refRejected: Double, beta: Double
    )
        -> (loss: Double, dChosen: Double, dRejected: Double)
    {
        let (loss, dh) = PreferenceLosses.dpoFamily(.dpo, h: (w - refChosen) - (l - refRejected), beta: beta)
        return (loss, dh, -dh)
    }
    /// DPO-22 (one-sided): −log σ(−β(log π(y_l|x,y_w) − ref_l)); (loss, dRejected).
    public static func dpo22(conditionalRejected l: Double, refRejected: Double, beta: Double) -> (
        loss: Double, dRejected: Double
    ) {
        let z = -beta * (l - refRejected)
        return (softplus(-z), beta * sigmoid(-z))
    }
    /// IPO-25: (h − 1/(2τ))², h the conditional margin; (loss, dW, dL).
    public static func ipo25(
        conditionalChosen w: Double, conditionalRejected l: Double, refChosen: Double, refRejected: Double, tau: Double
    )
        -> (loss: Double, dChosen: Double, dRejected: Double)
    {
        let d = (w - refChosen) - (l - refRejected) - 1 / (2 * tau)
        return (d * d, 2 * d, -2 * d)
    }
    /// SimPO-24: −log σ(β/|y_w|·log π(y_w|x,y_l) − β/|y_l|·log π(y_l|x,y_w) − γ); no reference.
    public static func simpo(
        conditionalChosen w: Double, conditionalRejected l: Double, chosenLength: Int, rejectedLength: Int,
        beta: Double, gamma: Double
    ) -> (loss: Double, dChosen: Double, dRejected: Double) {
        let z = beta / Double(chosenLength) * w - beta / Double(rejectedLength) * l - gamma
        let dz = -sigmoid(-z)
        return (softplus(-z), dz * beta / Double(chosenLength), -dz * beta / Double(rejectedLength))
    }
    /// R-DPO-26: DPO-23 with α(|y_l| − |y_w|) added inside the sigmoid.
    public static func rdpo(
        conditionalChosen w: Double, conditionalRejected l: Double, refChosen: Double, refRejected: Double,
        chosenLength: Int, rejectedLength: Int, beta: Double, alpha: Double
    ) -> (loss: Double, dChosen: Double, dRejected: Double) {
        let z = beta * ((w - refChosen) - (l - refRejected)) + alpha * Double(rejectedLength - chosenLength)
        let dz = -sigmoid(-z)
        return (softplus(-z), dz * beta, -dz * beta)
    }
}
