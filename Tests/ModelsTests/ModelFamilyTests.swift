import Foundation
import Kernels
import Models
import XCTest

/// The family registry: folders dispatch on `model_type`, presets come from whichever family
/// defines them, and everything outside a family goes through `CausalLM`.
final class ModelFamilyTests: XCTestCase {
    func testFoldersDispatchOnModelTypeAndRefuseUnknownFamiliesByName() throws {
        let model = try HFCheckpoint.load(directory: fixturesDirectory() + "/gpt2-tiny")
        XCTAssertEqual(model.config.modelType, "gpt2")
        XCTAssertTrue(model is GPT2Trunk)
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try #"{"model_type": "mamba", "vocab_size": 10}"#.write(
            toFile: dir + "/config.json", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try HFCheckpoint.load(directory: dir)) { error in
            XCTAssertEqual(
                "\(error)",
                "\(dir)/config.json: model_type 'mamba' is not supported yet (supported: gpt2, llama, qwen2, mistral)")
        }
    }

    /// A batch longer than the context is an error from forward, in both families, not a trap.
    func testSequencesBeyondTheContextAreErrors() throws {
        for trunk in [
            try randomTrunk(tinyConfig(context: 16)) as any CausalLM, try randomLlama(tinyLlamaConfig(context: 16)),
        ] {
            let act = trunk.makeActivations(batch: 1, tokens: 20, loraRank: 0)
            XCTAssertThrowsError(try trunk.forward(tokens: randomTokens(20, vocab: 23, seed: 1), activations: act)) {
                XCTAssertTrue("\($0)".contains("20 tokens exceed the context of 16"), "\($0)")
            }
        }
    }

    func testPresetsComeFromTheirFamily() throws {
        let tiny = try ModelFamilies.preset("tiny")
        XCTAssertEqual(
            [tiny.modelType, "\(tiny.layers)", "\(tiny.channels)", "\(tiny.heads)", "\(tiny.kvHeads)"],
            ["gpt2", "4", "128", "4", "4"])
        XCTAssertEqual(tiny.parameterCount, try tiny.makeModel(weights: nil).parameterCount)
        let resized = tiny.withVocabulary(size: 300, bosTokenId: 1, eosTokenId: 2)
        XCTAssertEqual([resized.vocabSize, resized.bosTokenId, resized.eosTokenId], [300, 1, 2])
        XCTAssertFalse(resized.isEqual(to: tiny))
        XCTAssertThrowsError(try ModelFamilies.preset("huge")) { error in
            XCTAssertEqual(
                "\(error)", "invalid model config: gpt2 has no preset 'huge'; its presets are gpt2, small, tiny")
        }
        let llama = try ModelFamilies.preset("tiny", family: "llama")
        XCTAssertEqual(
            [llama.modelType, "\(llama.layers)", "\(llama.heads)", "\(llama.kvHeads)"], ["llama", "4", "4", "2"])
        XCTAssertThrowsError(try ModelFamilies.preset("tiny", family: "qwen2")) {
            XCTAssertTrue("\($0)".contains("qwen2 has no preset 'tiny'"), "\($0)")
        }
    }

    /// Clone, merge and the family-free passes agree with each other through the protocol.
    func testProtocolPassesAgree() throws {
        let trunk: any CausalLM = try randomTrunk()
        let copy = try trunk.clone()
        XCTAssertFalse(copy === trunk)
        XCTAssertEqual(copy.weights.array, trunk.weights.array)
        let tokens = randomTokens(12, vocab: 23, seed: 4)
        let act = trunk.makeActivations(batch: 2, tokens: 6, loraRank: 0)
        try trunk.forward(tokens: tokens, activations: act)
        let inference = try trunk.inferenceHidden(tokens: tokens, batch: 2, length: 6)
        XCTAssertLessThan(maxAbsDifference(act.hidden.array, inference.array), 1e-5)
        let other = try randomTrunk(tinyConfig(context: 8))
        XCTAssertThrowsError(
            try other.forward(
                tokens: Array(tokens.prefix(8)), adapter: nil,
                activations: trunk.makeActivations(batch: 1, tokens: 8, loraRank: 0)))
    }

    /// The data-parallel overlap's contract (issue 13): the buckets cover every parameter once, in
    /// the order the backward reports them, and a reported bucket holds its final gradient (the
    /// all-reduce starts on it while the layers below are still computed).
    func testGradientBucketsArePartitionAndFinalWhenReported() throws {
        let trunks: [any CausalLM] = [
            try randomTrunk(), try randomLlama(), try randomLlama(tinyLlamaConfig(tied: true)),
        ]
        for trunk in trunks {
            let buckets = trunk.gradientBuckets
            let untiedHead = (trunk.config as? LlamaConfig).map { !$0.tiedEmbeddings } ?? false
            XCTAssertEqual(
                buckets.count, trunk.config.layers + 2 + (untiedHead ? 1 : 0),
                "final norm, each layer, embeddings, an untied head")
            XCTAssertEqual(buckets.map(\.count).reduce(0, +), trunk.parameterCount)
            var covered = [Bool](repeating: false, count: trunk.parameterCount)
            for b in buckets {
                for i in b {
                    XCTAssertFalse(covered[i], "parameter \(i) in two buckets")
                    covered[i] = true
                }
            }
            XCTAssertFalse(covered.contains(false))

            let tokens = randomTokens(12, vocab: 23, seed: 9)
            let targets = tokens.indices.map { $0 % 6 == 5 ? -1 : tokens[($0 + 1) % tokens.count] }
            let gradients = FloatBuffer(count: trunk.parameterCount)
            var reported: [Range<Int>] = [], snapshots: [[Float]] = []
            let step = LanguageModelStep(trunk: trunk, batch: 2, tokens: 6)
            try step.run(tokens: tokens, targets: targets, trunkGradients: gradients) { range in
                reported.append(range)
                snapshots.append(
                    Array(UnsafeBufferPointer(start: gradients.pointer + range.lowerBound, count: range.count)))
            }
            // Every layer and the final norm are reported; the embeddings (and an untied head)
            // are finished last, so the reduction takes them at the end.
            XCTAssertEqual(reported, Array(buckets.prefix(trunk.config.layers + 1)), "\(trunk.config.modelType)")
            let final = gradients.array
            for (range, snapshot) in zip(reported, snapshots) {
                XCTAssertEqual(
                    snapshot, Array(final[range]),
                    "\(trunk.config.modelType): bucket \(range) changed after it was reported")
                XCTAssertTrue(snapshot.contains { $0 != 0 }, "\(trunk.config.modelType): bucket \(range) is all zero")
            }
        }
    }
}
