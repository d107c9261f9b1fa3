import Foundation
import GGUF
import Kernels
@testable import Models
import XCTest

/// The GGUF writer read back by our reader (gguf-py and transformers read its files in
/// Fixtures/make_gguf_fixtures.py --rlhf; EndToEndTests.ExportTests checks the bytes are those).
final class GGUFWriterTests: XCTestCase {
    var directory = ""
    override func setUp() {
        directory = NSTemporaryDirectory() + "gguf-writer-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: directory) }

    /// Every value type, empty and nested arrays included, reads back equal and in order.
    func testMetadataRoundTrips() throws {
        var w = GGUFWriter()
        let values: [(String, GGUFValue)] = [
            ("a.u8", .uint8(255)), ("a.i8", .int8(-128)), ("a.u16", .uint16(65535)), ("a.i16", .int16(-32768)), ("a.u32", .uint32(.max)),
            ("a.i32", .int32(.min)), ("a.f32", .float32(-0.0)), ("a.bool", .bool(false)), ("a.string", .string("ß\n\"🙂")),
            ("a.u64", .uint64(.max)), ("a.i64", .int64(.min)), ("a.f64", .float64(.pi)), ("a.empty", .array(.string, [])),
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
        XCTAssertThrowsError(try bad.write(to: directory + "/bad.gguf")) { XCTAssertTrue("\($0)".contains("an array of int32 holds a string"), "\($0)") }
    }

    /// F32 exactly; F16 as Float16 rounds; Q8_0 within half a step of each block's scale, with
    /// d = max|x|/127 as ggml's reference quantiser has it.
    func testTensorTypesReadBackAsWritten() throws {
        var rng = RNG(seed: 17)
        let values = (0..<(4 * 64)).map { i in i == 5 ? 0 : (6 * rng.uniform() - 3) * (i < 64 ? 1e-3 : 1) }
        var w = GGUFWriter()
        for type in GGMLType.writable {
            try values.withUnsafeBufferPointer { try w.addTensor(name: type.name, shape: [4, 64], values: $0, type: type) }
        }
        XCTAssertThrowsError(try values.withUnsafeBufferPointer { try w.addTensor(name: "q4", shape: [4, 64], values: $0, type: .q4_K) })
        XCTAssertThrowsError(try values.withUnsafeBufferPointer { try w.addTensor(name: "odd", shape: [16, 16], values: $0, type: .q8_0) }) {
            XCTAssertTrue("\($0)".contains("odd"), "\($0)")
        }
        // Values so small that 1/d overflows are stored as zeros (a crash in a naive port of ggml's code).
        let tiny = [Float](repeating: 1e-38, count: 32)
        var tinyWriter = GGUFWriter()
        try tiny.withUnsafeBufferPointer { try tinyWriter.addTensor(name: "tiny", shape: [32], values: $0, type: .q8_0) }
        try tinyWriter.write(to: directory + "/tiny.gguf")
        XCTAssertEqual(try GGUFFile(path: directory + "/tiny.gguf").floats("tiny"), [Float](repeating: 0, count: 32))
        let nan = [Float](repeating: .nan, count: 32)
        XCTAssertThrowsError(try nan.withUnsafeBufferPointer { try w.addTensor(name: "nan", shape: [32], values: $0, type: .q8_0) }) {
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
            XCTAssertEqual(Set(y.map { ($0 / d).rounded() == $0 / d || d == 0 }), [true], "block \(block): values are multiples of d")
            for (a, b) in zip(x, y) { XCTAssertLessThanOrEqual(abs(a - b), d * 0.5 + abs(a) * 2e-3, "block \(block)") }
        }
        XCTAssertEqual(file.tensor("Q8_0")?.shape, [4, 64])
    }

    /// A model exported as F32 reloads bit for bit, for a `llama` file (Q/K permuted on the way out
    /// and back) and a qwen2 file with biases and a tied head.
    func testF32ExportReloadsBitIdentically() throws {
        for source in ["llama-gguf.gguf", "qwen2-gguf.gguf", "mistral-tiny"] {
            let model = try HFCheckpoint.load(directory: fixturesDirectory() + "/" + source)
            let (writer, kept) = try GGUFExport.writer(model: model, type: .f32, name: source)
            XCTAssertEqual(kept, [])
            let path = directory + "/\(source).out.gguf"
            try writer.write(to: path)
            let reloaded = try HFCheckpoint.load(directory: path)
            XCTAssertEqual(reloaded.parameterLayout, model.parameterLayout, source)
            XCTAssertTrue(reloaded.weights.buffer.elementsEqual(model.weights.buffer), source)
            let file = try GGUFFile(path: path)
            XCTAssertEqual(file.tensor("output.weight") == nil, (model.config as? LlamaConfig)?.tiedEmbeddings, source)
        }
    }

    /// A small file whose metadata claims a huge model is refused before anything is allocated.
    func testHugeClaimsAreRefusedBeforeAllocating() throws {
        var w = GGUFWriter()
        w.set("general.architecture", .string("llama"))
        // ~9.7·10¹⁰ parameters: within what validate() accepts, ~390 GB if it were allocated.
        for (k, v) in [("block_count", 100), ("embedding_length", 8192), ("feed_forward_length", 28672), ("attention.head_count", 64),
                       ("context_length", 4096)] { w.set("llama.\(k)", .uint32(UInt32(v))) }
        let values = [Float](repeating: 0.5, count: 64)
        try values.withUnsafeBufferPointer { try w.addTensor(name: "token_embd.weight", shape: [2, 32], values: $0, type: .f32) }
        try w.write(to: directory + "/huge.gguf")
        XCTAssertThrowsError(try HFCheckpoint.load(directory: directory + "/huge.gguf")) { XCTAssertTrue("\($0)".contains("the metadata implies"), "\($0)") }
    }

    /// Models GGUF export does not write are refused by name.
    func testUnsupportedModelsAreRefusedByName() throws {
        let gpt2 = try HFCheckpoint.load(directory: fixturesDirectory() + "/gpt2-tiny")
        XCTAssertThrowsError(try GGUFExport.writer(model: gpt2, type: .f32, name: "x")) { XCTAssertTrue("\($0)".contains("use --format hf"), "\($0)") }
        let scaled = try HFCheckpoint.load(directory: fixturesDirectory() + "/llama-tiny")
        XCTAssertThrowsError(try GGUFExport.writer(model: scaled, type: .f32, name: "x")) { XCTAssertTrue("\($0)".contains("llama3 rope scaling"), "\($0)") }
    }
}
