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

    /// The same for a Hugging Face folder: a config.json claiming a huge model beside the small
    /// fixture's weights is refused by tensor and shape before the trunk is allocated.
    func testHugeConfigJSONClaimsAreRefusedBeforeAllocating() throws {
        // The probe's cases (n_layer 1e9 grew a 15 GB layout, n_embd 1e9 trapped on an overflow,
        // n_positions 1e12 was a fatal allocation), and a bigger model in every size.
        for (fixture, huge) in [
            ("gpt2-tiny", ["n_layer": 1_000_000_000]), ("gpt2-tiny", ["n_embd": 1_000_000_000]),
            ("gpt2-tiny", ["n_positions": 1_000_000_000_000]), ("gpt2-tiny", ["n_inner": 1 << 40]),
            ("gpt2-tiny", ["n_layer": 100, "n_embd": 8192, "n_head": 64]),
            ("llama-tiny", ["num_hidden_layers": 1_000_000_000]), ("llama-tiny", ["hidden_size": 1_000_000_000]),
            ("llama-tiny", ["num_hidden_layers": 100, "hidden_size": 8192, "intermediate_size": 28672]),
        ] {
            let folder = directory + "/huge-\(fixture)-\(huge.keys.sorted().joined(separator: "-"))-\(huge.count)"
            try FileManager.default.copyItem(atPath: fixturesDirectory() + "/" + fixture, toPath: folder)
            let configPath = folder + "/config.json"
            var json = try XCTUnwrap(
                JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: configPath)))
                    as? [String: Any])
            for (k, v) in huge { json[k] = v }
            if fixture == "llama-tiny" { json["head_dim"] = 128 }
            try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: configPath))
            XCTAssertThrowsError(try HFCheckpoint.load(directory: folder), "\(fixture) \(huge)") {
                XCTAssertTrue(
                    "\($0)".contains("config.json's") || "\($0)".contains("is beyond 2³¹")
                        || "\($0)".contains("too large for this implementation"), "\($0)")
            }
        }
    }

    /// Models GGUF export does not write are refused by name.
    func testUnsupportedModelsAreRefusedByName() throws {
        let gpt2 = try HFCheckpoint.load(directory: fixturesDirectory() + "/gpt2-tiny")
        XCTAssertThrowsError(try GGUFExport.writer(model: gpt2, type: .f32, name: "x")) {
            XCTAssertTrue("\($0)".contains("use --format hf"), "\($0)")
        }
    }

    /// Llama 3.1's rope scaling travels as llama.cpp's rope_freqs.weight (each frequency's divisor):
    /// written on export, and read back as the llama3 parameters that give those divisors, checked
    /// against each; the reloaded model computes the same logits.
    func testLlama3RopeScalingRoundTripsAsRopeFreqs() throws {
        var config = try XCTUnwrap(LlamaConfig.presets["tiny"])
        (config.headSize, config.channels, config.maxPositions) = (32, 128, 64)
        config.ropeScaling = Llama3RopeScaling(
            factor: 8, lowFrequencyFactor: 1, highFrequencyFactor: 4, originalContext: 64)
        let model = try LlamaTrunk(config: config)
        var rng = RNG(seed: 3)
        model.initialize(rng: &rng)
        let (writer, _) = try GGUFExport.writer(model: model, type: .f32, name: "scaled")
        try writer.write(to: directory + "/scaled.gguf")
        let file = try GGUFFile(path: directory + "/scaled.gguf")
        XCTAssertEqual(file.tensor("rope_freqs.weight")?.shape, [16])
        let reloaded = try HFCheckpoint.load(directory: directory + "/scaled.gguf")
        let scaling = try XCTUnwrap((reloaded.config as? LlamaConfig)?.ropeScaling)
        XCTAssertEqual(scaling.factor, 8)
        XCTAssertEqual(scaling.lowFrequencyFactor, 1)
        XCTAssertEqual(scaling.highFrequencyFactor, 4, accuracy: 1e-3)
        XCTAssertEqual(scaling.originalContext, 64)
        let tokens: [Int32] = [1, 7, 3, 9, 60, 2, 11, 40, 5, 33]
        let a = try model.logits(of: tokens), b = try reloaded.logits(of: tokens)
        XCTAssertEqual(zip(a, b).map { abs($0 - $1) }.max() ?? 1, 0, accuracy: 1e-5)
        // Without the scaling the logits differ: the divisors matter on these positions.
        var plain = config
        plain.ropeScaling = nil
        let unscaled = try LlamaTrunk(config: plain)
        unscaled.weights.copy(from: model.weights)
        XCTAssertGreaterThan(zip(a, try unscaled.logits(of: tokens)).map { abs($0 - $1) }.max() ?? 0, 1e-4)
        // The tiny fixture's band holds one frequency: its parameters cannot be recovered, said so.
        let tiny = try HFCheckpoint.load(directory: fixturesDirectory() + "/llama-tiny")
        try GGUFExport.writer(model: tiny, type: .f32, name: "tiny").writer.write(to: directory + "/tiny.gguf")
        XCTAssertThrowsError(try HFCheckpoint.load(directory: directory + "/tiny.gguf")) {
            XCTAssertTrue("\($0)".contains("rope_freqs.weight: fewer than two divisors"), "\($0)")
        }
    }
}
