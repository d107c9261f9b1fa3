import Foundation

/// The reward-collapse optimum (Song et al. 2023, docs/algorithms.md §3.2 and oracle R4): for one
/// prompt with n ranked responses, the rewards r_1 ≥ … ≥ r_n in [0, 1] that maximise
/// Σ_{i<j} U(r_i − r_j). The answer depends only on n and U — not on the prompt — which is the
/// collapse; a prompt-aware U is the fix.
public enum RewardCollapse {
    /// A utility by its derivative U′ on d > 0 (concave U: U′ non-increasing).
    public static func derivative(_ name: String) -> ((Double) -> Double)? {
        switch name {
        case "x": return { _ in 1 }
        case "log": return { 1 / $0 }
        case "x_inv": return { 1 / ($0 * $0) }  // U = −1/x
        default: return nil
        }
    }

    /// Coordinate ascent: each r_i in turn moves to the maximiser of the (concave) objective along
    /// its coordinate within [r_{i+1}, r_{i−1}] ∩ [0, 1], found by bisection on the derivative
    /// −Σ_{j<i} U′(r_j − r_i) + Σ_{j>i} U′(r_i − r_j), until a sweep moves nothing by more than `tolerance`.
    public static func optimalRewards(
        n: Int, derivative uPrime: (Double) -> Double, tolerance: Double = 1e-12, maxSweeps: Int = 100_000
    ) -> [Double] {
        precondition(n >= 2)
        // Start away from the answer: a clumped, unevenly spaced ranking.
        var r = (0..<n).map { 0.6 - 0.2 * pow(Double($0) / Double(n - 1), 2) }
        func slope(_ i: Int, _ x: Double) -> Double {
            var s = 0.0
            for j in 0..<n where j != i {
                if j < i { s -= uPrime(max(r[j] - x, 1e-300)) } else { s += uPrime(max(x - r[j], 1e-300)) }
            }
            return s
        }
        for _ in 0..<maxSweeps {
            var moved = 0.0
            for i in 0..<n {
                var low = i == n - 1 ? 0 : r[i + 1], high = i == 0 ? 1 : r[i - 1]
                let old = r[i]
                if slope(i, high) >= 0 {
                    r[i] = high
                }  // still rising at the upper end
                else if slope(i, low) <= 0 {
                    r[i] = low
                }  // already falling at the lower end
                else {
                    for _ in 0..<200 where high - low > 1e-15 {
                        let mid = (low + high) / 2
                        if slope(i, mid) > 0 { low = mid } else { high = mid }
                    }
                    r[i] = (low + high) / 2
                }
                moved = max(moved, abs(r[i] - old))
            }
            if moved < tolerance { break }
        }
        return r
    }
}
