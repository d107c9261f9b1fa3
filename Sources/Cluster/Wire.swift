import Foundation

/// The binary encoding of messages between ranks: a version byte, then fields in order as
/// little-endian integers and raw Float32/Int32 buffers (no JSON: rollouts are mostly tensors).
/// A reader checks the version and every length against the bytes actually present.
public let wireVersion: UInt8 = 2

public struct WireWriter {
    public private(set) var data = Data([wireVersion])
    public init() {}

    public mutating func int(_ v: Int) { withUnsafeBytes(of: Int64(v).littleEndian) { data.append(contentsOf: $0) } }
    public mutating func uint64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { data.append(contentsOf: $0) } }
    public mutating func float(_ v: Float) {
        withUnsafeBytes(of: v.bitPattern.littleEndian) { data.append(contentsOf: $0) }
    }
    public mutating func bool(_ v: Bool) { data.append(v ? 1 : 0) }
    public mutating func string(_ s: String) {
        let b = Array(s.utf8)
        int(b.count)
        data.append(contentsOf: b)
    }
    public mutating func floats(_ v: [Float]) {
        int(v.count)
        for x in v { withUnsafeBytes(of: x.bitPattern.littleEndian) { data.append(contentsOf: $0) } }
    }
    public mutating func int32s(_ v: [Int32]) {
        int(v.count)
        for x in v { withUnsafeBytes(of: x.littleEndian) { data.append(contentsOf: $0) } }
    }
    public mutating func sequences(_ v: [[Int32]]) {
        int(v.count)
        for s in v { int32s(s) }
    }
    public mutating func floatRows(_ v: [[Float]]) {
        int(v.count)
        for s in v { floats(s) }
    }
}

public struct WireReader {
    let data: Data
    var offset: Int

    public init(_ data: Data) throws {
        guard let version = data.first else { throw TransportError("empty message") }
        guard version == wireVersion else {
            throw TransportError("message version \(version); this build speaks \(wireVersion)")
        }
        self.data = data
        offset = data.startIndex + 1
    }

    mutating func take(_ n: Int) throws -> Data {
        guard n >= 0, offset + n <= data.endIndex else {
            throw TransportError(
                "message truncated: \(n) bytes wanted at \(offset - data.startIndex), \(data.count) in all")
        }
        defer { offset += n }
        return data.subdata(in: offset..<(offset + n))
    }
    mutating func fixed<T: FixedWidthInteger>(_: T.Type) throws -> T {
        let bytes = try take(MemoryLayout<T>.size)
        return T(littleEndian: bytes.withUnsafeBytes { $0.loadUnaligned(as: T.self) })
    }

    public mutating func int() throws -> Int { Int(try fixed(Int64.self)) }
    public mutating func uint64() throws -> UInt64 { try fixed(UInt64.self) }
    public mutating func float() throws -> Float { Float(bitPattern: try fixed(UInt32.self)) }
    public mutating func bool() throws -> Bool { try take(1).first! != 0 }
    public mutating func count(elementSize: Int) throws -> Int {
        let n = try int()
        guard n >= 0, n <= (data.endIndex - offset) / max(elementSize, 1) else {
            throw TransportError("message length \(n) exceeds what remains")
        }
        return n
    }
    public mutating func string() throws -> String {
        String(decoding: try take(try count(elementSize: 1)), as: UTF8.self)
    }
    public mutating func floats() throws -> [Float] {
        let n = try count(elementSize: 4)
        return try take(4 * n).withUnsafeBytes { raw in
            (0..<n).map {
                Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self)))
            }
        }
    }
    public mutating func int32s() throws -> [Int32] {
        let n = try count(elementSize: 4)
        return try take(4 * n).withUnsafeBytes { raw in
            (0..<n).map { Int32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self)) }
        }
    }
    public mutating func sequences() throws -> [[Int32]] {
        try (0..<(try count(elementSize: 8))).map { _ in try int32s() }
    }
    public mutating func floatRows() throws -> [[Float]] {
        try (0..<(try count(elementSize: 8))).map { _ in try floats() }
    }
    public var isAtEnd: Bool { offset == data.endIndex }
}
