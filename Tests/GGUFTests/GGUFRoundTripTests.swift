import Foundation
import GGUF
import Kernels
import XCTest

/// The GGUF writer read back by our reader: metadata of every type, tensors of every writable type.
final class GGUFRoundTripTests: XCTestCase {
    var directory = ""
    override func setUp() {
        directory = NSTemporaryDirectory() + "gguf-roundtrip-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: directory) }

    /// Every value type, empty and nested arrays included, reads back equal and in order.
    func testMetadataRoundTrips() throws {
        var w = GGUFWriter()
        let values: [(String, GGUFValue)] = [
            ("a.u8", .uint8(255)), ("a.i8", .int8(-128)), ("a.u16", .uint16(65535)), ("a.i16", .int16(-32768)),
            ("a.u32", .uint32(.max)),
            ("a.i32", .int32(.min)), ("a.f32", .float32(-0.0)), ("a.bool", .bool(false)),
            ("a.string", .string("ß\n\"🙂")),
            ("a.u64", .uint64(.max)), ("a.i64", .int64(.min)), ("a.f64", .float64(.pi)),
            ("a.empty", .array(.string, [])),
            ("a.nested", .array(.array, [.array(.float32, [.float32(1.5)]), .array(.string, [.string("x")])])),
        ]
        for (k, v) in values { w.set(k, v) }
        let path = directory + "/meta.gguf"
        try w.write(to: path)
        let file = try GGUFFile(path: path)
        XCTAssertEqual(file.metadata.map(\.key), values.map(\.0))
        for (k, v) in values { XCTAssertEqual(file[k], v, k) }
        XCTAssertEqual(file.tensors.count, 0)
        var bad = GGUFWriter()
        bad.set("mixed", .array(.int32, [.int32(1), .string("2")]))
        XCTAssertThrowsError(try bad.write(to: directory + "/bad.gguf")) {
            XCTAssertTrue("\($0)".contains("an array of int32 holds a string"), "\($0)")
        }
    }

    /// F32 exactly; F16 as Float16 rounds; Q8_0 within half a step of each block's scale, with
    /// d = max|x|/127 as ggml's reference quantiser has it.
    func testTensorTypesReadBackAsWritten() throws {
        var rng = RNG(seed: 17)
        let values = (0..<(4 * 64)).map { i in i == 5 ? 0 : (6 * rng.uniform() - 3) * (i < 64 ? 1e-3 : 1) }
        var w = GGUFWriter()
        for type in GGMLType.writable {
            try values.withUnsafeBufferPointer {
                try w.addTensor(name: type.name, shape: [4, 64], values: $0, type: type)
            }
        }
        XCTAssertThrowsError(
            try values.withUnsafeBufferPointer { try w.addTensor(name: "q4", shape: [4, 64], values: $0, type: .q4_K) })
        XCTAssertThrowsError(
            try values.withUnsafeBufferPointer {
                try w.addTensor(name: "odd", shape: [16, 16], values: $0, type: .q8_0)
            }
        ) {
            XCTAssertTrue("\($0)".contains("odd"), "\($0)")
        }
        // Values so small that 1/d overflows are stored as zeros (a crash in a naive port of ggml's code).
        let tiny = [Float](repeating: 1e-38, count: 32)
        var tinyWriter = GGUFWriter()
        try tiny.withUnsafeBufferPointer {
            try tinyWriter.addTensor(name: "tiny", shape: [32], values: $0, type: .q8_0)
        }
        try tinyWriter.write(to: directory + "/tiny.gguf")
        XCTAssertEqual(try GGUFFile(path: directory + "/tiny.gguf").floats("tiny"), [Float](repeating: 0, count: 32))
        let nan = [Float](repeating: .nan, count: 32)
        XCTAssertThrowsError(
            try nan.withUnsafeBufferPointer { try w.addTensor(name: "nan", shape: [32], values: $0, type: .q8_0) }
        ) {
            XCTAssertTrue("\($0)".contains("nan: holds NaN"), "\($0)")
        }
        let path = directory + "/types.gguf"
        try w.write(to: path)
        let file = try GGUFFile(path: path)
        XCTAssertEqual(try file.floats("F32"), values)
        XCTAssertEqual(try file.floats("F16"), values.map { Float(Float16($0)) })
        let q8 = try file.floats("Q8_0")
        for block in 0..<(values.count / 32) {
            let x = values[(32 * block)..<(32 * block + 32)], y = q8[(32 * block)..<(32 * block + 32)]
            let d = Float(Float16(x.map(abs).max()! / 127))
            XCTAssertEqual(
                Set(y.map { ($0 / d).rounded() == $0 / d || d == 0 }), [true],
                "block \(block): values are multiples of d")
            for (a, b) in zip(x, y) { XCTAssertLessThanOrEqual(abs(a - b), d * 0.5 + abs(a) * 2e-3, "block \(block)") }
        }
        XCTAssertEqual(file.tensor("Q8_0")?.shape, [4, 64])
    }
}
