import Cluster
import Foundation
import Kernels
import Models
import XCTest

@testable import Roles

/// Frozen weights once per host (docs/architecture.md §13), on an in-process world of one host:
/// the first rank loads, the others load nothing and read its segment; every rank computes what a
/// trunk of its own would, in fp32 and in bf16, bf16-only included; a failed load stops every
/// rank with its reason; nothing is left in /dev/shm.
final class HostWeightsTests: XCTestCase {
    let config = GPT2Config(vocabSize: 97, contextLength: 16, channels: 128, layers: 2, heads: 4, eosTokenId: 96)

    func made() throws -> any CausalLM {
        let trunk = try GPT2Trunk(config: config)
        var rng = RNG(seed: 9)
        trunk.initialize(rng: &rng, std: 0.3)
        return trunk
    }

    /// Token log-probs of three sequences of 8 (inference forward and LM head), as bit patterns.
    static func logProbs(_ trunk: any CausalLM) throws -> [UInt32] {
        var rng = RNG(seed: 5)
        let tokens = (0..<24).map { _ in Int32(rng.next() % UInt64(trunk.config.vocabSize)) }
        let targets = tokens.indices.map { $0 % 8 == 7 ? -1 : tokens[($0 + 1) % tokens.count] }
        let hidden = try trunk.inferenceHidden(tokens: tokens, batch: 3, length: 8)
        let head = LMHeadCache(rows: 24, vocab: trunk.config.vocabSize)
        return trunk.lmHeadLogProbs(hidden: hidden, targets: targets, cache: head).map(\.bitPattern)
    }

    /// What each rank of a world of `ranks` sees of `HostWeights.frozen`, and how often it loaded.
    struct Seen: Sendable {
        let weights: [UInt32], logProbs: [UInt32], shared: Bool, writable: Bool, precision: Precision
    }

    func frozenOnEveryRank(ranks: Int, precision: Precision, bf16Only: Bool = false) async throws -> ([Seen], Int) {
        let world = EmbeddedWorld(size: ranks), loads = Counter()
        let config = self.config, made = try self.made()  // built outside: every rank's "file"
        let seen = try await world.run { transport in
            let host = try await transport.hostGroup()
            let trunk = try await HostWeights.frozen(host: host, precision: precision, config: { config }) {
                loads.add()
                return try config.makeModel(weights: made.weights.clone())
            }
            if bf16Only { try await HostWeights.keepOnlyBF16(trunk, host: host) }
            return Seen(
                weights: trunk.weights.array.map(\.bitPattern), logProbs: try Self.logProbs(trunk),
                shared: trunk.weights.holder != nil, writable: trunk.weights.holder?.writable ?? true,
                precision: trunk.precision)
        }
        XCTAssertEqual(world.undelivered, [])
        return (seen, loads.value)
    }

    func testTheFirstRankLoadsAndEveryRankComputesWhatItsOwnTrunkWould() async throws {
        for precision in [Precision.fp32, .bf16] {
            let own = try made()
            own.use(precision, frozen: true)
            let (seen, loads) = try await frozenOnEveryRank(ranks: 3, precision: precision)
            XCTAssertEqual(loads, 1, "\(precision): loaded once for the host")
            XCTAssertEqual(seen.map(\.shared), [true, true, true])
            XCTAssertEqual(seen.map(\.writable), [true, false, false], "the others map it read-only")
            XCTAssertEqual(seen.map(\.precision), [precision, precision, precision])
            for (rank, s) in seen.enumerated() {
                XCTAssertEqual(s.weights, own.weights.array.map(\.bitPattern), "\(precision) rank \(rank)")
                XCTAssertEqual(s.logProbs, try Self.logProbs(own), "\(precision) rank \(rank)")
            }
        }
        XCTAssertEqual(leftInDevShm(), [])
    }

    /// Kept in bf16 only, the segment gives the matrices' fp32 pages back, and every rank still
    /// computes what a bf16-only trunk of its own computes.
    func testBF16OnlyOnASharedTrunk() async throws {
        let own = try made()
        own.use(.bf16, frozen: true)
        own.keepOnlyBF16()
        let (seen, _) = try await frozenOnEveryRank(ranks: 2, precision: .bf16, bf16Only: true)
        for s in seen { XCTAssertEqual(s.logProbs, try Self.logProbs(own)) }
        // The segment's size after the release, from a rank of a world that keeps it.
        let world = EmbeddedWorld(size: 2), made = try made(), config = self.config
        let resident = try await world.run { transport in
            let host = try await transport.hostGroup()
            let trunk = try await HostWeights.frozen(host: host, precision: .bf16, config: { config }) {
                try config.makeModel(weights: made.weights.clone())
            }
            let before = trunk.weights.holder?.residentBytes ?? 0
            try await HostWeights.keepOnlyBF16(trunk, host: host)
            return [before, trunk.weights.holder?.residentBytes ?? 0]
        }
        let matrices = config.bf16OnlyRanges.reduce(0) { $0 + $1.count } * 4
        XCTAssertGreaterThan(matrices, 1 << 20)
        XCTAssertLessThanOrEqual(resident[0][1], resident[0][0] - matrices * 9 / 10, "\(resident)")
        XCTAssertEqual(leftInDevShm(), [])
    }

    func testAFailedLoadStopsEveryRankWithItsReason() async throws {
        let world = EmbeddedWorld(size: 2), config = self.config
        let reasons = try await world.run { transport in
            do {
                _ = try await HostWeights.frozen(
                    host: try await transport.hostGroup(), precision: .fp32,
                    config: {
                        config
                    }
                ) { throw ModelError.input("the file is cut short") }
                return ""
            } catch { return "\(error)" }
        }
        for reason in reasons { XCTAssertTrue(reason.contains("the file is cut short"), reason) }
        XCTAssertTrue(reasons[1].contains("rank 0 of the host"), reasons[1])
        XCTAssertEqual(world.undelivered, [])
        XCTAssertEqual(leftInDevShm(), [])
    }

    /// A trunk every rank built alike is kept once: the others' trunks are rebuilt over the first
    /// rank's segment; a different model on another rank is refused.
    func testShareKeepsOneCopyOfTrunksBuiltAlike() async throws {
        let world = EmbeddedWorld(size: 2), config = self.config, made = try made()
        let seen = try await world.run { transport in
            let mine = try config.makeModel(weights: made.weights.clone())
            mine.use(.bf16, frozen: true)
            let shared = try await HostWeights.share(mine, host: try await transport.hostGroup())
            return [shared.weights.holder == nil ? 0 : 1] + (try Self.logProbs(shared)).map(Int.init)
        }
        made.use(.bf16, frozen: true)
        for s in seen { XCTAssertEqual(s, [1] + (try Self.logProbs(made)).map(Int.init)) }
        let other = GPT2Config(vocabSize: 97, contextLength: 16, channels: 64, layers: 2, heads: 4, eosTokenId: 96)
        let mismatch = try await EmbeddedWorld(size: 2).run { transport in
            do {
                let mine = try (transport.rank == 0 ? config : other).makeModel(weights: nil)
                mine.use(.fp32, frozen: true)
                _ = try await HostWeights.share(mine, host: try await transport.hostGroup())
                return ""
            } catch { return "\(error)" }
        }
        XCTAssertTrue(mismatch[1].contains("ranks of one host load different models"), mismatch[1])
        XCTAssertTrue(mismatch[0].contains("rank 1 of the host could not map"), mismatch[0])
        XCTAssertEqual(leftInDevShm(), [], "the first rank unlinks the name when another rank fails")
    }

    func testOneRankKeepsItsOwnTrunk() async throws {
        let made = try made()
        let trunk = try await HostWeights.frozen(host: nil, precision: .bf16, config: { self.config }) { made }
        XCTAssertNil(trunk.weights.holder)
        XCTAssertEqual(trunk.precision, .bf16)
        XCTAssertTrue(trunk === made)
    }

    /// This process's segments still named in /dev/shm.
    func leftInDevShm() -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/dev/shm")) ?? []
        return names.filter { $0.hasPrefix("\(HostWeights.prefix)\(getpid())-") }
    }
}

private final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func add() { lock.withLock { count += 1 } }
    var value: Int { lock.withLock { count } }
}
