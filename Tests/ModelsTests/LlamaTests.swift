import Foundation
import Kernels
import Models
import XCTest

/// Every Llama-family feature at once, small enough for finite differences over every tensor:
/// grouped-query attention (4 heads / 2 KV heads), head_dim 6 ≠ C/H, biases on every projection,
/// an untied head, llama3 rope scaling.
func tinyLlamaConfig(context: Int = 16, tied: Bool = false) -> LlamaConfig {
    LlamaConfig(
        vocabSize: 23, maxPositions: context, channels: 16, layers: 2, heads: 4, kvHeads: 2, headSize: 6, innerSize: 20,
        ropeTheta: 500,
        ropeScaling: Llama3RopeScaling(factor: 4, lowFrequencyFactor: 1, highFrequencyFactor: 4, originalContext: 8),
        tiedEmbeddings: tied, qkvBias: true, outputBias: true, mlpBias: true, bosTokenId: 21, eosTokenIds: [22])
}

func randomLlama(_ config: LlamaConfig = tinyLlamaConfig(), seed: UInt64 = 1) throws -> LlamaTrunk {
    let trunk = try LlamaTrunk(config: config)
    var rng = RNG(seed: seed)
    for tensor in trunk.parameterLayout.tensors {
        for i in 0..<tensor.count {
            trunk.weights[tensor.offset + i] =
                tensor.name.hasSuffix("norm.weight") ? 1 + 0.1 * rng.normal() : 0.3 * rng.normal()
        }
    }
    return trunk
}

/// Logits against transformers (fixtures by Fixtures/make_llama_fixture.py, every parameter random).
final class LlamaGoldenTests: XCTestCase {
    struct Golden: Decodable {
        let sequences: [[Int32]]
        let logits: [[Float]]
    }

    func check(_ name: String, _ trunk: any CausalLM, file: StaticString = #filePath, line: UInt = #line) throws {
        let url = URL(fileURLWithPath: fixturesDirectory()).appendingPathComponent("\(name)-logits.json")
        let golden = try JSONDecoder().decode(Golden.self, from: Data(contentsOf: url))
        XCTAssertEqual(golden.sequences.map(\.count), [1, 7, 16, 32])
        for (sequence, expected) in zip(golden.sequences, golden.logits) {
            let ours = try trunk.logits(of: sequence)
            XCTAssertEqual(ours.count, expected.count, file: file, line: line)
            XCTAssertLessThanOrEqual(
                maxAbsDifference(ours, expected), 1e-4, "\(name): \(sequence.count) tokens", file: file, line: line)
        }
    }

    func testLlamaQwen2AndMistralLogitsMatchTransformers() throws {
        let llama = try HFCheckpoint.load(directory: fixturesDirectory() + "/llama-tiny")
        let c = try XCTUnwrap(llama.config as? LlamaConfig)
        XCTAssertEqual([c.heads, c.kvHeads, c.headSize], [4, 2, 8])
        XCTAssertFalse(c.tiedEmbeddings)
        XCTAssertEqual(c.ropeScaling?.factor, 8, "rope_parameters of transformers 5")
        try check("llama-tiny", llama)
        let qwen = try HFCheckpoint.load(directory: fixturesDirectory() + "/qwen2-tiny")
        let q = try XCTUnwrap(qwen.config as? LlamaConfig)
        XCTAssertEqual([q.kvHeads, q.headSize], [1, 16])
        XCTAssertTrue(q.qkvBias && q.tiedEmbeddings && !q.outputBias)
        try check("qwen2-tiny", qwen)  // BF16 weights
        let mistral = try HFCheckpoint.load(directory: fixturesDirectory() + "/mistral-tiny")
        XCTAssertEqual(mistral.config.modelType, "mistral")
        try check("mistral-tiny", mistral)  // F16 weights in three shards
    }

    /// Older config.json files: rope_theta and rope_scaling at the top level (legacy "type" key).
    func testLegacyRopeKeysGiveTheSameModel() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let source = fixturesDirectory() + "/llama-tiny"
        try FileManager.default.copyItem(atPath: source + "/model.safetensors", toPath: dir + "/model.safetensors")
        var json =
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: source + "/config.json")))
            as! [String: Any]
        var rope = json.removeValue(forKey: "rope_parameters") as! [String: Any]
        json["rope_theta"] = rope.removeValue(forKey: "rope_theta")
        rope["type"] = rope.removeValue(forKey: "rope_type")
        json["rope_scaling"] = rope
        try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: dir + "/config.json"))
        let legacy = try HFCheckpoint.load(directory: dir)
        XCTAssertTrue(legacy.config.isEqual(to: try HFCheckpoint.readConfig(directory: source)))
        try check("llama-tiny", legacy)
    }

    func testOptionsWeDoNotComputeAreRefusedByName() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try HFCheckpoint.save(try randomLlama(), directory: dir)
        let original =
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/config.json")))
            as! [String: Any]
        for (key, value, message) in [
            ("hidden_act", "gelu" as Any, "hidden_act 'gelu'"),
            ("rope_scaling", ["rope_type": "yarn", "factor": 4.0] as Any, "rope type 'yarn' is not supported"),
            ("num_key_value_heads", 3 as Any, "multiple of num_key_value_heads"),
            ("attention_dropout", 0.1 as Any, "attention_dropout 0.1"),
        ] {
            var json = original
            json[key] = value
            try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: dir + "/config.json"))
            XCTAssertThrowsError(try HFCheckpoint.load(directory: dir), key) {
                XCTAssertTrue("\($0)".contains(message), "\($0)")
            }
        }
        // Mistral's sliding window: 4096 when config.json has no such key (MistralConfig's default).
        var mistral = original
        mistral["model_type"] = "mistral"
        mistral["max_position_embeddings"] = 32768
        try JSONSerialization.data(withJSONObject: mistral).write(to: URL(fileURLWithPath: dir + "/config.json"))
        XCTAssertEqual(try HFCheckpoint.readConfig(directory: dir).contextLength, 4096)
        // An explicit sliding window caps the context, and a longer sequence names it.
        var json = original
        json["model_type"] = "mistral"
        json["sliding_window"] = 8
        json.removeValue(forKey: "attention_bias")
        json.removeValue(forKey: "mlp_bias")
        try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: dir + "/config.json"))
        let config = try HFCheckpoint.readConfig(directory: dir)
        XCTAssertEqual(config.contextLength, 8)
        let plain = try LlamaTrunk(config: config as! LlamaConfig)
        XCTAssertThrowsError(try plain.inferenceHidden(tokens: [Int32](repeating: 1, count: 10), batch: 1, length: 10))
        {
            XCTAssertTrue("\($0)".contains("sliding_window 8"), "\($0)")
        }
    }

    func testSaveThenLoadIsBitIdenticalWithHFNames() throws {
        for tied in [false, true] {
            let trunk = try randomLlama(tinyLlamaConfig(tied: tied))
            let dir = temporaryDirectory()
            defer { try? FileManager.default.removeItem(atPath: dir) }
            try HFCheckpoint.save(trunk, directory: dir)
            let loaded = try HFCheckpoint.load(directory: dir)
            XCTAssertTrue(loaded.config.isEqual(to: trunk.llama))
            XCTAssertEqual(loaded.weights.array, trunk.weights.array)
            let file = try SafeTensorsFile(path: dir + "/model.safetensors")
            XCTAssertEqual(
                file.entries["model.layers.0.self_attn.q_proj.weight"]?.shape, [24, 16],
                "[H·d, C] as nn.Linear stores it")
            XCTAssertEqual(file.entries["model.layers.1.self_attn.k_proj.bias"]?.shape, [12])
            XCTAssertEqual(file.entries["model.layers.1.mlp.down_proj.weight"]?.shape, [16, 20])
            XCTAssertEqual(file.entries["lm_head.weight"] != nil, !tied, "an untied head is stored, a tied one is not")
        }
    }
}

/// Whole-model gradients against central differences (h = 3e-3, loss in Double; relative 2e-2
/// with an absolute floor of 2e-3): every trunk tensor, LoRA on all seven projections, the untied
/// LM head, through rotary attention with grouped heads, RMSNorm and SwiGLU.
final class LlamaGradientTests: XCTestCase {
    func testEveryParameterGradientMatchesFiniteDifferences() throws {
        let config = tinyLlamaConfig()
        let trunk = try randomLlama(config)
        let adapter = try LoRAAdapter(config: LoRAConfig(rank: 2, alpha: 4, targets: [.allLinear]), modelConfig: config)
        XCTAssertEqual(
            adapter.config.targets.map(\.name),
            ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
        var rng = RNG(seed: 9)
        for i in 0..<adapter.weights.count { adapter.weights[i] = 0.3 * rng.normal() }
        let tokens = randomTokens(12, vocab: 23, seed: 4)
        var targets = randomTokens(12, vocab: 23, seed: 5)
        targets[5] = -1
        let weights = (0..<12).map { _ in rng.normal() }
        let act = trunk.makeActivations(batch: 2, tokens: 6, loraRank: 2)
        let cache = LMHeadCache(rows: 12, vocab: 23)
        func loss() throws -> Double {
            try trunk.forward(tokens: tokens, adapter: adapter, activations: act)
            let lp = trunk.lmHeadLogProbs(hidden: act.hidden, targets: targets, temperature: 1, cache: cache)
            return zip(lp, weights).map { Double($0) * Double($1) }.reduce(0, +)
        }
        _ = try loss()
        let trunkGrad = FloatBuffer(count: trunk.parameterCount),
            adapterGrad = FloatBuffer(count: adapter.layout.totalCount)
        let dHidden = FloatBuffer(count: act.hidden.count)
        trunk.lmHeadBackward(
            dLogProbs: weights, hidden: act.hidden, cache: cache, dHidden: dHidden, trunkGradients: trunkGrad)
        trunk.backward(
            dHidden: dHidden, adapter: adapter, activations: act, trunkGradients: trunkGrad,
            adapterGradients: adapterGrad)
        func check(_ name: String, _ grad: FloatBuffer, _ params: FloatBuffer, offset: Int, count: Int) throws {
            var largest: Float = 0
            for i in Swift.stride(from: offset, to: offset + count, by: max(1, count / 20)) {
                let numeric = try FiniteDifferences.derivative(at: params.pointer + i, step: 3e-3, of: loss)
                XCTAssertTrue(
                    FiniteDifferences.agrees(Double(grad[i]), numeric, relative: 2e-2, absolute: 2e-3),
                    "\(name)[\(i - offset)]: analytic \(grad[i]) vs finite difference \(numeric)")
                largest = max(largest, abs(grad[i]))
            }
            XCTAssertGreaterThan(largest, 0, "\(name) has an all-zero gradient")
        }
        for t in trunk.parameterLayout.tensors {
            try check(t.name, trunkGrad, trunk.weights, offset: t.offset, count: t.count)
        }
        for t in adapter.layout.tensors {
            try check("lora " + t.name, adapterGrad, adapter.weights, offset: t.offset, count: t.count)
        }
    }
}

final class LlamaDecodingTests: XCTestCase {
    /// KV-cache decoding (prompts of different lengths in one batch, LoRA on and off) gives the
    /// logits and log-probs of a full forward over each finished sequence (≤ 1e-5).
    func testKVCacheMatchesFullForward() throws {
        let trunk = try randomLlama(tinyLlamaConfig(context: 32))
        let adapter = try LoRAAdapter(
            config: LoRAConfig(rank: 2, alpha: 2, targets: [.allLinear]), modelConfig: trunk.config)
        var rng = RNG(seed: 77)
        for i in 0..<adapter.weights.count { adapter.weights[i] = 0.2 * rng.normal() }
        for lora in [nil, adapter] { try assertKVCacheMatchesFullForward(trunk, adapter: lora) }
    }
}

/// A PEFT adapter on all seven Llama projections (Fixtures/make_peft_fixture.py) gives PEFT's logits
/// here; PEFT loading ours is checked by the script with --rlhf.
final class LlamaPEFTTests: XCTestCase {
    struct Golden: Decodable {
        let sequences: [[Int32]]
        let logits: [[Float]]
    }

    func testPEFTAdapterGivesPEFTLogitsAndRoundTrips() throws {
        let base = try HFCheckpoint.load(directory: fixturesDirectory() + "/llama-tiny")
        let adapter = try PEFTAdapter.load(
            directory: fixturesDirectory() + "/peft-llama-tiny", modelConfig: base.config)
        XCTAssertEqual(adapter.config.rank, 4)
        XCTAssertEqual(
            adapter.config.targets.map(\.name),
            ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], "PEFT's all-linear")
        let golden = try JSONDecoder().decode(
            Golden.self,
            from: Data(contentsOf: URL(fileURLWithPath: fixturesDirectory() + "/peft-llama-tiny-logits.json")))
        for (sequence, expected) in zip(golden.sequences, golden.logits) {
            XCTAssertLessThanOrEqual(maxAbsDifference(try base.logits(of: sequence, adapter: adapter), expected), 1e-4)
            XCTAssertGreaterThan(maxAbsDifference(try base.logits(of: sequence), expected), 1e-2, "the adapter matters")
        }
        // Merged into the weights, the adapter gives the same logits without it.
        let merged = try base.merging(adapter)
        XCTAssertLessThanOrEqual(maxAbsDifference(try merged.logits(of: golden.sequences[1]), golden.logits[1]), 1e-4)
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try PEFTAdapter.save(adapter, directory: dir)
        let file = try SafeTensorsFile(path: dir + "/adapter_model.safetensors")
        XCTAssertEqual(file.entries["base_model.model.model.layers.1.mlp.down_proj.lora_B.weight"]?.shape, [32, 4])
        let back = try PEFTAdapter.load(directory: dir, modelConfig: base.config)
        XCTAssertEqual(back.weights.array, adapter.weights.array)
    }
}
