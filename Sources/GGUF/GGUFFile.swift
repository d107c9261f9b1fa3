import Foundation

/// One tensor's description in a GGUF file. `dimensions` are ggml's ne[0], ne[1], … (ne[0] is the
/// contiguous one); `shape` is the same tensor in PyTorch's order (reversed), as transformers and
/// safetensors name it.
public struct GGUFTensorInfo: Sendable, Equatable {
    public let name: String
    public let dimensions: [Int]
    public let type: GGMLType
    public let offset: Int  // from the start of the data section
    public var shape: [Int] { dimensions.reversed() }
    public var count: Int { dimensions.reduce(1, *) }
    public var byteCount: Int { count / type.blockSize * type.blockBytes }
}

public struct GGUFError: Error, CustomStringConvertible, Equatable {
    public let path: String
    public let reason: String
    public init(path: String, reason: String) {
        self.path = path
        self.reason = reason
    }
    public var description: String { "\(path): \(reason)" }
}

/// A GGUF file (ggml's docs/gguf.md, versions 2 and 3): "GGUF", version, tensor and metadata
/// counts, the metadata key/values, the tensor infos, padding to `general.alignment` (32 by
/// default), then the tensor data. The file is memory-mapped; tensors are converted to Float32 when
/// read.
///
/// Every count, length and offset is checked against the bytes that remain before anything is
/// allocated by it, so a truncated or hostile file gives an error naming the problem, never a
/// crash or a huge allocation.
public final class GGUFFile: @unchecked Sendable {
    public let path: String
    public let version: Int
    /// Metadata in file order (keys are unique).
    public let metadata: [(key: String, value: GGUFValue)]
    public let tensors: [GGUFTensorInfo]
    public let alignment: Int
    private let index: [String: Int]
    private let data: Data
    /// Where the tensor data begins (tensor offsets count from here).
    public let dataStart: Int

    public static let magic: UInt32 = 0x4655_4747  // "GGUF" little-endian

    /// Whether the file at `path` starts with GGUF's magic (how `--model` tells a GGUF file from a
    /// folder or a safetensors file).
    public static func isGGUF(path: String) -> Bool {
        guard let handle = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? handle.close() }
        guard let head = try? handle.read(upToCount: 4), head.count == 4 else { return false }
        return head.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self)) } == magic
    }

    public init(path: String) throws {
        self.path = path
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped) } catch {
            throw GGUFError(path: path, reason: "cannot read: \(error.localizedDescription)")
        }
        self.data = data
        let parsed = try data.withUnsafeBytes {
            raw -> (Int, [(key: String, value: GGUFValue)], [GGUFTensorInfo], Int, Int) in
            var reader = ByteReader(raw, path: path)
            return try Self.parse(&reader)
        }
        (version, metadata, tensors, alignment, dataStart) = parsed
        var index: [String: Int] = [:]
        for (i, t) in tensors.enumerated() { index[t.name] = i }
        self.index = index
    }

    public subscript(key: String) -> GGUFValue? { metadata.first { $0.key == key }?.value }

    public func tensor(_ name: String) -> GGUFTensorInfo? { index[name].map { tensors[$0] } }

    /// Converts tensor `name` into `destination`, which holds `count` floats.
    public func read(_ name: String, into destination: UnsafeMutablePointer<Float>, count: Int) throws {
        guard let t = tensor(name) else { throw GGUFError(path: path, reason: "no tensor '\(name)'") }
        guard t.count == count else {
            throw GGUFError(path: path, reason: "tensor '\(name)' has \(t.count) values, expected \(count)")
        }
        data.withUnsafeBytes { raw in
            t.type.dequantize(
                raw.baseAddress! + dataStart + t.offset, blocks: count / t.type.blockSize, into: destination)
        }
    }

    public func floats(_ name: String) throws -> [Float] {
        guard let t = tensor(name) else { throw GGUFError(path: path, reason: "no tensor '\(name)'") }
        var out = [Float](repeating: 0, count: t.count)
        try out.withUnsafeMutableBufferPointer { try read(name, into: $0.baseAddress!, count: t.count) }
        return out
    }

    // MARK: parsing

    /// GGML_MAX_DIMS.
    static let maxDimensions = 4
    /// Arrays deeper than this are refused (the format allows nesting; files nest one level).
    static let maxNesting = 8

    private static func parse(_ r: inout ByteReader) throws -> (
        Int, [(key: String, value: GGUFValue)], [GGUFTensorInfo], Int, Int
    ) {
        let version = try header(&r)
        let tensorCount = try r.count("tensor count", minimumItemBytes: 8 + 4 + 8 + 4 + 8)
        let keyCount = try r.count("metadata count", minimumItemBytes: 8 + 4 + 1)
        var metadata: [(key: String, value: GGUFValue)] = []
        var keys = Set<String>()
        for i in 0..<keyCount {
            let key = try r.string("metadata key \(i)")
            guard keys.insert(key).inserted else { throw r.fail("metadata key '\(key)' appears twice") }
            let rawType = try r.u32()
            guard let type = GGUFValueType(rawValue: rawType) else {
                throw r.fail("metadata '\(key)': unknown value type \(rawType)")
            }
            metadata.append((key, try r.value(type, of: key, depth: 0)))
        }
        var alignment = 32
        if let a = metadata.first(where: { $0.key == "general.alignment" })?.value {
            guard case .uint32(let v) = a, v > 0, v & (v - 1) == 0 else {
                throw r.fail("general.alignment must be a power of two of type uint32, got \(a.summary) (\(a.type))")
            }
            alignment = Int(v)
        }
        let infos = try (0..<tensorCount).map { i in try tensorInfo(&r, index: i) }
        let dataStart = (r.position + alignment - 1) / alignment * alignment
        let dataSize = r.total - dataStart
        guard dataSize >= 0 || tensorCount == 0 else { throw r.fail("truncated: the file ends before its tensor data") }
        let tensors = try checkedTensors(infos, alignment: alignment, dataSize: dataSize, r)
        return (version, metadata, tensors, alignment, dataStart)
    }

    /// The magic and the version (2 or 3).
    private static func header(_ r: inout ByteReader) throws -> Int {
        guard r.remaining >= 4 else {
            throw r.fail("truncated: \(r.remaining) bytes, but a GGUF file starts with the 4-byte magic \"GGUF\"")
        }
        guard try r.u32() == magic else { throw r.fail("not a GGUF file (the first 4 bytes are not \"GGUF\")") }
        let version = Int(try r.u32())
        guard version == 2 || version == 3 else {
            throw r.fail(
                "GGUF version \(version) is not supported (2 and 3; version 1 files predate August 2023, "
                    + "re-convert them)")
        }
        return version
    }

    /// Tensor `index`'s name, dimensions, raw type and offset, the dimensions bounded.
    private static func tensorInfo(_ r: inout ByteReader, index i: Int) throws -> (String, [Int], UInt32, UInt64) {
        let name = try r.string("tensor \(i)'s name")
        let rank = Int(try r.u32())
        guard (1...maxDimensions).contains(rank) else {
            throw r.fail("tensor '\(name)': \(rank) dimensions (1 to \(maxDimensions) allowed)")
        }
        var dims: [Int] = []
        var elements = 1
        for _ in 0..<rank {
            let d = try r.u64()
            guard d >= 1, d < 1 << 40 else { throw r.fail("tensor '\(name)': dimension \(d) out of range") }
            let (product, overflow) = elements.multipliedReportingOverflow(by: Int(d))
            guard !overflow, product < 1 << 40 else {
                throw r.fail("tensor '\(name)': \(dims + [Int(d)]) has too many elements")
            }
            elements = product
            dims.append(Int(d))
        }
        return (name, dims, try r.u32(), try r.u64())
    }

    /// The tensors, each checked: a unique name, a type this reader converts, whole blocks per
    /// row, an aligned offset, and bytes inside the data section.
    private static func checkedTensors(
        _ infos: [(String, [Int], UInt32, UInt64)], alignment: Int, dataSize: Int,
        _ r: ByteReader
    ) throws -> [GGUFTensorInfo] {
        var tensors: [GGUFTensorInfo] = []
        var names = Set<String>()
        for (name, dims, rawType, offset) in infos {
            guard names.insert(name).inserted else { throw r.fail("tensor '\(name)' appears twice") }
            guard let type = GGMLType(rawValue: rawType) else {
                throw r.fail(
                    "tensor '\(name)' has type \(GGMLType.describe(rawType)), which this reader does not convert "
                        + "(F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K)")
            }
            guard dims[0] % type.blockSize == 0 else {
                throw r.fail(
                    "tensor '\(name)': rows of \(dims[0]) values are not whole \(type.name) blocks of "
                        + "\(type.blockSize)")
            }
            guard offset % UInt64(alignment) == 0 else {
                throw r.fail("tensor '\(name)': offset \(offset) is not a multiple of the alignment \(alignment)")
            }
            let info = GGUFTensorInfo(name: name, dimensions: dims, type: type, offset: Int(clamping: offset))
            guard offset <= UInt64(max(dataSize, 0)), info.byteCount <= max(dataSize, 0) - info.offset else {
                throw r.fail(
                    "tensor '\(name)': \(info.byteCount) bytes at offset \(offset) lie outside the data section of "
                        + "\(max(dataSize, 0)) bytes (truncated?)")
            }
            tensors.append(info)
        }
        return tensors
    }
}

/// A bounds-checked little-endian cursor over the mapped file.
struct ByteReader {
    let raw: UnsafeRawBufferPointer
    let path: String
    var position = 0
    init(_ raw: UnsafeRawBufferPointer, path: String) {
        self.raw = raw
        self.path = path
    }

    var total: Int { raw.count }
    var remaining: Int { raw.count - position }
    func fail(_ reason: String) -> GGUFError { GGUFError(path: path, reason: reason) }

    mutating func take<T: FixedWidthInteger>(_: T.Type) throws -> T {
        let size = MemoryLayout<T>.size
        guard remaining >= size else {
            throw fail("truncated at byte \(position): expected \(size) more bytes, the file has \(remaining)")
        }
        defer { position += size }
        return T(littleEndian: raw.loadUnaligned(fromByteOffset: position, as: T.self))
    }
    mutating func u32() throws -> UInt32 { try take(UInt32.self) }
    mutating func u64() throws -> UInt64 { try take(UInt64.self) }

    /// A uint64 count of items of at least `minimumItemBytes` each, refused when the rest of the
    /// file could not hold them.
    mutating func count(_ what: String, minimumItemBytes: Int) throws -> Int {
        let n = try u64()
        guard n <= UInt64(remaining / max(minimumItemBytes, 1)) else {
            throw fail("\(what) \(n) cannot fit in the \(remaining) bytes that remain (truncated or corrupt)")
        }
        return Int(n)
    }

    mutating func string(_ what: String) throws -> String {
        let n = try u64()
        guard n <= UInt64(remaining) else {
            throw fail("\(what): string length \(n) runs past the end of the file (\(remaining) bytes remain)")
        }
        let bytes = UnsafeRawBufferPointer(rebasing: raw[position..<(position + Int(n))])
        position += Int(n)
        guard let s = String(validating: bytes, as: UTF8.self) else { throw fail("\(what) is not valid UTF-8") }
        return s
    }

    mutating func value(_ type: GGUFValueType, of key: String, depth: Int) throws -> GGUFValue {
        switch type {
        case .uint8: return .uint8(try take(UInt8.self))
        case .int8: return .int8(try take(Int8.self))
        case .uint16: return .uint16(try take(UInt16.self))
        case .int16: return .int16(try take(Int16.self))
        case .uint32: return .uint32(try take(UInt32.self))
        case .int32: return .int32(try take(Int32.self))
        case .float32: return .float32(Float(bitPattern: try take(UInt32.self)))
        case .bool:
            let b = try take(UInt8.self)
            guard b <= 1 else { throw fail("metadata '\(key)': bool byte \(b) is neither 0 nor 1") }
            return .bool(b == 1)
        case .string: return .string(try string("metadata '\(key)'"))
        case .uint64: return .uint64(try take(UInt64.self))
        case .int64: return .int64(try take(Int64.self))
        case .float64: return .float64(Double(bitPattern: try take(UInt64.self)))
        case .array:
            guard depth < GGUFFile.maxNesting else {
                throw fail("metadata '\(key)': arrays nested deeper than \(GGUFFile.maxNesting)")
            }
            let rawType = try u32()
            guard let element = GGUFValueType(rawValue: rawType) else {
                throw fail("metadata '\(key)': array of unknown value type \(rawType)")
            }
            let n = try count(
                "metadata '\(key)': array length", minimumItemBytes: element.fixedSize ?? (element == .string ? 8 : 12))
            var items: [GGUFValue] = []
            items.reserveCapacity(n)
            for _ in 0..<n { items.append(try value(element, of: key, depth: depth + 1)) }
            return .array(element, items)
        }
    }
}
