import Alignment
import Cluster

extension RankSums {
    /// The sums over every rank of `group` (nil: this rank's own values, a world of one).
    public func summed(over group: (any Transport)?) async throws -> Self {
        guard let group else { return self }
        return replacingSummands(with: try await group.allReduce(summands, op: .sum))
    }
}
