/// A reward as a weighted sum of named sources, each kept for logging (docs/architecture.md §5).
public struct RewardBreakdown: Sendable {
    public var total: [Double]
    public var bySource: [String: [Double]]
    public init(count: Int) {
        total = Array(repeating: 0, count: count)
        bySource = [:]
    }
    public mutating func add(_ name: String, values: [Double], weight: Double) {
        bySource[name] = values
        guard weight != 0 else { return }
        for i in total.indices { total[i] += weight * values[i] }
    }
}
