import XCTest

@testable import Cluster

/// The cluster performance model of `rlhf bench scale` on numbers worked by hand.
final class ClusterModelTests: XCTestCase {
    let mib = 1 << 20, gib = 1 << 30

    /// 2 ranks, one message: t(n) = 2α + n/β, so α is half the 8 B time and β the slope to 64 MiB.
    /// 4 ranks in 16 MiB messages: 64 MiB pays 4 × 2·3 latencies, and every rank moves 2·3/4 = 1.5 n.
    func testLinkFittedFromASweepInvertsTheRing() throws {
        let two = try XCTUnwrap(
            LinkCost.fitted(sizes: [8, 64 << 20], seconds: [1e-5, 0.25001], ranks: 2, messageBytes: 64 << 20))
        XCTAssertEqual(two.latency, 5e-6, accuracy: 1e-12)
        XCTAssertEqual(two.bandwidth, Double((64 << 20) - 8) / 0.25, accuracy: 1)
        let four = try XCTUnwrap(
            LinkCost.fitted(
                sizes: [8, 1 << 20, 64 << 20], seconds: [6e-5, 0.01, 0.30024], ranks: 4, messageBytes: 16 << 20))
        XCTAssertEqual(four.latency, 1e-5, accuracy: 1e-12)
        XCTAssertEqual(four.bandwidth, 1.5 * Double((64 << 20) - 8) / 0.3, accuracy: 1)
        // And back: the ring's cost of the sweep's sizes is what was measured.
        for (size, seconds) in [(8, 6e-5), (64 << 20, 0.30024)] {
            XCTAssertEqual(
                ReductionCost.ring(bytes: size, ranks: 4, messageBytes: 16 << 20, link: four), seconds, accuracy: 1e-5)
        }
        XCTAssertNil(
            LinkCost.fitted(sizes: [8, 64], seconds: [0.2, 0.1], ranks: 2, messageBytes: 64), "slower large: no fit")
        XCTAssertNil(
            LinkCost.fitted(sizes: [8, 64], seconds: [0.1, 0.2], ranks: 1, messageBytes: 64), "one rank has no link")
    }

    /// 1 GiB over 4 ranks in 16 MiB messages, α = 0.2 ms, β = 1.25 GB/s (10 Gbit/s):
    /// 64 × 2·3 × 0.0002 = 0.0768 s of latency, 1.5 × 2³⁰ / 1.25e9 = 1.28849 s of bandwidth.
    func testRingAllReduce() {
        let link = LinkCost(latency: 2e-4, bandwidth: 1.25e9)
        let seconds = ReductionCost.ring(bytes: gib, ranks: 4, messageBytes: 16 * mib, link: link)
        XCTAssertEqual(seconds, 0.0768 + 1.5 * Double(gib) / 1.25e9, accuracy: 1e-9)
        XCTAssertEqual(ReductionCost.ring(bytes: gib, ranks: 1, messageBytes: mib, link: link), 0)
        // A partial last message still pays its latencies: 17 MiB in 16 MiB messages is 2 messages.
        let partial = ReductionCost.ring(bytes: 17 * mib, ranks: 2, messageBytes: 16 * mib, link: link)
        XCTAssertEqual(partial, 2 * 2 * 2e-4 + Double(17 * mib) / 1.25e9, accuracy: 1e-12)
    }

    /// 2 hosts × 4 ranks: flat is one ring of 8 over the slow link; hierarchical a ring of 4
    /// within (1 MiB messages) and one of 2 between.
    func testRoutesOverHosts() {
        let within = LinkCost(latency: 1e-5, bandwidth: 8e9), across = LinkCost(latency: 2e-4, bandwidth: 1.25e9)
        let layout = ClusterLayout(hosts: 2, ranksPerHost: 4, threadsPerRank: 1)
        let bytes = 64 * mib
        let flat = ReductionCost.flat(
            bytes: bytes, layout: layout, messageBytes: 16 * mib, within: within, across: across)
        XCTAssertEqual(flat, 2 * 4 * 2e-4 * 7 + 2.0 * 7 / 8 * Double(bytes) / 1.25e9, accuracy: 1e-12)
        let hierarchical = ReductionCost.hierarchical(
            bytes: bytes, layout: layout, messageBytes: 16 * mib, within: within, across: across)
        let inside = 2 * 64 * 1e-5 * 3 + 1.5 * Double(bytes) / 8e9, between = 2 * 4 * 2e-4 + Double(bytes) / 1.25e9
        XCTAssertEqual(hierarchical, inside + between, accuracy: 1e-12)
        // One host: the within link, in the route's 1 MiB messages there.
        let oneHost = ClusterLayout(hosts: 1, ranksPerHost: 4, threadsPerRank: 1)
        XCTAssertEqual(
            ReductionCost.flat(bytes: bytes, layout: oneHost, messageBytes: 16 * mib, within: within, across: across),
            inside, accuracy: 1e-12)
    }

    /// Amdahl: 10 s on one thread and 6 s on two give f = 0.8, so 4 threads take 10 × (0.2 + 0.2).
    func testThreadScaling() {
        let s = ThreadScaling(oneThread: 10, twoThreads: 6)
        XCTAssertEqual(s.parallelFraction, 0.8, accuracy: 1e-12)
        XCTAssertEqual(s.seconds(threads: 4), 4, accuracy: 1e-12)
        XCTAssertEqual(ThreadScaling(oneThread: 10, twoThreads: 11).parallelFraction, 0, "slower: no gain")
        XCTAssertEqual(ThreadScaling(oneThread: 10, twoThreads: 4).parallelFraction, 1, "better than half: clamped")
    }

    func testSplitsOfAHost() {
        let splits = ClusterLayout.splits(hosts: 8, coresPerHost: 32).map { [$0.ranksPerHost, $0.threadsPerRank] }
        XCTAssertEqual(splits, [[32, 1], [16, 2], [8, 4], [4, 8], [2, 16], [1, 32]])
        XCTAssertEqual(ClusterLayout.splits(hosts: 1, coresPerHost: 6).map(\.threadsPerRank), [1, 2])
    }

    func inputs(perUnit: ThreadScaling) -> ScaleInputs {
        ScaleInputs(
            computePerUnit: perUnit, unitsPerCore: 4, gradientBytes: 64 * mib, messageBytes: 16 * mib,
            within: LinkCost(latency: 1e-5, bandwidth: 8e9), across: LinkCost(latency: 2e-4, bandwidth: 1.25e9),
            fixedBytes: 1e9, bytesPerUnit: 1e8, sharedBytes: 5e8)
    }

    /// Weak scaling: a rank of 2 threads takes 8 units; compute 8 × 0.6 s = 4.8 s; efficiency
    /// against 2 × 2 × 2 cores at 1 s per unit; host memory 0.5 GB + 2 × (1 GB + 8 × 0.1 GB).
    func testPredictedStep() {
        let model = inputs(perUnit: ThreadScaling(oneThread: 1, twoThreads: 0.6))
        let layout = ClusterLayout(hosts: 2, ranksPerHost: 2, threadsPerRank: 2)
        let p = model.predict(layout, shape: .flat)
        let reduce = 2 * 4 * 2e-4 * 3 + 1.5 * Double(64 * mib) / 1.25e9
        XCTAssertEqual(p.unitsPerRank, 8)
        XCTAssertEqual(p.computeSeconds, 4.8, accuracy: 1e-12)
        XCTAssertEqual(p.reduceSeconds, reduce, accuracy: 1e-12)
        XCTAssertEqual(p.unitsPerSecond, 32 / (4.8 + reduce), accuracy: 1e-9)
        XCTAssertEqual(p.efficiency, 32 / (4.8 + reduce) / 8, accuracy: 1e-9)
        XCTAssertEqual(p.hostBytes, 5e8 + 2 * (1e9 + 8e8), accuracy: 1)
        let alone = model.predict(ClusterLayout(hosts: 1, ranksPerHost: 1, threadsPerRank: 1), shape: .flat)
        XCTAssertEqual(alone.efficiency, 1, accuracy: 1e-12, "one rank on one core exchanges nothing")
        XCTAssertEqual(model.predict(layout, shape: .flat, units: 3).computeSeconds, 1.8, accuracy: 1e-12)
    }

    /// With a perfect second thread every split computes alike and fewer ranks exchange less
    /// (one rank per host, one all-reduce between the hosts); memory can rule the fastest out.
    func testRecommendationFitsMemory() throws {
        let model = inputs(perUnit: ThreadScaling(oneThread: 1, twoThreads: 0.5))
        let best = try XCTUnwrap(model.recommend(hosts: 4, coresPerHost: 4, hostBytes: 1e12))
        XCTAssertEqual(best.layout.ranksPerHost, 1)
        let serial = inputs(perUnit: ThreadScaling(oneThread: 1, twoThreads: 1))
        let perCore = try XCTUnwrap(serial.recommend(hosts: 4, coresPerHost: 4, hostBytes: 1e12))
        XCTAssertEqual(perCore.layout.ranksPerHost, 4, "no thread gain: one rank per core")
        // 4 ranks need 0.5 + 4 × 1.4 = 6.1 GB, 2 ranks 0.5 + 2 × 1.8 = 4.1 GB.
        let tight = try XCTUnwrap(serial.recommend(hosts: 4, coresPerHost: 4, hostBytes: 5e9))
        XCTAssertEqual(tight.layout.ranksPerHost, 2)
        XCTAssertNil(serial.recommend(hosts: 4, coresPerHost: 4, hostBytes: 1e9))
    }
}
