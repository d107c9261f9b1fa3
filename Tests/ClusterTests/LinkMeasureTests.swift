import XCTest

@testable import Cluster

/// The gradient message size read off an all-reduce sweep (`LinkMeasure.sizes`: 8 B, 1, 4, 16, 64 MiB).
final class LinkMeasureTests: XCTestCase {
    /// A sweep measured between two namespace hosts over TCP whose ranks shared one core: a fixed ~19 ms
    /// per message up to 4 MiB, then bandwidth; 16 MiB moves the most bytes per second.
    func testAFixedCostPerMessageGivesLargeMessages() {
        let link = LinkMeasure(seconds: [0.00001, 0.01908, 0.01943, 0.05509, 0.20339])
        XCTAssertEqual(link.bucketBytes, 64 << 20, "64 MiB: 330 MB/s, 16 MiB: 305 MB/s (92%)")
        let measured = LinkMeasure(seconds: [0.00001, 0.01879, 0.02057, 0.05982, 0.24597])
        XCTAssertEqual(measured.bucketBytes, 16 << 20, "16 MiB: 280 MB/s, 64 MiB: 273 MB/s")
    }

    /// Shared memory (or a fast link): 1 MiB already moves ≥ 95% of the best rate.
    func testAFastLinkKeepsOneMiB() {
        let link = LinkMeasure(seconds: [0.000002, 0.0002, 0.0008, 0.0032, 0.0128])
        XCTAssertEqual(link.bucketBytes, 1 << 20)
    }

    func testTheSummaryListsEverySize() {
        let link = LinkMeasure(seconds: [0.00001, 0.01908, 0.01943, 0.05509, 0.20339])
        XCTAssertEqual(
            link.summary, "8 B 0.01 ms, 1 MiB 19.08 ms, 4 MiB 19.43 ms, 16 MiB 55.09 ms, 64 MiB 203.39 ms")
    }
}
