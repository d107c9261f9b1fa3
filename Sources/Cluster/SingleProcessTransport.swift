import Foundation
import Kernels

/// A world of one with no MPI at all: collectives are identities, a message to oneself is
/// queued and read back. For library users and tests that run one process (the MPI singleton
/// world does the same through the MPI library).
public final class SingleProcessTransport: Transport, @unchecked Sendable {
    public let rank = 0, size = 1
    private let lock = NSLock()
    private var queued: [Int: [Data]] = [:]

    public init() {}

    public func allReduce(_ buffer: FloatBuffer, op: ReduceOp) async throws {}
    public func allReduce(_ sum: GradientSum, range: Range<Int>) async throws {}
    public func allReduce(_ values: [Double], op: ReduceOp) async throws -> [Double] { values }
    public func broadcast(_ buffer: FloatBuffer, root: Int) async throws {
        guard root == 0 else { throw TransportError("broadcast from rank \(root) in a world of one") }
    }
    public func allGather(_ data: Data) async throws -> [Data] { [data] }
    public func send(_ data: Data, to destination: Int, tag: Int) async throws {
        guard destination == 0 else { throw TransportError("send to rank \(destination) in a world of one") }
        lock.withLock { queued[tag, default: []].append(data) }
    }
    public func receive(from source: Int, tag: Int) async throws -> Data {
        let first: Data? = lock.withLock {
            guard source == 0, var messages = queued[tag], !messages.isEmpty else { return nil }
            let first = messages.removeFirst()
            queued[tag] = messages
            return first
        }
        guard let first else {
            throw TransportError(
                "receive from rank \(source) (tag \(tag)) in a world of one: nothing was sent, it would wait forever")
        }
        return first
    }
    public func barrier() async throws {}
    public func split(color: Int, key: Int) async throws -> any Transport { self }
}
