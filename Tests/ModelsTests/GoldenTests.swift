import Foundation
import Kernels
import Models
import XCTest

/// Logits against Hugging Face transformers on the same safetensors (fixtures made by
/// Fixtures/make_gpt2_fixture.py with random weights; every parameter randomised).
final class GoldenTests: XCTestCase {
    struct Golden: Decodable {
        let sequences: [[Int32]]
        let logits: [[Float]]
    }

    func loadGolden() throws -> Golden {
        let url = URL(fileURLWithPath: fixturesDirectory()).appendingPathComponent("gpt2-tiny-logits.json")
        return try JSONDecoder().decode(Golden.self, from: Data(contentsOf: url))
    }

    func testLogitsMatchTransformers() throws {
        let trunk = try HFCheckpoint.load(directory: fixturesDirectory() + "/gpt2-tiny")
        XCTAssertEqual(trunk.config.vocabSize, 97)
        XCTAssertEqual(trunk.config.layers, 2)
        let golden = try loadGolden()
        XCTAssertEqual(golden.sequences.count, 4)
        for (sequence, expected) in zip(golden.sequences, golden.logits) {
            let ours = try trunk.logits(of: sequence)
            XCTAssertEqual(ours.count, expected.count)
            XCTAssertLessThanOrEqual(maxAbsDifference(ours, expected), 1e-4, "sequence of \(sequence.count) tokens")
        }
    }

    /// Batched, right-padded scoring must equal per-sequence logits from transformers.
    func testBatchedScoringMatchesTransformers() throws {
        let trunk = try HFCheckpoint.load(directory: fixturesDirectory() + "/gpt2-tiny")
        let golden = try loadGolden()
        let scores = try trunk.scoreSequences(golden.sequences, batchSize: 3)
        let v = trunk.config.vocabSize
        for (i, sequence) in golden.sequences.enumerated() {
            XCTAssertEqual(scores[i].count, sequence.count - 1)
            for t in 0..<(sequence.count - 1) {
                let row = golden.logits[i][(t * v)..<((t + 1) * v)].map(Double.init)
                let m = row.max()!
                let lse = m + Foundation.log(row.map { Foundation.exp($0 - m) }.reduce(0, +))
                XCTAssertEqual(Double(scores[i][t]), row[Int(sequence[t + 1])] - lse, accuracy: 1e-4)
            }
        }
    }

    func testSaveThenLoadIsBitIdentical() throws {
        let trunk = try randomTrunk()
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try HFCheckpoint.save(trunk, directory: dir)
        let loaded = try HFCheckpoint.load(directory: dir)
        XCTAssertEqual(loaded.config as? GPT2Config, trunk.gpt2)
        XCTAssertEqual(loaded.weights.array, trunk.weights.array)
        // The file uses HF's GPT2LMHeadModel names and Conv1D [in, out] shapes.
        let file = try SafeTensorsFile(path: dir + "/model.safetensors")
        XCTAssertEqual(file.entries["transformer.h.0.attn.c_attn.weight"]?.shape, [16, 48])
        XCTAssertEqual(file.entries["transformer.h.1.mlp.c_proj.weight"]?.shape, [24, 16])
        XCTAssertNil(file.entries["lm_head.weight"], "tied head is not stored, as in save_pretrained")
    }

    func testConfigOptionsWeDoNotComputeAreRejectedByName() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try HFCheckpoint.save(try randomTrunk(), directory: dir)
        var json =
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/config.json")))
            as! [String: Any]
        json["activation_function"] = "relu"
        try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: dir + "/config.json"))
        XCTAssertThrowsError(try HFCheckpoint.load(directory: dir)) { error in
            XCTAssertTrue("\(error)".contains("activation_function 'relu'"), "\(error)")
        }
    }
}

/// PEFT adapters: one made by PEFT (Fixtures/make_peft_fixture.py) gives PEFT's logits here; ours
/// round-trips; the other direction is checked by the script with --rlhf.
final class PEFTAdapterTests: XCTestCase {
    struct Golden: Decodable {
        let sequences: [[Int32]]
        let logits: [[Float]]
    }

    func testPEFTAdapterGivesPEFTLogits() throws {
        let base = try HFCheckpoint.load(directory: fixturesDirectory() + "/gpt2-tiny")
        let adapter = try PEFTAdapter.load(directory: fixturesDirectory() + "/peft-tiny", modelConfig: base.config)
        XCTAssertEqual(adapter.config.rank, 4)
        XCTAssertEqual(
            adapter.config.targets, [.attentionQKV, .attentionOutput, .mlpUp, .mlpDown], "c_attn, c_proj (both), c_fc")
        let golden = try JSONDecoder().decode(
            Golden.self, from: Data(contentsOf: URL(fileURLWithPath: fixturesDirectory() + "/peft-tiny-logits.json")))
        for (sequence, expected) in zip(golden.sequences, golden.logits) {
            let ours = try base.logits(of: sequence, adapter: adapter)
            XCTAssertLessThanOrEqual(maxAbsDifference(ours, expected), 1e-4)
            XCTAssertGreaterThan(maxAbsDifference(try base.logits(of: sequence), expected), 1e-2, "the adapter matters")
        }
    }

    func testSaveLoadRoundTripAndRejections() throws {
        let config = tinyConfig()
        let adapter = try LoRAAdapter(
            config: LoRAConfig(rank: 3, alpha: 5, targets: [.attentionQKV, .mlpDown]), modelConfig: config)
        var rng = RNG(seed: 2)
        rng.fillNormal(adapter.weights.buffer, std: 1)
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try PEFTAdapter.save(adapter, directory: dir)
        let back = try PEFTAdapter.load(directory: dir, modelConfig: config)
        XCTAssertEqual(back.config, adapter.config)
        XCTAssertEqual(back.weights.array, adapter.weights.array)
        var json =
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/adapter_config.json")))
            as! [String: Any]
        json["use_dora"] = true
        try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: dir + "/adapter_config.json"))
        XCTAssertThrowsError(try PEFTAdapter.load(directory: dir, modelConfig: config)) {
            XCTAssertTrue("\($0)".contains("use_dora"), "\($0)")
        }
    }
}
