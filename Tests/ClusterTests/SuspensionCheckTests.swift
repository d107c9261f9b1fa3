import Foundation
import XCTest

@testable import Cluster

/// The heartbeat's check for a stop outside its wait: a long gap between two checks is a
/// suspension once a SIGCONT is counted, even when the handler ran only after the check after it.
final class SuspensionCheckTests: XCTestCase {
    let start = Date(timeIntervalSince1970: 1_000)

    func testAGapWithASIGCONTIsTheStop() {
        var check = SuspensionCheck(time: start, continued: 0)
        XCTAssertEqual(check.stoppedFor(now: start + 0.25, continued: 0), 0)
        XCTAssertEqual(check.stoppedFor(now: start + 3.25, continued: 1), 3, accuracy: 1e-9)
        XCTAssertEqual(check.stoppedFor(now: start + 3.5, continued: 1), 0, "reported once")
    }

    /// The replay that failed about 1 run in 50: the count was read before the handler ran.
    func testACountThatMovesJustAfterTheGapStillExplainsIt() {
        var check = SuspensionCheck(time: start, continued: 4)
        XCTAssertEqual(check.stoppedFor(now: start + 3, continued: 4), 0)
        XCTAssertEqual(check.stoppedFor(now: start + 3.25, continued: 5), 3, accuracy: 1e-9)
        XCTAssertEqual(check.stoppedFor(now: start + 3.5, continued: 5), 0)
    }

    /// A slow write moves no count; a SIGCONT long after it does not report it.
    func testASlowWriteAloneIsNoSuspension() {
        var check = SuspensionCheck(time: start, continued: 0)
        XCTAssertEqual(check.stoppedFor(now: start + 3, continued: 0), 0)
        XCTAssertEqual(check.stoppedFor(now: start + 3.25, continued: 0), 0)
        XCTAssertEqual(check.stoppedFor(now: start + 5, continued: 1), 0, "kept for a second only")
    }

    /// After a stop reported from the late wait, the count moving later reports nothing more.
    func testAReportedStopIsNotReportedAgain() {
        var check = SuspensionCheck(time: start, continued: 0)
        XCTAssertEqual(check.stoppedFor(now: start + 3, continued: 0), 0)
        check.reported()
        XCTAssertEqual(check.stoppedFor(now: start + 3.25, continued: 1), 0)
    }
}
