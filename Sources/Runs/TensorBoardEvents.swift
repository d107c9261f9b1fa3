import Config
import Foundation

/// Scalars as TensorBoard reads them (`tensorboard --logdir runs`): an events file
/// (`events.out.tfevents.<time>.<host>.<pid>`) of TFRecords, each holding a serialised
/// `tensorflow.Event` protobuf (tensorflow/core/util/event.proto, summary.proto). Written by hand
/// — a record is a little-endian length, its masked CRC-32C, the bytes and their masked CRC-32C
/// (tensorflow/core/lib/io/record_writer.cc) — so no TensorFlow or protobuf library is needed.
///
/// One file per writer; a resumed run first writes a SessionLog START at the step it resumes
/// from, on which TensorBoard's Python loader drops the earlier file's later steps, as
/// metrics.jsonl is truncated to the checkpoint (the Rust data server ignores SessionLog and
/// replaces a tag's points only when the tag is logged again at an earlier step).
public final class TensorBoardEvents: @unchecked Sendable {
    public let directory: String
    private let clock: () -> Double
    private var handle: FileHandle?
    public private(set) var path: String?

    /// `clock`: seconds since 1970 for each event's wall_time (injectable for tests).
    public init(directory: String, clock: @escaping () -> Double = { Date().timeIntervalSince1970 }) {
        self.directory = directory
        self.clock = clock
    }

    deinit { try? handle?.close() }

    private static let serialLock = NSLock()
    nonisolated(unsafe) private static var serial = 0
    private static func nextSerial() -> Int {
        serialLock.lock()
        defer { serialLock.unlock() }
        serial += 1
        return serial
    }

    /// Every number of a metrics.jsonl object (but `step`) as a scalar at its step.
    public func append(_ metrics: [String: Any]) throws {
        guard let step = metrics["step"] as? Int else { return }
        let values: [(String, Float)] = metrics.keys.sorted().compactMap { key in
            guard key != "step" else { return nil }
            switch metrics[key] {
            case let d as Double: return (key, Float(d))
            case let f as Float: return (key, f)
            case let i as Int: return (key, Float(i))
            default: return nil  // text, flags and lists stay in metrics.jsonl only
            }
        }
        guard !values.isEmpty else { return }
        if handle == nil { try open() }  // the file's first event is older than any scalar
        var summary = Protobuf()
        for (tag, value) in values {
            var v = Protobuf()
            v.string(1, tag)
            v.float(2, value)
            summary.message(1, v)
        }
        var event = Protobuf()
        event.double(1, clock())
        event.varint(2, UInt64(bitPattern: Int64(step)))
        event.message(5, summary)
        try write(event.bytes)
    }

    /// Tells TensorBoard that the run restarted at `step` (SessionLog START): scalars of earlier
    /// files at this step or later are dropped, as metrics.jsonl drops them.
    public func restart(at step: Int) throws {
        if handle == nil { try open() }
        var log = Protobuf()
        log.varint(1, 1)  // SessionStatus.START
        var event = Protobuf()
        event.double(1, clock())
        event.varint(2, UInt64(bitPattern: Int64(step)))
        event.message(6, log)
        try write(event.bytes)
    }

    private func write(_ record: [UInt8]) throws {
        if handle == nil { try open() }
        try handle!.write(contentsOf: Data(Self.frame(record)))
    }

    /// Creates the file and writes the first event, file_version "brain.Event:2".
    private func open() throws {
        let time = clock()
        let host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "host"
        // Unique within the process too: two writers to one folder in the same second never share a file.
        let name = "events.out.tfevents.\(Int(time)).\(host).\(getpid()).\(Self.nextSerial())"
        let file = (directory as NSString).appendingPathComponent(name)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        guard FileManager.default.createFile(atPath: file, contents: nil), let h = FileHandle(forWritingAtPath: file)
        else {
            throw TrainingError("\(file): cannot create the TensorBoard events file")
        }
        handle = h
        path = file
        var first = Protobuf()
        first.double(1, time)
        first.string(3, "brain.Event:2")
        try h.write(contentsOf: Data(Self.frame(first.bytes)))
    }

    /// A TFRecord: length (u64), masked CRC-32C of the length, the data, masked CRC-32C of the data.
    static func frame(_ data: [UInt8]) -> [UInt8] {
        var length: [UInt8] = []
        withUnsafeBytes(of: UInt64(data.count).littleEndian) { length.append(contentsOf: $0) }
        func crc(_ bytes: [UInt8]) -> [UInt8] { withUnsafeBytes(of: CRC32C.masked(bytes).littleEndian) { Array($0) } }
        return length + crc(length) + data + crc(data)
    }
}

/// The few protobuf encodings an Event needs (protobuf.dev "Encoding"): a key varint
/// (field << 3 | wire type), then a varint, 8 or 4 little-endian bytes, or a length and bytes.
struct Protobuf {
    var bytes: [UInt8] = []
    mutating func rawVarint(_ v: UInt64) {
        var v = v
        while v >= 0x80 {
            bytes.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }
    mutating func varint(_ field: Int, _ v: UInt64) {
        rawVarint(UInt64(field << 3))
        rawVarint(v)
    }
    mutating func double(_ field: Int, _ v: Double) {
        rawVarint(UInt64(field << 3 | 1))
        withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes.append(contentsOf: $0) }
    }
    mutating func float(_ field: Int, _ v: Float) {
        rawVarint(UInt64(field << 3 | 5))
        withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes.append(contentsOf: $0) }
    }
    mutating func lengthDelimited(_ field: Int, _ data: [UInt8]) {
        rawVarint(UInt64(field << 3 | 2))
        rawVarint(UInt64(data.count))
        bytes += data
    }
    mutating func string(_ field: Int, _ s: String) { lengthDelimited(field, Array(s.utf8)) }
    mutating func message(_ field: Int, _ m: Protobuf) { lengthDelimited(field, m.bytes) }
}

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), masked as TFRecords store it.
enum CRC32C {
    static let table: [UInt32] = (0..<256).map { i in
        var c = UInt32(i)
        for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
        return c
    }

    static func checksum(_ bytes: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes { c = table[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        return c ^ 0xFFFF_FFFF
    }

    /// ((crc >> 15) | (crc << 17)) + 0xa282ead8 (tensorflow/core/lib/hash/crc32c.h `Mask`).
    static func masked(_ bytes: [UInt8]) -> UInt32 {
        let c = checksum(bytes)
        return ((c >> 15) | (c << 17)) &+ 0xA282_EAD8
    }
}
