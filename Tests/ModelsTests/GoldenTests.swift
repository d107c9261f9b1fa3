import Foundation
import Kernels
import Models
import XCTest

/// Logits against Hugging Face transformers on the same safetensors (fixtures made by
/// Fixtures/make_gpt2_fixture.py with random weights; every parameter randomised).
final class GoldenTests: XCTestCase {
    struct Golden: Decodable { let sequences: [[Int32]]; let logits: [[Float]] }

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
        XCTAssertEqual(loaded.config, trunk.config)
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
        var json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/config.json"))) as! [String: Any]
        json["activation_function"] = "relu"
        try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: dir + "/config.json"))
        XCTAssertThrowsError(try HFCheckpoint.load(directory: dir)) { error in
            XCTAssertTrue("\(error)".contains("activation_function 'relu'"), "\(error)")
        }
    }
}
