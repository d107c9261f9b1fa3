import Foundation

/// Writes GGUF version 3 files (ggml's docs/gguf.md): the header, the metadata in the order added,
/// the tensor infos, then each tensor's data at a multiple of the alignment. Tensors are given as
/// Float32 and stored as F32, F16 or Q8_0, quantised as ggml's reference code does.
public struct GGUFWriter {
    public private(set) var metadata: [(key: String, value: GGUFValue)] = []
    private var tensors: [(info: GGUFTensorInfo, bytes: [UInt8])] = []
    /// GGUF's default alignment (general.alignment is not written, so readers assume it).
    public let alignment = 32
    private var dataSize = 0

    public init() {}

    /// Adds (or replaces) a metadata key.
    public mutating func set(_ key: String, _ value: GGUFValue) {
        if let i = metadata.firstIndex(where: { $0.key == key }) {
            metadata[i].value = value
        } else {
            metadata.append((key, value))
        }
    }

    /// Adds a tensor of PyTorch shape `shape` (stored reversed, as ggml's ne) from `values`.
    public mutating func addTensor(name: String, shape: [Int], values: UnsafeBufferPointer<Float>, type: GGMLType)
        throws
    {
        guard !tensors.contains(where: { $0.info.name == name }) else {
            throw GGUFError(path: name, reason: "tensor added twice")
        }
        let dimensions = Array(shape.reversed())
        guard (1...GGUFFile.maxDimensions).contains(dimensions.count), dimensions.allSatisfy({ $0 > 0 }),
            values.count == shape.reduce(1, *)
        else {
            throw GGUFError(path: name, reason: "shape \(shape) does not describe \(values.count) values")
        }
        guard dimensions[0] % type.blockSize == 0 else {
            throw GGUFError(
                path: name,
                reason: "rows of \(dimensions[0]) values are not whole \(type.name) blocks of \(type.blockSize)")
        }
        let bytes: [UInt8]
        do { bytes = try type.quantize(values) } catch let e as GGUFError {
            throw GGUFError(path: name, reason: e.reason)
        }
        let offset = (dataSize + alignment - 1) / alignment * alignment
        tensors.append((GGUFTensorInfo(name: name, dimensions: dimensions, type: type, offset: offset), bytes))
        dataSize = offset + bytes.count
    }

    /// The whole file, written beside `path` and renamed into place.
    public func write(to path: String) throws {
        for (key, value) in metadata { try Self.check(key, value, path: path) }
        let out = encoded()
        let temporary = path + ".tmp-\(getpid())"
        do {
            try Data(out).write(to: URL(fileURLWithPath: temporary))
            // rename(2) replaces the old file in one step: it is never missing.
            guard rename(temporary, path) == 0 else {
                throw GGUFError(path: path, reason: String(cString: strerror(errno)))
            }
        } catch {
            try? FileManager.default.removeItem(atPath: temporary)
            throw GGUFError(path: path, reason: "cannot write: \(error.localizedDescription)")
        }
    }

    /// An array's items must all be of its declared type (nested arrays too).
    static func check(_ key: String, _ value: GGUFValue, path: String) throws {
        guard case .array(let type, let items) = value else { return }
        if let bad = items.first(where: { $0.type != type }) {
            throw GGUFError(path: path, reason: "metadata '\(key)': an array of \(type) holds a \(bad.type)")
        }
        for item in items { try check(key, item, path: path) }
    }

    /// The file's bytes: header, metadata, tensor infos, then the aligned tensor data.
    func encoded() -> [UInt8] {
        var w = LittleEndianBytes()
        w.bytes.reserveCapacity(dataSize + 1 << 20)
        w.int(GGUFFile.magic)
        w.int(UInt32(3))
        w.int(UInt64(tensors.count))
        w.int(UInt64(metadata.count))
        for (key, value) in metadata {
            w.string(key)
            w.int(value.type.rawValue)
            w.payload(value)
        }
        for (info, _) in tensors {
            w.string(info.name)
            w.int(UInt32(info.dimensions.count))
            for d in info.dimensions { w.int(UInt64(d)) }
            w.int(info.type.rawValue)
            w.int(UInt64(info.offset))
        }
        w.pad(to: alignment)
        let dataStart = w.bytes.count
        for (info, bytes) in tensors {
            while w.bytes.count < dataStart + info.offset { w.bytes.append(0) }
            w.bytes.append(contentsOf: bytes)
        }
        w.pad(to: alignment)
        return w.bytes
    }
}

/// GGUF's little-endian encoding of integers, strings and metadata values.
struct LittleEndianBytes {
    var bytes: [UInt8] = []

    mutating func int<T: FixedWidthInteger>(_ v: T) {
        withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) }
    }

    mutating func string(_ s: String) {
        int(UInt64(s.utf8.count))
        bytes.append(contentsOf: s.utf8)
    }

    mutating func pad(to alignment: Int) { while bytes.count % alignment != 0 { bytes.append(0) } }

    mutating func payload(_ v: GGUFValue) {
        switch v {
        case .uint8(let x): int(x)
        case .int8(let x): int(x)
        case .uint16(let x): int(x)
        case .int16(let x): int(x)
        case .uint32(let x): int(x)
        case .int32(let x): int(x)
        case .float32(let x): int(x.bitPattern)
        case .bool(let b): int(UInt8(b ? 1 : 0))
        case .string(let s): string(s)
        case .array(let type, let items):
            int(type.rawValue)
            int(UInt64(items.count))
            for item in items { payload(item) }
        case .uint64(let x): int(x)
        case .int64(let x): int(x)
        case .float64(let x): int(x.bitPattern)
        }
    }
}

extension GGMLType {
    /// The types a GGUF can be written in.
    public static let writable: [GGMLType] = [.f32, .f16, .q8_0]

    /// `values` in this type's bytes: F32 as is, F16 rounded to nearest even, Q8_0 as ggml's
    /// `quantize_row_q8_0_ref` (d = max|x|/127 stored as F16, q = round(x/d) with halves away from
    /// zero, through the F32 reciprocal as the reference does).
    func quantize(_ values: UnsafeBufferPointer<Float>) throws -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(values.count / blockSize * blockBytes)
        func append<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        switch self {
        case .f32:
            for x in values { append(x.bitPattern) }
        case .f16:
            for x in values { append(Float16(x).bitPattern) }
        case .q8_0:
            for start in stride(from: 0, to: values.count, by: 32) {
                let block = values[start..<(start + 32)]
                guard block.allSatisfy(\.isFinite) else {
                    throw GGUFError(path: "", reason: "holds NaN or infinite values, which Q8_0 cannot store")
                }
                let amax = block.reduce(Float(0)) { max($0, abs($1)) }
                let d = amax / 127
                // Blocks of values below ~4e-37 have a d whose reciprocal overflows: stored as zeros.
                let id = d != 0 && (1 / d).isFinite ? 1 / d : 0
                append(Float16(id == 0 ? 0 : d).bitPattern)
                for x in block { out.append(UInt8(bitPattern: Int8((x * id).rounded()))) }
            }
        default:
            throw GGUFError(
                path: "",
                reason: "writing \(name) is not supported (\(Self.writable.map(\.name).joined(separator: ", ")))")
        }
        return out
    }
}
