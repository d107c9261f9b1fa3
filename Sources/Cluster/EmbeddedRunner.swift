import Foundation

extension EmbeddedWorld {
    /// Runs `body` once per rank, concurrently, delivering parked operations between turns,
    /// until every rank returns. Throws when every rank still running has been parked with
    /// nothing deliverable for `stallSeconds` (a hang in real MPI), naming what is still parked.
    /// A rank that is computing is progress, however long it takes (a slow CPU is not a hang).
    public func run<T: Sendable>(
        stallSeconds: Double = 5,
        _ body: @escaping @Sendable (EmbeddedTransport) async throws -> T
    ) async throws -> [T] {
        let tasks = (0..<size).map { rank in
            let transport = self.transport(rank: rank)
            return Task { try await body(transport) }
        }
        let finished = FinishedFlags(count: size)
        for (rank, task) in tasks.enumerated() {
            Task {
                _ = await task.result
                finished.set(rank)
            }
        }
        var idleSince = Date()
        while !finished.all {
            await Task.yield()
            if deliver() > 0 {
                idleSince = Date()
                continue
            }
            let parked = parkedRanks
            if (0..<size).contains(where: { !finished.isSet($0) && !parked.contains($0) }) {
                idleSince = Date()
            } else if Date().timeIntervalSince(idleSince) > stallSeconds {
                for task in tasks { task.cancel() }
                throw TransportError(
                    "embedded world stalled for \(stallSeconds) s: " + undelivered.joined(separator: "; "))
            }
            try await Task.sleep(nanoseconds: 200_000)
        }
        var results: [T] = []
        for task in tasks { results.append(try await task.value) }
        return results
    }
}

private final class FinishedFlags: @unchecked Sendable {
    private let lock = NSLock()
    private var flags: [Bool]
    init(count: Int) { flags = Array(repeating: false, count: count) }
    func set(_ i: Int) {
        lock.lock()
        flags[i] = true
        lock.unlock()
    }
    var all: Bool {
        lock.lock()
        defer { lock.unlock() }
        return flags.allSatisfy { $0 }
    }
    func isSet(_ i: Int) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        return flags[i]
    }
}
