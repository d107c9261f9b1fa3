/// Values that every rank of a data-parallel group adds up (loss sums, counts, Σx and Σx²): each
/// type lists its summed fields once, in `visitSums`, and the all-reduce's payload is built and
/// read back by that same list, so no code keeps positions in a vector by hand.
public protocol RankSums {
    /// Calls `visit` on every summed field, in one fixed order (the same on every rank).
    mutating func visitSums(_ visit: (inout Double) -> Void)
}

extension RankSums {
    /// The summed fields in `visitSums` order: the all-reduce's payload.
    public var summands: [Double] {
        var copy = self
        var out: [Double] = []
        copy.visitSums { out.append($0) }
        return out
    }

    /// The sums over every rank of `group` (nil: this rank's own values, a world of one).
    public func summed(over group: (any Transport)?) async throws -> Self {
        guard let group else { return self }
        return replacingSummands(with: try await group.allReduce(summands, op: .sum))
    }

    /// A copy whose summed fields are `values`, in `visitSums` order (an all-reduce's result).
    public func replacingSummands(with values: [Double]) -> Self {
        var out = self
        var next = 0
        out.visitSums { field in
            field = values[next]
            next += 1
        }
        return out
    }
}

/// Σx and Σx² of one quantity over a batch, and the mean and (population) deviation they give.
public struct SumOfSquares: RankSums, Sendable, Equatable {
    public var sum = 0.0
    public var squares = 0.0

    public init() {}

    public init(_ values: [Double]) {
        sum = values.reduce(0, +)
        squares = values.map { $0 * $0 }.reduce(0, +)
    }

    public mutating func visitSums(_ visit: (inout Double) -> Void) {
        visit(&sum)
        visit(&squares)
    }

    public func meanStd(_ n: Double) -> (mean: Double, std: Double) {
        let mean = sum / n
        return (mean, max(squares / n - mean * mean, 0).squareRoot())
    }
}

/// Named sums (a reward source's own figures): visited in key order, so every rank that holds
/// the same keys sends the same payload layout.
public struct NamedSums: RankSums, Sendable, Equatable {
    public var values: [String: Double]

    public init(_ values: [String: Double] = [:]) { self.values = values }

    public subscript(name: String) -> Double {
        get { values[name] ?? 0 }
        set { values[name] = newValue }
    }

    public mutating func visitSums(_ visit: (inout Double) -> Void) {
        for key in values.keys.sorted() {
            var value = values[key] ?? 0
            visit(&value)
            values[key] = value
        }
    }
}
