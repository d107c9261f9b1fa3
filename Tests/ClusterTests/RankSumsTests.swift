import Foundation
import XCTest

@testable import Cluster

/// Values summed over ranks are listed once per type (visitSums); the payload is read back by the
/// same list.
final class RankSumsTests: XCTestCase {
    struct Sums: RankSums, Equatable {
        var loss = 0.0, count = 0.0
        var moments = SumOfSquares()
        var named = NamedSums()

        mutating func visitSums(_ visit: (inout Double) -> Void) {
            visit(&loss)
            visit(&count)
            moments.visitSums(visit)
            named.visitSums(visit)
        }
    }

    func testThePayloadRoundTripsInVisitOrder() {
        let sums = Sums(loss: 1.5, count: 2, moments: SumOfSquares([1, 2]), named: NamedSums(["b": 7, "a": 5]))
        XCTAssertEqual(sums.summands, [1.5, 2, 3, 5, 5, 7], "fields in order, then Σx, Σx², then names sorted")
        XCTAssertEqual(sums.replacingSummands(with: sums.summands), sums)
        let doubled = sums.replacingSummands(with: sums.summands.map { 2 * $0 })
        XCTAssertEqual(doubled.named["b"], 14)
        XCTAssertEqual(doubled.moments.squares, 10)
    }

    func testSummedOverAWorldOfOneIsItself() async throws {
        let sums = Sums(loss: 1, count: 1, moments: SumOfSquares([3]), named: NamedSums(["x": 2]))
        let alone = try await sums.summed(over: nil)
        XCTAssertEqual(alone, sums)
        let single = try await sums.summed(over: SingleProcessTransport())
        XCTAssertEqual(single, sums)
    }

    /// Three ranks of an in-process world: every rank gets the field-by-field sums.
    func testSummedOverRanksAddsEveryField() async throws {
        let world = EmbeddedWorld(size: 3)
        let results = try await world.run { t -> Sums in
            let r = Double(t.rank)
            let mine = Sums(loss: r, count: 1, moments: SumOfSquares([r]), named: NamedSums(["route": r * 10]))
            return try await mine.summed(over: t)
        }
        XCTAssertEqual(world.undelivered, [])
        for sums in results {
            XCTAssertEqual(
                sums, Sums(loss: 3, count: 3, moments: SumOfSquares([0, 1, 2]), named: NamedSums(["route": 30])))
        }
    }

    func testMeanAndDeviationOfTheSums() {
        let (mean, std) = SumOfSquares([1, 2, 3, 4]).meanStd(4)
        XCTAssertEqual(mean, 2.5)
        XCTAssertEqual(std, 1.25.squareRoot(), accuracy: 1e-12)
    }
}
