import Foundation

/// LinUCB (Li et al. 2010) as LASeR uses it to pick a reward model per batch (Nguyen et al. 2024,
/// docs/algorithms.md §9.2, release code scripts/utils/linucb.py): one arm per reward source, a ridge
/// regression per arm, and an upper confidence bound. Rewards are normalised against the
/// history of raw rewards by its 20th/80th percentiles before the update — from the first reward
/// on (a history of one value is its own middle, 0.5), or as the release code does, the raw
/// reward while the history holds fewer than 2 (`rawFirstReward`).
public struct LinUCB: Sendable, Equatable, Codable {
    public let dimension: Int, arms: Int
    public let alpha: Double
    public let rawFirstReward: Bool
    /// Per arm: A = I + Σ x xᵀ [d, d] (row-major) and b = Σ r̂ x [d].
    public private(set) var a: [[Double]], b: [[Double]]
    /// Raw rewards received so far (all arms), for the percentile normalisation.
    public private(set) var history: [Double] = []

    public init(dimension: Int, arms: Int, alpha: Double = 0.1, rawFirstReward: Bool = false) {
        precondition(dimension > 0 && arms > 0)
        self.dimension = dimension
        self.arms = arms
        self.alpha = alpha
        self.rawFirstReward = rawFirstReward
        let identity = (0..<(dimension * dimension)).map { $0 % (dimension + 1) == 0 ? 1.0 : 0.0 }
        a = Array(repeating: identity, count: arms)
        b = Array(repeating: Array(repeating: 0, count: dimension), count: arms)
    }

    enum CodingKeys: String, CodingKey { case dimension, arms, alpha, rawFirstReward, a, b, history }

    /// A state saved before `rawFirstReward` existed reads as the release code's (raw first reward).
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        dimension = try c.decode(Int.self, forKey: .dimension)
        arms = try c.decode(Int.self, forKey: .arms)
        alpha = try c.decode(Double.self, forKey: .alpha)
        rawFirstReward = try c.decodeIfPresent(Bool.self, forKey: .rawFirstReward) ?? true
        a = try c.decode([[Double]].self, forKey: .a)
        b = try c.decode([[Double]].self, forKey: .b)
        history = try c.decode([Double].self, forKey: .history)
        guard dimension > 0, arms > 0, a.count == arms, b.count == arms,
            a.allSatisfy({ $0.count == dimension * dimension }), b.allSatisfy({ $0.count == dimension })
        else {
            throw DecodingError.dataCorrupted(
                .init(
                    codingPath: [],
                    debugDescription: "LinUCB state: \(arms) arms of dimension \(dimension) do not match its A and b"))
        }
    }

    /// θ_k = A_k⁻¹ b_k.
    public func theta(_ arm: Int) -> [Double] { Self.solve(a[arm], b[arm], dimension) }

    /// UCB_k = xᵀθ_k + α √(xᵀ A_k⁻¹ x) for every arm.
    public func scores(_ x: [Double]) -> [Double] {
        precondition(x.count == dimension, "LinUCB: context has \(x.count) values, expected \(dimension)")
        return (0..<arms).map { k in
            let theta = theta(k), ainvx = Self.solve(a[k], x, dimension)
            return zip(x, theta).reduce(0) { $0 + $1.0 * $1.1 } + alpha
                * max(zip(x, ainvx).reduce(0) { $0 + $1.0 * $1.1 }, 0).squareRoot()
        }
    }

    /// The arm with the highest bound; ties go to the lowest index.
    public func select(_ x: [Double]) -> Int {
        let s = scores(x)
        var best = 0
        for k in 1..<arms where s[k] > s[best] { best = k }
        return best
    }

    /// Records the raw reward of `arm` in context `x` and returns the normalised reward it used:
    /// 0 below the 20th percentile of the history (r included), 1 above the 80th, linear between,
    /// 0.5 when they are equal; with `rawFirstReward`, the raw value while the history holds
    /// fewer than 2 rewards.
    @discardableResult
    public mutating func update(arm: Int, context x: [Double], reward r: Double) -> Double {
        history.append(r)
        var normalised = r
        if history.count >= 2 || !rawFirstReward {
            let q20 = Self.percentile(history, 0.2), q80 = Self.percentile(history, 0.8)
            if r < q20 {
                normalised = 0
            } else if r > q80 {
                normalised = 1
            } else {
                normalised = q80 > q20 ? (r - q20) / (q80 - q20) : 0.5
            }  // all equal: the middle
        }
        for i in 0..<dimension {
            for j in 0..<dimension { a[arm][i * dimension + j] += x[i] * x[j] }
            b[arm][i] += normalised * x[i]
        }
        return normalised
    }

    /// numpy's default percentile: linear interpolation between the sorted values.
    static func percentile(_ values: [Double], _ q: Double) -> Double {
        let s = values.sorted()
        let position = q * Double(s.count - 1)
        let low = Int(position.rounded(.down)), high = min(low + 1, s.count - 1)
        return s[low] + (position - Double(low)) * (s[high] - s[low])
    }

    /// Solves A y = v by Gaussian elimination with partial pivoting (A is small and positive definite).
    static func solve(_ matrix: [Double], _ v: [Double], _ n: Int) -> [Double] {
        var m = matrix, y = v
        for col in 0..<n {
            var pivot = col
            for r in (col + 1)..<max(n, col + 1) where abs(m[r * n + col]) > abs(m[pivot * n + col]) { pivot = r }
            if pivot != col {
                for c in 0..<n { m.swapAt(col * n + c, pivot * n + c) }
                y.swapAt(col, pivot)
            }
            let p = m[col * n + col]
            for r in (col + 1)..<max(n, col + 1) {
                let f = m[r * n + col] / p
                if f == 0 { continue }
                for c in col..<n { m[r * n + c] -= f * m[col * n + c] }
                y[r] -= f * y[col]
            }
        }
        for r in stride(from: n - 1, through: 0, by: -1) {
            var s = y[r]
            for c in (r + 1)..<max(n, r + 1) { s -= m[r * n + c] * y[c] }
            y[r] = s / m[r * n + r]
        }
        return y
    }
}
