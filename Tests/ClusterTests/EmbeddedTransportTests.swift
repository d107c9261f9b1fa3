import Cluster
import Foundation
import Kernels
import XCTest

/// Every Transport operation on the hand-driven embedded world; an undelivered message or
/// parked call at the end fails the test.
final class EmbeddedTransportTests: XCTestCase {
    func runWorld<T: Sendable>(_ size: Int, _ body: @escaping @Sendable (EmbeddedTransport) async throws -> T)
        async throws -> [T]
    {
        let world = EmbeddedWorld(size: size)
        let results = try await world.run(body)
        XCTAssertEqual(world.undelivered, [], "nothing may be left undelivered")
        return results
    }

    func testAllReduceSumAndMean() async throws {
        let results = try await runWorld(4) { t -> ([Float], [Float], [Double]) in
            let a = FloatBuffer([Float(t.rank), 1, -2])
            try await t.allReduce(a, op: .sum)
            let b = FloatBuffer([Float(t.rank) * 2])
            try await t.allReduce(b, op: .mean)
            let d = try await t.allReduce([Double(t.rank), 0.5], op: .sum)
            return (a.array, b.array, d)
        }
        for (a, b, d) in results {
            XCTAssertEqual(a, [6, 4, -8])
            XCTAssertEqual(b, [3])
            XCTAssertEqual(d, [6, 2])
        }
    }

    func testBroadcastAllGatherAndBarrier() async throws {
        let results = try await runWorld(3) { t -> ([Float], [Data]) in
            let buffer = FloatBuffer([Float(t.rank * 10), 7])
            try await t.broadcast(buffer, root: 2)
            try await t.barrier()
            let gathered = try await t.allGather(Data(repeating: UInt8(t.rank), count: t.rank + 1))
            return (buffer.array, gathered)
        }
        for (buffer, gathered) in results {
            XCTAssertEqual(buffer, [20, 7])
            XCTAssertEqual(gathered, [Data([0]), Data([1, 1]), Data([2, 2, 2])])
        }
    }

    func testTaggedPointToPointIsMatchedByTagNotOrder() async throws {
        let results = try await runWorld(2) { t -> [Data] in
            if t.rank == 0 {
                try await t.send(Data("first".utf8), to: 1, tag: 1)
                try await t.send(Data("second".utf8), to: 1, tag: 2)
                return [try await t.receive(from: 1, tag: 9)]
            }
            let second = try await t.receive(from: 0, tag: 2)
            let first = try await t.receive(from: 0, tag: 1)
            try await t.send(Data("reply".utf8), to: 0, tag: 9)
            return [second, first]
        }
        XCTAssertEqual(results[0], [Data("reply".utf8)])
        XCTAssertEqual(results[1], [Data("second".utf8), Data("first".utf8)])
    }

    func testSplitMakesIndependentSubCommunicators() async throws {
        let results = try await runWorld(4) { t -> (Int, Int, Float) in
            let sub = try await t.split(color: t.rank % 2, key: -t.rank)  // reversed order inside each group
            let b = FloatBuffer([Float(t.rank)])
            try await sub.allReduce(b, op: .sum)
            return (sub.rank, sub.size, b[0])
        }
        XCTAssertEqual(results.map(\.1), [2, 2, 2, 2])
        XCTAssertEqual(results.map(\.2), [2, 4, 2, 4], "evens sum 0+2, odds 1+3")
        XCTAssertEqual(results.map(\.0), [1, 1, 0, 0], "key −rank puts the higher world rank first")
    }

    func testMismatchedCollectivesAreCaught() async throws {
        let world = EmbeddedWorld(size: 2)
        do {
            _ = try await world.run { t in
                if t.rank == 0 {
                    try await t.allReduce(FloatBuffer([1, 2, 3]), op: .sum)
                } else {
                    try await t.allReduce(FloatBuffer([1]), op: .sum)
                }
            }
            XCTFail("a size mismatch must fail")
        } catch {
            XCTAssertTrue("\(error)".contains("does not match across ranks"), "\(error)")
        }
        XCTAssertTrue(
            world.undelivered.contains { $0.contains("allreduce(3)") && $0.contains("allreduce(1)") },
            "\(world.undelivered)")
    }

    func testUndeliveredMessagesAndStallsAreReported() async throws {
        let world = EmbeddedWorld(size: 2)
        _ = try await world.run { t in if t.rank == 0 { try await t.send(Data([1]), to: 1, tag: 3) } }
        XCTAssertEqual(world.undelivered, ["message from rank 0 to rank 1 (tag 3) never received"])
        let stalled = EmbeddedWorld(size: 2)
        do {
            _ = try await stalled.run(stallSeconds: 0.2) { t in
                if t.rank == 1 { _ = try await t.receive(from: 0, tag: 4) }
            }
            XCTFail("a receive nobody answers must be reported")
        } catch {
            XCTAssertTrue("\(error)".contains("rank 1 waits for a message from rank 0 (tag 4)"), "\(error)")
        }
    }

    /// A rank that computes for longer than the stall limit, while the other waits for it in a
    /// collective, is slow, not stalled (a slower CPU must not fail a test).
    func testALongComputationIsNotAStall() async throws {
        let world = EmbeddedWorld(size: 2)
        let sums = try await world.run(stallSeconds: 0.2) { t in
            if t.rank == 0 { usleep(600_000) }  // blocks its thread, like a long forward pass
            return try await t.allReduce([Double(t.rank + 1)], op: .sum)
        }
        XCTAssertEqual(sums, [[3], [3]])
    }

    /// Without mpirun the process is an MPI singleton: a world of one where everything still works.
    func testMPISingletonWorld() async throws {
        let world = await MPIRuntime.shared.world()
        XCTAssertEqual(world.rank, 0)
        XCTAssertEqual(world.size, 1)
        let b = FloatBuffer([1, 2])
        try await world.allReduce(b, op: .mean)
        XCTAssertEqual(b.array, [1, 2])
        let gathered = try await world.allGather(Data([7]))
        XCTAssertEqual(gathered, [Data([7])])
        try await world.barrier()
        try await world.send(Data("self".utf8), to: 0, tag: 5)
        let received = try await world.receive(from: 0, tag: 5)
        XCTAssertEqual(received, Data("self".utf8))
        let sub = try await world.split(color: 0, key: 0)
        XCTAssertEqual(sub.size, 1)
    }
}
