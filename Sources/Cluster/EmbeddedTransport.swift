import Foundation
import Kernels

/// An in-process world of `size` ranks for tests (swift-nio's EmbeddedEventLoop idea): every
/// operation a rank starts is parked until the test calls `deliver()`, which completes all
/// operations that can complete. Collectives are matched by their position in each rank's
/// sequence and must agree in kind and size (an out-of-order collective is an error here,
/// where MPI would silently mix buffers). Sends are buffered; receives wait for a match.
/// Anything still parked at the end is listed by `undelivered` and fails the test.
public final class EmbeddedWorld: @unchecked Sendable {
    public let size: Int
    private let lock = NSLock()
    private var nextCommunicator = 1
    // Collectives: communicator id → sequence number → rank-in-communicator → parked call.
    private var collectives: [Int: [Int: [Int: ParkedCollective]]] = [:]
    private var counters: [String: Int] = [:]  // "comm:rank" → next collective sequence number
    private var messages: [Message] = []
    private var receives: [ParkedReceive] = []
    private var failures: [String] = []
    private var waiting: [Int: Int] = [:]  // world rank → operations it is parked in

    struct ParkedCollective {
        let kind: String, count: Int, payload: Payload, members: Int, worldRank: Int
        let resume: (Result<Payload, Error>) -> Void
    }
    enum Payload {
        case floats([Float]), doubles([Double]), bytes(Data), split(color: Int, key: Int, worldRank: Int), none
    }
    struct Message { let communicator: Int, from: Int, to: Int, tag: Int, data: Data }
    struct ParkedReceive { let communicator: Int, from: Int, to: Int, tag: Int, worldRank: Int, resume: (Data) -> Void }

    public init(size: Int) { self.size = size }

    /// The transport of `rank` on the world communicator.
    public func transport(rank: Int) -> EmbeddedTransport {
        EmbeddedTransport(world: self, communicator: 0, rank: rank, members: Array(0..<size))
    }

    /// Completes every operation that can complete now; returns how many were completed.
    @discardableResult
    public func deliver() -> Int {
        var completions: [() -> Void] = []
        lock.lock()
        // Point-to-point: first queued message matching each parked receive.
        var remaining: [ParkedReceive] = []
        for r in receives {
            if let i = messages.firstIndex(where: {
                $0.communicator == r.communicator && $0.from == r.from && $0.to == r.to && $0.tag == r.tag
            }) {
                let data = messages.remove(at: i).data
                waiting[r.worldRank, default: 1] -= 1
                completions.append { r.resume(data) }
            } else {
                remaining.append(r)
            }
        }
        receives = remaining
        // Collectives whose every member has arrived.
        for (comm, bySequence) in collectives {
            for (sequence, parked) in bySequence {
                guard let any = parked.values.first, parked.count == any.members else { continue }
                collectives[comm]![sequence] = nil
                let calls = parked.sorted { $0.key < $1.key }.map(\.value)
                for c in calls { waiting[c.worldRank, default: 1] -= 1 }
                if Set(calls.map { "\($0.kind)/\($0.count)" }).count != 1 {
                    let description = calls.enumerated().map {
                        "rank \($0.offset): \($0.element.kind)(\($0.element.count))"
                    }.joined(separator: ", ")
                    let error = TransportError("collective #\(sequence) does not match across ranks: \(description)")
                    failures.append(error.description)
                    for c in calls { completions.append { c.resume(.failure(error)) } }
                    continue
                }
                let results = Self.complete(calls, communicator: comm, world: self)
                for (c, r) in zip(calls, results) { completions.append { c.resume(.success(r)) } }
            }
        }
        lock.unlock()
        for c in completions { c() }
        return completions.count
    }

    /// World ranks waiting in a collective or a receive right now.
    public var parkedRanks: Set<Int> {
        lock.lock()
        defer { lock.unlock() }
        return Set(waiting.filter { $0.value > 0 }.keys)
    }

    /// Descriptions of everything still parked, plus mismatches seen (empty when all is well).
    public var undelivered: [String] {
        lock.lock()
        defer { lock.unlock() }
        var out = failures
        out += messages.map { "message from rank \($0.from) to rank \($0.to) (tag \($0.tag)) never received" }
        out += receives.map { "rank \($0.to) waits for a message from rank \($0.from) (tag \($0.tag))" }
        for (_, bySequence) in collectives {
            for (sequence, parked) in bySequence {
                out.append(
                    "collective #\(sequence) has \(parked.count) of \(parked.values.first?.members ?? 0) ranks: "
                        + parked.sorted { $0.key < $1.key }.map { "rank \($0.key) \($0.value.kind)" }.joined(
                            separator: ", "))
            }
        }
        return out
    }

    private static func complete(_ calls: [ParkedCollective], communicator: Int, world: EmbeddedWorld) -> [Payload] {
        switch calls[0].payload {
        case .floats:
            let all = calls.map { if case .floats(let v) = $0.payload { return v } else { return [] } }
            var sum = all[0]
            if calls[0].kind == "broadcast" { return calls.map { _ in .floats(all[calls[0].count]) } }
            for v in all.dropFirst() { for i in sum.indices { sum[i] += v[i] } }
            return calls.map { _ in .floats(sum) }
        case .doubles:
            let all = calls.map { if case .doubles(let v) = $0.payload { return v } else { return [] } }
            var sum = all[0]
            for v in all.dropFirst() { for i in sum.indices { sum[i] += v[i] } }
            return calls.map { _ in .doubles(sum) }
        case .bytes:
            var joined = Data()
            var lengths: [Int64] = []
            for c in calls {
                if case .bytes(let d) = c.payload {
                    lengths.append(Int64(d.count))
                    joined.append(d)
                }
            }
            let header = lengths.withUnsafeBytes { Data($0) }
            return calls.map { _ in .bytes(header + joined) }
        case .split:
            var groups: [Int: [(key: Int, worldRank: Int, index: Int)]] = [:]
            for (index, c) in calls.enumerated() {
                if case .split(let color, let key, let worldRank) = c.payload {
                    groups[color, default: []].append((key, worldRank, index))
                }
            }
            var results = [Payload](repeating: .none, count: calls.count)
            for (_, members) in groups.sorted(by: { $0.key < $1.key }) {
                let ordered = members.sorted { ($0.key, $0.index) < ($1.key, $1.index) }
                let id = world.nextCommunicator
                world.nextCommunicator += 1
                let worldRanks = ordered.map(\.worldRank)
                let encoded = (try? JSONEncoder().encode([id] + worldRanks)) ?? Data()
                for m in ordered { results[m.index] = .bytes(encoded) }
            }
            return results
        case .none:
            return calls.map { _ in .none }
        }
    }

    // Called by transports.
    func park(communicator: Int, rank: Int, worldRank: Int, members: Int, kind: String, count: Int, payload: Payload)
        async throws -> Payload
    {
        try await withCheckedThrowingContinuation { continuation in
            lock.lock()
            let key = "\(communicator):\(rank)"
            let sequence = counters[key, default: 0]
            counters[key] = sequence + 1
            waiting[worldRank, default: 0] += 1
            collectives[communicator, default: [:]][sequence, default: [:]][rank] =
                ParkedCollective(kind: kind, count: count, payload: payload, members: members, worldRank: worldRank) {
                    continuation.resume(with: $0)
                }
            lock.unlock()
        }
    }

    func post(_ message: Message) {
        lock.lock()
        messages.append(message)
        lock.unlock()
    }

    func parkReceive(communicator: Int, from: Int, to: Int, tag: Int, worldRank: Int) async -> Data {
        await withCheckedContinuation { continuation in
            lock.lock()
            waiting[worldRank, default: 0] += 1
            receives.append(
                ParkedReceive(communicator: communicator, from: from, to: to, tag: tag, worldRank: worldRank) {
                    continuation.resume(returning: $0)
                })
            lock.unlock()
        }
    }
}

/// One rank's view of an `EmbeddedWorld` communicator.
public final class EmbeddedTransport: Transport, @unchecked Sendable {
    let world: EmbeddedWorld
    let communicator: Int
    public let rank: Int
    let members: [Int]  // world ranks of this communicator, by communicator rank
    public var size: Int { members.count }

    init(world: EmbeddedWorld, communicator: Int, rank: Int, members: [Int]) {
        self.world = world
        self.communicator = communicator
        self.rank = rank
        self.members = members
    }

    func collective(_ kind: String, count: Int, _ payload: EmbeddedWorld.Payload) async throws -> EmbeddedWorld.Payload
    {
        try await world.park(
            communicator: communicator, rank: rank, worldRank: members[rank], members: size, kind: kind, count: count,
            payload: payload)
    }

    public func allReduce(_ buffer: FloatBuffer, op: ReduceOp) async throws {
        guard case .floats(let sum) = try await collective("allreduce", count: buffer.count, .floats(buffer.array))
        else { return }
        let scale: Float = op == .mean ? 1 / Float(size) : 1
        for i in 0..<buffer.count { buffer[i] = sum[i] * scale }
    }

    public func allReduce(_ sum: GradientSum, range: Range<Int>) async throws {
        let mine = Array(UnsafeBufferPointer(start: sum.pointer + range.lowerBound, count: range.count))
        guard case .doubles(let total) = try await collective("allreduce-gradients", count: range.count, .doubles(mine))
        else { return }
        for i in 0..<range.count { sum.pointer[range.lowerBound + i] = total[i] }
    }

    public func allReduce(_ values: [Double], op: ReduceOp) async throws -> [Double] {
        guard case .doubles(let sum) = try await collective("allreduce-doubles", count: values.count, .doubles(values))
        else { return values }
        return op == .mean ? sum.map { $0 / Double(size) } : sum
    }

    public func broadcast(_ buffer: FloatBuffer, root: Int) async throws {
        // The count slot carries the root so mismatched roots are caught as a mismatch.
        guard case .floats(let v) = try await collective("broadcast", count: root, .floats(buffer.array)) else {
            return
        }
        precondition(v.count == buffer.count, "broadcast: buffers differ in size across ranks")
        for i in 0..<buffer.count { buffer[i] = v[i] }
    }

    public func allGather(_ data: Data) async throws -> [Data] {
        guard case .bytes(let joined) = try await collective("allgather", count: 0, .bytes(data)) else { return [] }
        let lengths = joined.prefix(8 * size).withUnsafeBytes { Array($0.bindMemory(to: Int64.self)) }
        var offset = 8 * size
        return lengths.map { n in
            defer { offset += Int(n) }
            return joined.subdata(in: (joined.startIndex + offset)..<(joined.startIndex + offset + Int(n)))
        }
    }

    public func send(_ data: Data, to destination: Int, tag: Int) async throws {
        guard destination >= 0 && destination < size else {
            throw TransportError("send to rank \(destination) of \(size)")
        }
        world.post(.init(communicator: communicator, from: rank, to: destination, tag: tag, data: data))
    }

    public func receive(from source: Int, tag: Int) async throws -> Data {
        guard source >= 0 && source < size else { throw TransportError("receive from rank \(source) of \(size)") }
        return await world.parkReceive(
            communicator: communicator, from: source, to: rank, tag: tag, worldRank: members[rank])
    }

    public func barrier() async throws { _ = try await collective("barrier", count: 0, .none) }

    public func split(color: Int, key: Int) async throws -> any Transport {
        guard
            case .bytes(let encoded) = try await collective(
                "split", count: 0, .split(color: color, key: key, worldRank: members[rank])),
            let ids = try? JSONDecoder().decode([Int].self, from: encoded)
        else { throw TransportError("split failed") }
        let worldRanks = Array(ids.dropFirst())
        return EmbeddedTransport(
            world: world, communicator: ids[0], rank: worldRanks.firstIndex(of: members[rank])!, members: worldRanks)
    }
}
