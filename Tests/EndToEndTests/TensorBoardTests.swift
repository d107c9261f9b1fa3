import Foundation
import XCTest

@testable import Runs

/// Every stage's scalars as TensorBoard events beside metrics.jsonl. The committed pair in
/// Fixtures/tensorboard came from a real run and was read by the tensorboard package
/// (Fixtures/make_tensorboard_fixture.py: every scalar and step equal to metrics.jsonl).
final class TensorBoardTests: CLITestCase {
    struct Event {
        var wallTime = 0.0, step = 0, fileVersion: String?, scalars: [String: Float] = [:], sessionStart = false
    }

    var fixtures: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/tensorboard").path
    }

    /// TFRecords (CRCs checked) of Event protobufs, decoded as far as scalars and session logs go.
    func events(_ data: [UInt8]) throws -> [Event] {
        var out: [Event] = [], i = 0
        func u32(_ at: Int) -> UInt32 { data[at..<(at + 4)].reversed().reduce(0) { $0 << 8 | UInt32($1) } }
        while i < data.count {
            let length = Int(data[i..<(i + 8)].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
            XCTAssertEqual(u32(i + 8), CRC32C.masked(Array(data[i..<(i + 8)])), "length CRC at \(i)")
            let body = Array(data[(i + 12)..<(i + 12 + length)])
            XCTAssertEqual(u32(i + 12 + length), CRC32C.masked(body), "data CRC at \(i)")
            out.append(try decode(body))
            i += 16 + length
        }
        return out
    }

    func decode(_ b: [UInt8]) throws -> Event {
        var e = Event()
        try fields(b) { field, wire, value, bytes in
            switch (field, wire) {
            case (1, 1): e.wallTime = Double(bitPattern: value)
            case (2, 0): e.step = Int(value)
            case (3, 2): e.fileVersion = String(decoding: bytes, as: UTF8.self)
            case (5, 2):
                try fields(bytes) { _, _, _, valueBytes in
                    var tag = "", number: Float = .nan
                    try fields(valueBytes) { f, w, v, s in
                        if f == 1 && w == 2 { tag = String(decoding: s, as: UTF8.self) }
                        if f == 2 && w == 5 { number = Float(bitPattern: UInt32(v)) }
                    }
                    e.scalars[tag] = number
                }
            case (6, 2): try fields(bytes) { f, _, v, _ in if f == 1 && v == 1 { e.sessionStart = true } }
            default: XCTFail("unexpected field \(field) wire \(wire)")
            }
        }
        return e
    }

    func fields(_ b: [UInt8], _ visit: (Int, Int, UInt64, [UInt8]) throws -> Void) throws {
        var i = 0
        func varint() -> UInt64 {
            var v: UInt64 = 0, shift: UInt64 = 0
            while true {
                let x = b[i]
                i += 1
                v |= UInt64(x & 0x7F) << shift
                shift += 7
                if x < 0x80 { return v }
            }
        }
        while i < b.count {
            let key = varint(), field = Int(key >> 3), wire = Int(key & 7)
            switch wire {
            case 0: try visit(field, wire, varint(), [])
            case 1:
                let v = b[i..<(i + 8)].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
                i += 8
                try visit(field, wire, v, [])
            case 5:
                let v = b[i..<(i + 4)].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
                i += 4
                try visit(field, wire, v, [])
            case 2:
                let n = Int(varint())
                let s = Array(b[i..<(i + n)])
                i += n
                try visit(field, wire, 0, s)
            default: throw XCTSkip("wire type \(wire)")
            }
        }
    }

    func metrics(_ path: String) throws -> [[String: Any]] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map {
            try XCTUnwrap(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
    }

    /// Scalars and steps of an events file equal metrics.jsonl's numbers (as float32).
    func assertEventsMatch(
        _ events: [Event], _ lines: [[String: Any]], file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertEqual(events.first?.fileVersion, "brain.Event:2", file: file, line: line)
        let scalarEvents = events.filter { !$0.scalars.isEmpty }
        XCTAssertEqual(scalarEvents.count, lines.count, file: file, line: line)
        for (e, m) in zip(scalarEvents, lines) {
            XCTAssertEqual(e.step, m["step"] as? Int, file: file, line: line)
            for (key, value) in m where key != "step" {
                if let d = value as? Double { XCTAssertEqual(e.scalars[key], Float(d), key, file: file, line: line) }
            }
        }
    }

    /// Our reader agrees with tensorboard's on the committed file, and our writer, given the same
    /// scalars and clock, writes the same bytes.
    func testEventsAreTheBytesTensorBoardRead() throws {
        let data = try [UInt8](Data(contentsOf: URL(fileURLWithPath: fixtures + "/events.tfevents")))
        let recorded = try events(data), lines = try metrics(fixtures + "/metrics.jsonl")
        XCTAssertGreaterThan(lines.count, 6)
        assertEventsMatch(recorded, lines)
        var clock = recorded.map(\.wallTime).makeIterator()
        let writer = TensorBoardEvents(directory: directory + "/tb") { clock.next() ?? 0 }
        for m in lines { try writer.append(m) }
        let written = try [UInt8](Data(contentsOf: URL(fileURLWithPath: try XCTUnwrap(writer.path))))
        XCTAssertTrue(
            written == data,
            "the events file differs from the one tensorboard read (\(written.count) vs \(data.count) bytes)")
        // A resumed run marks where it restarted, so TensorBoard drops the older file's later steps.
        try writer.restart(at: 4)
        let last = try XCTUnwrap(try events(try [UInt8](Data(contentsOf: URL(fileURLWithPath: writer.path!)))).last)
        XCTAssertTrue(last.sessionStart)
        XCTAssertEqual(last.step, 4)
    }

    /// A run writes the events file beside metrics.jsonl, with the same scalars.
    func testTrainingWritesEventsBesideMetrics() throws {
        let out = directory + "/run"
        try run([
            "sft", "data.task=arith", "train.steps=4", "train.batch_size=8", "train.micro_batch_size=8", "eval.every=2",
            "eval.max_examples=8", "log.every=1", "out=\(out)",
        ])
        let files = try FileManager.default.contentsOfDirectory(atPath: out).filter {
            $0.hasPrefix("events.out.tfevents.")
        }
        XCTAssertEqual(files.count, 1)
        let recorded = try events(try [UInt8](Data(contentsOf: URL(fileURLWithPath: out + "/" + files[0]))))
        assertEventsMatch(recorded, try metrics(out + "/metrics.jsonl"))
        XCTAssertNotNil(recorded.first { $0.scalars["loss"] != nil && $0.step == 4 })
        XCTAssertNotNil(recorded.first { $0.scalars["exact_match"] != nil && $0.step == 2 })
    }
}
