import Foundation
import Kernels

/// How ranks exchange data. Two implementations: MPI (`MPITransport`, every call on one
/// dedicated thread) and an in-process world whose delivery a test drives by hand
/// (`EmbeddedTransport`). Code above this protocol never knows which one it talks to.
///
/// Collectives must be called in the same order on every rank of the communicator (MPI matches
/// them by order, not by buffer: docs/platform.md §5 pitfall 1); the embedded world checks this.
public protocol Transport: AnyObject, Sendable {
    var rank: Int { get }
    var size: Int { get }
    /// Σ (or mean) over ranks of `buffer`, in place.
    func allReduce(_ buffer: FloatBuffer, op: ReduceOp) async throws
    /// Σ over ranks of sum[range], in place (Float64: see `GradientSum`).
    func allReduce(_ sum: GradientSum, range: Range<Int>) async throws
    /// Starts Σ over ranks of sum[range] in the background and returns at once, so the backward
    /// pass goes on while a finished layer's gradients travel; nil when this transport cannot
    /// (the caller then reduces the range later with `allReduce(_:range:)`). The caller must not
    /// touch sum[range] until the reduction is waited for, and every rank starts the same ranges
    /// in the same order (they are collectives).
    func startAllReduce(_ sum: GradientSum, range: Range<Int>) -> PendingReduction?
    /// The machines the ranks run on (decides whether overlapping the all-reduce pays).
    var hostCount: HostCount { get }
    /// Σ (or mean) over ranks of a few Doubles (loss sums, token counts, checksums).
    func allReduce(_ values: [Double], op: ReduceOp) async throws -> [Double]
    /// `buffer` on every rank becomes root's.
    func broadcast(_ buffer: FloatBuffer, root: Int) async throws
    /// Every rank gets every rank's bytes, indexed by rank.
    func allGather(_ data: Data) async throws -> [Data]
    /// Tagged point-to-point: `send` returns once the bytes are handed over.
    func send(_ data: Data, to destination: Int, tag: Int) async throws
    func receive(from source: Int, tag: Int) async throws -> Data
    func barrier() async throws
    /// A sub-communicator of the ranks that pass the same color, ordered by key (MPI_Comm_split).
    func split(color: Int, key: Int) async throws -> any Transport
    /// The ranks of this communicator on this rank's machine, in rank order: they can share
    /// memory (MPI_Comm_split_type, MPI_COMM_TYPE_SHARED). A collective.
    func hostGroup() async throws -> any Transport
}

/// How many machines a job's ranks run on (1, or more than 1: a lower bound), and how that was
/// learned (for the run's log). Every rank of a job reaches the same "1 or more" answer.
public struct HostCount: Sendable, Equatable {
    public let count: Int
    public let source: String
    public init(count: Int, source: String) {
        self.count = count
        self.source = source
    }
}

extension Transport {
    /// In-process worlds are one host.
    public var hostCount: HostCount { HostCount(count: 1, source: "an in-process world") }
    /// Σ over ranks of a whole gradient sum, in place.
    public func allReduce(_ sum: GradientSum) async throws { try await allReduce(sum, range: 0..<sum.count) }
    public func startAllReduce(_ sum: GradientSum, range: Range<Int>) -> PendingReduction? { nil }
    /// In-process worlds are one host.
    public func hostGroup() async throws -> any Transport { try await split(color: 0, key: rank) }
}

public enum ReduceOp: Sendable { case sum, mean }

public struct TransportError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Where a failure happened, for the one-line report every rank prints before the world is
/// aborted: `rank r (role, step s): reason`.
public struct FailureContext: Sendable {
    public var rank: Int
    public var role: String
    public var step: Int
    public init(rank: Int, role: String, step: Int) {
        self.rank = rank
        self.role = role
        self.step = step
    }
    public func describe(_ reason: String) -> String { "rank \(rank) (\(role), step \(step)): \(reason)" }
}

/// The default timeout of every blocking wait, in seconds (config `cluster.timeout`).
public let defaultTransportTimeout: Double = 300
