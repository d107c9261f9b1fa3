import Foundation
import GGUF
import Kernels
import XCTest

@testable import Models

/// The GGUF writer read back by our reader (gguf-py and transformers read its files in
/// Fixtures/make_gguf_fixtures.py --rlhf; EndToEndTests.ExportTests checks the bytes are those).
final class GGUFWriterTests: XCTestCase {
    var directory = ""
    override func setUp() {
        directory = NSTemporaryDirectory() + "gguf-writer-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: directory) }

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
        for (k, v) in [
            ("block_count", 100), ("embedding_length", 8192), ("feed_forward_length", 28672),
            ("attention.head_count", 64),
            ("context_length", 4096),
        ] { w.set("llama.\(k)", .uint32(UInt32(v))) }
        let values = [Float](repeating: 0.5, count: 64)
        try values.withUnsafeBufferPointer {
            try w.addTensor(name: "token_embd.weight", shape: [2, 32], values: $0, type: .f32)
        }
        try w.write(to: directory + "/huge.gguf")
        XCTAssertThrowsError(try HFCheckpoint.load(directory: directory + "/huge.gguf")) {
            XCTAssertTrue("\($0)".contains("the metadata implies"), "\($0)")
        }
    }

    /// Models GGUF export does not write are refused by name.
    func testUnsupportedModelsAreRefusedByName() throws {
        let gpt2 = try HFCheckpoint.load(directory: fixturesDirectory() + "/gpt2-tiny")
        XCTAssertThrowsError(try GGUFExport.writer(model: gpt2, type: .f32, name: "x")) {
            XCTAssertTrue("\($0)".contains("use --format hf"), "\($0)")
        }
        let scaled = try HFCheckpoint.load(directory: fixturesDirectory() + "/llama-tiny")
        XCTAssertThrowsError(try GGUFExport.writer(model: scaled, type: .f32, name: "x")) {
            XCTAssertTrue("\($0)".contains("llama3 rope scaling"), "\($0)")
        }
    }
}
