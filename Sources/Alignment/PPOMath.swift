import Foundation

/// The per-token mathematics of PPO for RLHF (docs/algorithms.md §2), free of models and MPI.
/// Arrays are one sequence's response tokens unless a function says otherwise; Double throughout.

/// KL estimators of Schulman ("Approximating KL divergence", 2020) with logr = log π_ref − log π_old.
public enum KLEstimator: String, Sendable, CaseIterable, Codable {
    case k1, k2, k3
    public func value(logpOld: Double, logpRef: Double) -> Double {
        let logr = logpRef - logpOld
        switch self {
        case .k1: return -logr
        case .k2: return 0.5 * logr * logr
        case .k3: return exp(logr) - 1 - logr
        }
    }
}

public enum PPOMath {
    public static func kl(_ logpOld: [Double], _ logpRef: [Double], estimator: KLEstimator) -> [Double] {
        zip(logpOld, logpRef).map { estimator.value(logpOld: $0, logpRef: $1) }
    }

    /// r_t = −β·KL_t, plus the sequence score (clipped to ±clip) on the last token (TRL, OpenRLHF).
    public static func shapedRewards(kl: [Double], beta: Double, score: Double, clip: Double = .infinity) -> [Double] {
        var r = kl.map { -beta * $0 }
        if !r.isEmpty { r[r.count - 1] += min(max(score, -clip), clip) }
        return r
    }

    /// GAE (Schulman et al. 2016) with V_{T+1} = 0: δ_t = r_t + γV_{t+1} − V_t, A_t = δ_t + γλA_{t+1};
    /// returns G_t = A_t + V_t are the critic's targets.
    public static func gae(rewards: [Double], values: [Double], gamma: Double, lambda: Double) -> (
        advantages: [Double], returns: [Double]
    ) {
        precondition(rewards.count == values.count, "gae: rewards and values differ in length")
        var advantages = [Double](repeating: 0, count: rewards.count)
        var next = 0.0, nextValue = 0.0
        for t in stride(from: rewards.count - 1, through: 0, by: -1) {
            let delta = rewards[t] + gamma * nextValue - values[t]
            next = delta + gamma * lambda * next
            advantages[t] = next
            nextValue = values[t]
        }
        return (advantages, zip(advantages, values).map(+))
    }

    /// Discounted returns G_t = Σ_{s≥t} γ^{s−t} r_s (REINFORCE).
    public static func returns(rewards: [Double], gamma: Double) -> [Double] {
        var out = [Double](repeating: 0, count: rewards.count)
        var running = 0.0
        for t in stride(from: rewards.count - 1, through: 0, by: -1) {
            running = rewards[t] + gamma * running
            out[t] = running
        }
        return out
    }

    /// Count, Σx and Σx² over every value of every sequence: what whitening needs, and what adds
    /// across ranks (a distributed batch sums its ranks' moments, then whitens with the total).
    public struct Moments: Sendable, Equatable {
        public var count: Double, sum: Double, squares: Double
        public init(_ rows: [[Double]]) {
            let all = rows.flatMap { $0 }
            count = Double(all.count)
            sum = all.reduce(0, +)
            squares = all.map { $0 * $0 }.reduce(0, +)
        }
        /// Calls `visit` on the count, Σx and Σx² in that order (what a sum over ranks adds).
        public mutating func visitSums(_ visit: (inout Double) -> Void) {
            visit(&count)
            visit(&sum)
            visit(&squares)
        }
    }

    /// (x − mean) / √(var + 1e-8) over every value of every sequence; `unbiased` uses n − 1 (TRL),
    /// otherwise n (OpenRLHF). `moments` are the whole batch's (every rank's) when distributed.
    public static func whiten(_ rows: [[Double]], moments m: Moments, unbiased: Bool) -> [[Double]] {
        guard m.count > 1 else { return rows }
        let mean = m.sum / m.count
        let variance = max(m.squares - m.count * mean * mean, 0) / (unbiased ? m.count - 1 : m.count)
        let scale = 1 / (variance + 1e-8).squareRoot()
        return rows.map { $0.map { ($0 - mean) * scale } }
    }

    public static func whiten(_ rows: [[Double]], unbiased: Bool) -> [[Double]] {
        whiten(rows, moments: Moments(rows), unbiased: unbiased)
    }

    /// Clipped surrogate, token-level mean: L = mean_t max(−A·ρ, −A·clip(ρ, 1−ε_low, 1+ε_high)),
    /// ρ = exp(logp − logp_old). With `dualClip` c > 1 (Ye et al. 2020, OpenRLHF), tokens with A < 0
    /// use −max(min(ρA, clip(ρ)A), cA). Returns the loss, ∂L/∂logp per token and the clip fraction.
    /// `divisors` (one per token; nil: every token's is `normalizer`) divide each token's term
    /// instead: the loss aggregation of `LossAggregation`, each token's term over its divisor.
    public static func policyLoss(
        logp: [Double], logpOld: [Double], advantages: [Double],
        clipLow: Double, clipHigh: Double, dualClip: Double? = nil, normalizer: Int = 0, divisors: [Double]? = nil
    ) -> (loss: Double, dLogp: [Double], clipFraction: Double) {
        // The token mean's count: these tokens', or the whole minibatch's when ranks or micro-batches
        // share one step (each part then adds its tokens' terms over the same count).
        let n = Double(max(normalizer > 0 ? normalizer : logp.count, 1))
        var loss = 0.0, clipped = 0
        var grad = [Double](repeating: 0, count: logp.count)
        for t in logp.indices {
            let ratio = exp(logp[t] - logpOld[t])
            let term = clippedTerm(ratio: ratio, advantage: advantages[t], clipLow, clipHigh, dualClip)
            if term.clipped { clipped += 1 }
            let d = divisors?[t] ?? n
            loss += divisors == nil ? term.loss : term.loss / d
            grad[t] = term.dRatio * ratio / d  // ∂ρ/∂logp = ρ
        }
        return (divisors == nil ? loss / n : loss, grad, Double(clipped) / Double(max(logp.count, 1)))
    }

    /// One token's clipped surrogate max(−A·ρ, −A·clip(ρ, 1−ε_low, 1+ε_high)) (with the dual clip
    /// for A < 0), its derivative in ρ, and whether the clip moved ρ.
    static func clippedTerm(
        ratio: Double, advantage a: Double, _ clipLow: Double, _ clipHigh: Double, _ dualClip: Double?
    )
        -> (loss: Double, dRatio: Double, clipped: Bool)
    {
        let bounded = min(max(ratio, 1 - clipLow), 1 + clipHigh)
        let unclippedLoss = -a * ratio, clippedLoss = -a * bounded
        var loss = unclippedLoss, dRatio = -a
        if unclippedLoss < clippedLoss { (loss, dRatio) = (clippedLoss, 0) }
        if let c = dualClip, a < 0, loss > -c * a { (loss, dRatio) = (-c * a, 0) }
        return (loss, dRatio, bounded != ratio)
    }

    /// GSPO (Zheng et al. 2025, arXiv 2507.18071; TRL importance_sampling_level="sequence"): one
    /// ratio per sequence, s = exp(mean_t (log π − log π_old)) over its `tokens`, in every token's
    /// clipped term max(−A_t·s, −A_t·clip(s, 1−ε_low, 1+ε_high)), each term over its `divisors`
    /// entry; ∂s/∂log π_t = s / n. Returns the loss, ∂L/∂log π per token and the share of clipped
    /// tokens.
    public static func sequencePolicyLoss(
        logp: [Double], logpOld: [Double], advantages: [Double], sequences: [Range<Int>], divisors: [Double],
        clipLow: Double, clipHigh: Double, dualClip: Double? = nil
    ) -> (loss: Double, dLogp: [Double], clipFraction: Double) {
        var loss = 0.0, clipped = 0
        var grad = [Double](repeating: 0, count: logp.count)
        for tokens in sequences where !tokens.isEmpty {
            let n = Double(tokens.count)
            let s = exp(tokens.reduce(0) { $0 + logp[$1] - logpOld[$1] } / n)
            var dS = 0.0
            for t in tokens {
                let term = clippedTerm(ratio: s, advantage: advantages[t], clipLow, clipHigh, dualClip)
                if term.clipped { clipped += 1 }
                loss += term.loss / divisors[t]
                dS += term.dRatio / divisors[t]
            }
            for t in tokens { grad[t] = dS * s / n }
        }
        return (loss, grad, Double(clipped) / Double(max(logp.count, 1)))
    }

    /// Clipped value loss: L = ½ mean_t max((V − G)², (V_clip − G)²), V_clip = V_old + clip(V − V_old, ±ε).
    /// Returns the loss and ∂L/∂V per token.
    public static func valueLoss(
        values: [Double], oldValues: [Double], returns: [Double], clip: Double, normalizer: Int = 0
    ) -> (loss: Double, dValues: [Double]) {
        let n = Double(max(normalizer > 0 ? normalizer : values.count, 1))  // as in policyLoss
        var loss = 0.0
        var grad = [Double](repeating: 0, count: values.count)
        for t in values.indices {
            let v = values[t], g = returns[t]
            let vClip = oldValues[t] + min(max(v - oldValues[t], -clip), clip)
            let a = (v - g) * (v - g), b = (vClip - g) * (vClip - g)
            if a >= b {
                loss += a
                grad[t] = (v - g) / n
            } else {
                loss += b
                grad[t] = abs(v - oldValues[t]) < clip ? (vClip - g) / n : 0
            }
        }
        return (0.5 * loss / n, grad)
    }

    /// Entropy of softmax(z): logsumexp(z) − Σ p_v z_v.
    public static func entropy(logits z: [Double]) -> Double {
        let m = z.max() ?? 0
        let exps = z.map { exp($0 - m) }
        let s = exps.reduce(0, +)
        let lse = m + log(s)
        return lse - zip(exps, z).reduce(0) { $0 + $1.0 / s * $1.1 }
    }
}

/// How the per-token terms of a minibatch make its loss (verl's loss_agg_mode, TRL's loss_type):
/// each token's term is divided by its sequence's `divisor`.
public enum LossAggregation: String, Sendable, CaseIterable, Codable {
    /// Σ_i Σ_t ℓ_it / Σ_i n_i: every token alike (DAPO; TRL "dapo"/"bnpo"; OpenRLHF).
    case tokenMean = "token_mean"
    /// (1/S) Σ_i (1/n_i) Σ_t ℓ_it: every sequence alike (the GRPO paper; TRL "grpo").
    case seqMeanTokenMean = "seq_mean_token_mean"
    /// (1/S) Σ_i Σ_t ℓ_it: a sequence weighs by its length.
    case seqMeanTokenSum = "seq_mean_token_sum"
    /// (1/(S·L)) Σ_i Σ_t ℓ_it with L the response length limit, a constant (Dr. GRPO, Liu et al.
    /// 2025, arXiv 2503.20783; TRL "dr_grpo"; verl "seq-mean-token-sum-norm").
    case drGRPO = "dr_grpo"

    /// The divisor of a sequence of `tokens` response tokens in a minibatch of `sequences`
    /// sequences and `totalTokens` tokens, responses at most `maxTokens` long.
    public func divisor(tokens: Int, sequences: Int, totalTokens: Int, maxTokens: Int) -> Int {
        switch self {
        case .tokenMean: return max(totalTokens, 1)
        case .seqMeanTokenMean: return max(sequences * tokens, 1)
        case .seqMeanTokenSum: return max(sequences, 1)
        case .drGRPO: return max(sequences * maxTokens, 1)
        }
    }
}

/// DAPO's soft overlong punishment (Yu et al. 2025, arXiv 2503.14476, eq. 13) for a response of
/// `length` tokens with limit L and buffer B: 0 up to L − B, then falling linearly to −1 at L
/// (−1 beyond), times `factor` (verl's penalty_factor).
public func overlongPenalty(length: Int, limit: Int, buffer: Int, factor: Double) -> Double {
    guard buffer > 0, length > limit - buffer else { return 0 }
    guard length <= limit else { return -factor }
    return factor * Double(limit - buffer - length) / Double(buffer)
}

/// Adaptive KL coefficient (Ziegler et al. 2019; OpenRLHF kl_controller.py):
/// e = clip(KL/target − 1, ±0.2), β ← β·(1 + e·n/horizon). Without a target β is fixed.
public struct AdaptiveKLController: Sendable, Codable, Equatable {
    public var beta: Double
    public let target: Double?
    public let horizon: Double
    public init(beta: Double, target: Double?, horizon: Double = 10_000) {
        self.beta = beta
        self.target = target
        self.horizon = horizon
    }
    public mutating func update(observedKL: Double, steps: Int) {
        guard let target else { return }
        let error = min(max(observedKL / target - 1, -0.2), 0.2)
        beta *= 1 + error * Double(steps) / horizon
    }
}
