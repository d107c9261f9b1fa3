import Foundation
import Kernels
import XCTest

/// Shared segments (frozen weights once per host): what the creator writes every mapping reads,
/// the memory is the machine's once, pages given back read as zero everywhere, and the name goes
/// when asked (or when its creator has died) while the memory stays with the mappings.
final class SharedSegmentTests: XCTestCase {
    func name() -> String { "/rlhf-test-\(getpid())-\(UUID().uuidString.prefix(8))" }

    func testAMappingReadsWhatTheCreatorWrote() throws {
        let name = name(), bytes = 3 * 4096 + 100
        let creator = try SharedSegment.create(name: name, bytes: bytes)
        defer { creator.unlink() }
        let written = FloatBuffer(in: creator, offset: 0, count: bytes / 4)
        for i in 0..<written.count { written[i] = Float(i) * 0.5 }
        let reader = try SharedSegment.open(name: name, bytes: bytes)
        XCTAssertFalse(reader.writable)
        XCTAssertTrue(creator.writable)
        let read = FloatBuffer(in: reader, offset: 0, count: bytes / 4)
        XCTAssertNotEqual(read.pointer, written.pointer, "two mappings")
        XCTAssertEqual(read.array, written.array)
        written[7] = -1  // one memory: a later write shows in the other mapping
        XCTAssertEqual(read[7], -1)
        XCTAssertThrowsError(try SharedSegment.open(name: name, bytes: bytes + 4)) {
            XCTAssertTrue("\($0)".contains("expected"), "\($0)")
        }
    }

    func testTheMemoryOutlivesTheName() throws {
        let name = name()
        let creator = try SharedSegment.create(name: name, bytes: 4096)
        let reader = try SharedSegment.open(name: name, bytes: 4096)
        FloatBuffer(in: creator, offset: 0, count: 1024)[3] = 42
        creator.unlink()
        XCTAssertThrowsError(try SharedSegment.open(name: name, bytes: 4096)) {
            XCTAssertTrue("\($0)".contains("cannot open"), "\($0)")
        }
        XCTAssertEqual(FloatBuffer(in: reader, offset: 0, count: 1024)[3], 42)
    }

    /// The creator gives whole pages back for every process (MADV_REMOVE); a reader's release
    /// changes nothing; the floats around the pages become NaN as in a buffer of one's own.
    func testReleasedPagesLeaveTheMachine() throws {
        let name = name(), pages = 64, page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let creator = try SharedSegment.create(name: name, bytes: pages * page)
        defer { creator.unlink() }
        let reader = try SharedSegment.open(name: name, bytes: pages * page)
        let mine = FloatBuffer(in: creator, offset: 0, count: pages * page / 4)
        let theirs = FloatBuffer(in: reader, offset: 0, count: pages * page / 4)
        for i in 0..<mine.count { mine[i] = 1 }
        let before = creator.residentBytes
        XCTAssertGreaterThanOrEqual(before, pages * page)
        theirs.releasePages(10..<(mine.count - 10))
        XCTAssertEqual(creator.residentBytes, before, "a read-only mapping gives nothing back")
        XCTAssertEqual(theirs[10], 1)
        mine.releasePages(10..<(mine.count - 10))
        XCTAssertLessThanOrEqual(creator.residentBytes, before - (pages - 2) * page)
        XCTAssertEqual(theirs[page / 4 + 5], 0, "a released page reads as zero in every mapping")
        XCTAssertTrue(theirs[10].isNaN)
        XCTAssertEqual(theirs[9], 1)
        XCTAssertEqual(theirs[mine.count - 10], 1)
    }

    /// A segment left by a process that is gone is removed; one whose creator lives is kept.
    func testStaleSegmentsOfDeadProcessesAreRemoved() throws {
        let child = Process()
        child.executableURL = URL(fileURLWithPath: "/bin/true")
        try child.run()
        child.waitUntilExit()
        let prefix = "rlhf-test-stale-"
        let dead = "/\(prefix)\(child.processIdentifier)-1", alive = "/\(prefix)\(getpid())-1"
        let left = try SharedSegment.create(name: dead, bytes: 4096)
        let live = try SharedSegment.create(name: alive, bytes: 4096)
        defer { live.unlink() }
        SharedSegment.removeStale(prefix: prefix)
        XCTAssertThrowsError(try SharedSegment.open(name: dead, bytes: 4096))
        XCTAssertNoThrow(try SharedSegment.open(name: alive, bytes: 4096))
        withExtendedLifetime(left) {}
    }

    /// More than /dev/shm can hold is an error naming /dev/shm and the way out, not a SIGBUS.
    func testTooLargeASegmentIsAnError() {
        let name = name()
        XCTAssertThrowsError(try SharedSegment.create(name: name, bytes: 1 << 50)) {
            XCTAssertTrue("\($0)".contains("/dev/shm"), "\($0)")
            XCTAssertTrue("\($0)".contains("cluster.share_weights"), "\($0)")
        }
        XCTAssertThrowsError(try SharedSegment.open(name: name, bytes: 4096), "the failed segment was unlinked")
    }
}
