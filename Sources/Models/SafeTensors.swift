import Foundation
import Kernels

/// Reader and writer for the safetensors format (huggingface/safetensors, "Format" in its README):
/// an 8-byte little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets}},
/// then the raw little-endian data; offsets are relative to the start of the data section.
///
/// Every field is validated before any allocation sized by it, so a malformed or hostile file
/// gives an error naming the file and the tensor, never a crash or a huge allocation.
public enum SafeTensorsDType: String, Sendable {
    case f32 = "F32", f16 = "F16", bf16 = "BF16"
    var byteSize: Int { self == .f32 ? 4 : 2 }
}

public struct SafeTensorsEntry: Sendable, Equatable {
    public let name: String
    public let dtype: SafeTensorsDType
    public let shape: [Int]
    public let begin: Int, end: Int  // byte range within the data section
    public var count: Int { shape.reduce(1, *) }
}

public struct SafeTensorsError: Error, CustomStringConvertible, Equatable {
    public let path: String
    public let reason: String
    public var description: String { "\(path): \(reason)" }
}

public final class SafeTensorsFile: @unchecked Sendable {
    public let path: String
    public let entries: [String: SafeTensorsEntry]
    public let metadata: [String: String]
    private let data: Data
    private let dataStart: Int

    /// The safetensors library refuses headers above 100 MB; so do we.
    public static let maxHeaderBytes = 100_000_000

    public init(path: String) throws {
        self.path = path
        func fail(_ reason: String) -> SafeTensorsError { SafeTensorsError(path: path, reason: reason) }
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped) } catch {
            throw fail("cannot read: \(error.localizedDescription)")
        }
        self.data = data
        guard data.count >= 8 else {
            throw fail("truncated: \(data.count) bytes, but a safetensors file starts with an 8-byte header length")
        }
        let headerLength = data.withUnsafeBytes {
            UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
        }
        guard headerLength <= UInt64(data.count - 8) else {
            throw fail(
                "header length \(headerLength) exceeds the file (\(data.count) bytes): truncated or not a "
                    + "safetensors file"
            )
        }
        guard headerLength <= UInt64(Self.maxHeaderBytes) else {
            throw fail("header length \(headerLength) is above the \(Self.maxHeaderBytes)-byte limit")
        }
        let n = Int(headerLength)
        dataStart = 8 + n
        let dataSize = data.count - dataStart
        let json: Any
        do { json = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + n))) } catch {
            throw fail("header is not valid JSON (\(n) bytes)")
        }
        guard let header = json as? [String: Any] else { throw fail("header is not a JSON object") }

        var entries: [String: SafeTensorsEntry] = [:]
        var metadata: [String: String] = [:]
        for (name, value) in header {
            if name == "__metadata__" {
                guard let m = value as? [String: Any] else { throw fail("__metadata__ is not an object") }
                for (k, v) in m {
                    guard let s = v as? String else { throw fail("__metadata__.\(k) is not a string") }
                    metadata[k] = s
                }
                continue
            }
            entries[name] = try Self.entry(name, value, dataSize: dataSize, fail: fail)
        }
        self.entries = entries
        self.metadata = metadata
    }

    /// Tensor `name`'s header entry, checked: a supported dtype, a shape that does not overflow,
    /// offsets inside the data section spanning exactly the shape's bytes.
    private static func entry(_ name: String, _ value: Any, dataSize: Int, fail: (String) -> SafeTensorsError) throws
        -> SafeTensorsEntry
    {
        guard let info = value as? [String: Any] else { throw fail("tensor '\(name)': entry is not an object") }
        guard let dtypeName = info["dtype"] as? String else { throw fail("tensor '\(name)': missing dtype") }
        guard let dtype = SafeTensorsDType(rawValue: dtypeName) else {
            throw fail("tensor '\(name)': unsupported dtype '\(dtypeName)' (supported: F32, F16, BF16)")
        }
        guard let shapeValues = info["shape"] as? [Any] else { throw fail("tensor '\(name)': missing shape") }
        var shape: [Int] = []
        var elements = 1
        for dim in shapeValues {
            guard let d = Self.integer(dim), d >= 0 else {
                throw fail("tensor '\(name)': shape \(shapeValues) has an invalid dimension")
            }
            let (product, overflow) = elements.multipliedReportingOverflow(by: d)
            guard !overflow else { throw fail("tensor '\(name)': shape \(shapeValues) overflows") }
            elements = product
            shape.append(d)
        }
        guard let offsets = info["data_offsets"] as? [Any], offsets.count == 2,
            let begin = Self.integer(offsets[0]), let end = Self.integer(offsets[1])
        else {
            throw fail("tensor '\(name)': data_offsets must be two integers")
        }
        guard begin >= 0, begin <= end, end <= dataSize else {
            throw fail(
                "tensor '\(name)': data_offsets [\(begin), \(end)] lie outside the data section of "
                    + "\(dataSize) bytes")
        }
        let (bytes, overflow) = elements.multipliedReportingOverflow(by: dtype.byteSize)
        guard !overflow, bytes == end - begin else {
            throw fail(
                "tensor '\(name)': shape \(shape) of \(dtype.rawValue) needs "
                    + "\(overflow ? "too many" : String(bytes)) bytes but data_offsets span \(end - begin)")
        }
        return SafeTensorsEntry(name: name, dtype: dtype, shape: shape, begin: begin, end: end)
    }

    private static func integer(_ value: Any) -> Int? {
        // `as? Int` succeeds only for exactly representable integers (1.5 or 1e30 give nil).
        value as? Int
    }

    /// Copies tensor `name` into `destination` as Float32 (F16 and BF16 are converted).
    public func read(_ name: String, into destination: UnsafeMutablePointer<Float>, count: Int) throws {
        guard let e = entries[name] else { throw SafeTensorsError(path: path, reason: "no tensor '\(name)'") }
        guard e.count == count else {
            throw SafeTensorsError(path: path, reason: "tensor '\(name)' has \(e.count) elements, expected \(count)")
        }
        data.withUnsafeBytes { raw in
            let src = raw.baseAddress! + dataStart + e.begin
            switch e.dtype {
            case .f32:
                UnsafeMutableRawPointer(destination).copyMemory(from: src, byteCount: count * 4)
            case .f16:
                for i in 0..<count {
                    destination[i] = Float(
                        Float16(
                            bitPattern: UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
                    )
                }
            case .bf16:
                // bfloat16 is the top half of a float32.
                for i in 0..<count {
                    destination[i] = Float(
                        bitPattern: UInt32(
                            UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) << 16)
                }
            }
        }
    }

    public func floats(_ name: String) throws -> [Float] {
        guard let e = entries[name] else { throw SafeTensorsError(path: path, reason: "no tensor '\(name)'") }
        var out = [Float](repeating: 0, count: e.count)
        try out.withUnsafeMutableBufferPointer { try read(name, into: $0.baseAddress!, count: e.count) }
        return out
    }

    /// Writes F32 tensors, header padded with spaces to 8 bytes as the reference writer does.
    /// The file is written beside `path` and renamed, so a crash never leaves half a file.
    public static func write(
        path: String, tensors: [(name: String, shape: [Int], data: UnsafePointer<Float>)],
        metadata: [String: String] = [:]
    ) throws {
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        for t in tensors {
            let bytes = t.shape.reduce(1, *) * 4
            header[t.name] =
                ["dtype": "F32", "shape": t.shape, "data_offsets": [offset, offset + bytes]] as [String: Any]
            offset += bytes
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while json.count % 8 != 0 { json.append(0x20) }
        var out = Data(capacity: 8 + json.count + offset)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(json)
        for t in tensors {
            out.append(UnsafeBufferPointer(start: t.data, count: t.shape.reduce(1, *)))
        }
        let temporary = path + ".tmp-\(getpid())"
        do {
            try out.write(to: URL(fileURLWithPath: temporary))
            if FileManager.default.fileExists(atPath: path) { try FileManager.default.removeItem(atPath: path) }
            try FileManager.default.moveItem(atPath: temporary, toPath: path)
        } catch {
            try? FileManager.default.removeItem(atPath: temporary)
            throw SafeTensorsError(path: path, reason: "cannot write: \(error.localizedDescription)")
        }
    }
}
