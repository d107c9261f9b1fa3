import Foundation

/// R2M's reward-model loss on one group of K responses to a prompt (Huang et al., arXiv
/// 2601.22664 v4, §4.2 "GREBT"; docs/algorithms.md §7(c)):
///   L = (1 − α)·[−log σ(r_w − r_l)] + α·[−Σ_j p_j log p_j],  p = softmax(z),  z_j = (r_j − mean r)/std r
/// where w and l are the group's highest- and lowest-scored responses (self-labelled, no gold) and
/// r the rewards recomputed with the fresh policy states. Minimising the entropy sharpens the
/// score gaps within the group; α = 0.3 in the paper.
/// Chosen where the paper is silent: the population standard deviation; a group whose recomputed
/// rewards are equal to Float precision (std ≤ 1e-6·(1 + mean |r|)) has no entropy term — z is
/// undefined there and its gradient grows as 1/std.
public enum GroupRewardEntropy {
    public struct Result: Equatable {
        public var loss: Double, bradleyTerry: Double, entropy: Double
        /// dL/dr_j [K].
        public var gradient: [Double]
    }

    public static func loss(rewards r: [Double], winner: Int, loser: Int, alpha: Double) -> Result {
        let K = r.count
        precondition(K >= 2 && r.indices.contains(winner) && r.indices.contains(loser) && winner != loser)
        var gradient = [Double](repeating: 0, count: K)
        let bt = BradleyTerry.loss(chosen: r[winner], rejected: r[loser])
        gradient[winner] += (1 - alpha) * bt.dChosen
        gradient[loser] += (1 - alpha) * bt.dRejected
        let (mean, std) = Statistics.meanAndDeviation(r)
        var entropy = 0.0
        if std > 1e-6 * (1 + r.reduce(0) { $0 + abs($1) } / Double(K)) {
            let z = r.map { ($0 - mean) / std }
            let top = z.max()!
            let e = z.map { Foundation.exp($0 - top) }, total = e.reduce(0, +)
            let p = e.map { $0 / total }
            entropy = -p.reduce(0) { $0 + ($1 > 0 ? $1 * Foundation.log($1) : 0) }
            // dH/dz_k = −p_k (log p_k + H); through z = (r − μ)/σ:
            // dH/dr_k = (g_k − mean(g) − z_k · mean(g ⊙ z)) / σ.
            let g = p.map { $0 > 0 ? -$0 * (Foundation.log($0) + entropy) : 0 }
            let gMean = g.reduce(0, +) / Double(K), gzMean = zip(g, z).reduce(0) { $0 + $1.0 * $1.1 } / Double(K)
            for j in 0..<K { gradient[j] += alpha * (g[j] - gMean - z[j] * gzMean) / std }
        }
        return Result(
            loss: (1 - alpha) * bt.loss + alpha * entropy, bradleyTerry: bt.loss, entropy: entropy, gradient: gradient)
    }

    /// The self-labelled pair of a group by its scores: the first highest and the first lowest;
    /// nil when every score is equal to Float precision (1e-6 relative) — e.g. the same response
    /// sampled twice — as there is no preference to learn.
    public static func pair(scores: [Double]) -> (winner: Int, loser: Int)? {
        guard let hi = scores.indices.max(by: { scores[$0] < scores[$1] }),
            let lo = scores.indices.min(by: { scores[$0] < scores[$1] })
        else { return nil }
        let scale = 1 + scores.reduce(0) { $0 + abs($1) } / Double(scores.count)
        return scores[hi] - scores[lo] > 1e-6 * scale ? (hi, lo) : nil
    }
}
