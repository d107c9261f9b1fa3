import Kernels
import Models
import XCTest

final class LoRATests: XCTestCase {
    func testFreshAdapterWithZeroBIsBitIdenticalToAdaptersOff() throws {
        let trunk = try randomTrunk()
        let adapter = try LoRAAdapter(
            config: LoRAConfig(rank: 4, alpha: 8, targets: trunk.config.allLoRATargets), modelConfig: trunk.config)
        var rng = RNG(seed: 3)
        adapter.initialize(rng: &rng)
        XCTAssertNotEqual(adapter.weights.array.filter { $0 != 0 }.count, 0, "A is random")
        let tokens = randomTokens(10, vocab: 23, seed: 2)
        XCTAssertEqual(try trunk.logits(of: tokens, adapter: adapter), try trunk.logits(of: tokens))
    }

    /// Hydra: policy LoRA, critic LoRA and adapters-off over one trunk object, none copied.
    func testSeveralAdaptersShareOneTrunk() throws {
        let trunk = try randomTrunk()
        let before = trunk.weights.array
        var rng = RNG(seed: 5)
        let policy = try LoRAAdapter(
            config: LoRAConfig(rank: 2, alpha: 4, targets: [.attentionQKV, .mlpUp]), modelConfig: trunk.config)
        let critic = try LoRAAdapter(
            config: LoRAConfig(rank: 4, alpha: 4, targets: [.attentionOutput, .mlpDown]), modelConfig: trunk.config)
        for adapter in [policy, critic] {
            for i in 0..<adapter.weights.count { adapter.weights[i] = 0.2 * rng.normal() }
        }
        let tokens = randomTokens(8, vocab: 23, seed: 6)
        let off = try trunk.logits(of: tokens)
        let withPolicy = try trunk.logits(of: tokens, adapter: policy)
        let withCritic = try trunk.logits(of: tokens, adapter: critic)
        XCTAssertGreaterThan(maxAbsDifference(off, withPolicy), 1e-3)
        XCTAssertGreaterThan(maxAbsDifference(off, withCritic), 1e-3)
        XCTAssertGreaterThan(maxAbsDifference(withPolicy, withCritic), 1e-3)
        XCTAssertEqual(try trunk.logits(of: tokens), off, "adapters off is unchanged after using adapters")
        XCTAssertEqual(trunk.weights.array, before)
    }

    /// The adapter's effect equals merging scale·(B·A)ᵀ into the Conv1D weight [in, out].
    func testAdapterEqualsMergedWeights() throws {
        let trunk = try randomTrunk()
        let adapter = try LoRAAdapter(
            config: LoRAConfig(rank: 2, alpha: 3, targets: [.mlpUp]), modelConfig: trunk.config)
        var rng = RNG(seed: 8)
        for i in 0..<adapter.weights.count { adapter.weights[i] = 0.3 * rng.normal() }
        let merged = try trunk.clone()
        let c = trunk.config
        for l in 0..<c.layers {
            let a = adapter.layout["h.\(l).mlp.c_fc.lora_A.weight"]!,
                b = adapter.layout["h.\(l).mlp.c_fc.lora_B.weight"]!
            let w = trunk.layout.tensors["h.\(l).mlp.c_fc.weight"]!
            for i in 0..<c.channels {
                for o in 0..<c.innerSize {
                    var delta: Float = 0
                    for r in 0..<2 {
                        delta += adapter.weights[b.offset + o * 2 + r] * adapter.weights[a.offset + r * c.channels + i]
                    }
                    merged.weights[w.offset + i * c.innerSize + o] += 1.5 * delta
                }
            }
        }
        let tokens = randomTokens(9, vocab: 23, seed: 1)
        XCTAssertLessThan(
            maxAbsDifference(try trunk.logits(of: tokens, adapter: adapter), try merged.logits(of: tokens)), 1e-5)
        // The library's merge (sgemm) gives the same weights as the loop above.
        let library = try trunk.merging(adapter)
        XCTAssertLessThan(maxAbsDifference(library.weights.array, merged.weights.array), 1e-6)
    }

    /// "all-linear" (PEFT's term) wraps every projection of the family, in the family's order:
    /// the same adapter as naming them all.
    func testAllLinearIsEveryProjectionOfTheFamily() throws {
        let c = tinyConfig()
        let all = try LoRAAdapter(config: LoRAConfig(rank: 2, alpha: 4, targets: [.allLinear]), modelConfig: c)
        let named = try LoRAAdapter(
            config: LoRAConfig(rank: 2, alpha: 4, targets: [.mlpDown, .attentionQKV, .mlpUp, .attentionOutput]),
            modelConfig: c)
        XCTAssertEqual(all.config.targets, [.attentionQKV, .attentionOutput, .mlpUp, .mlpDown])
        XCTAssertEqual(all.layout, named.layout)
        XCTAssertEqual(c.resolving([.mlpUp]), [.mlpUp], "explicit names stay as they are")
    }

    func testInvalidAdapterConfigsAreRejected() {
        XCTAssertThrowsError(try LoRAAdapter(config: LoRAConfig(rank: 0, targets: [.mlpUp]), modelConfig: tinyConfig()))
        XCTAssertThrowsError(try LoRAAdapter(config: LoRAConfig(rank: 2, targets: []), modelConfig: tinyConfig()))
        // A name the family does not have is refused, listing the family's names.
        XCTAssertThrowsError(
            try LoRAAdapter(config: LoRAConfig(rank: 2, targets: ["q_proj"]), modelConfig: tinyConfig())
        ) { error in
            XCTAssertEqual(
                "\(error)",
                "invalid model config: LoRA target 'q_proj' is not a projection of gpt2 models (attn.c_attn, "
                    + "attn.c_proj, mlp.c_fc, mlp.c_proj)"
            )
        }
    }
}

final class InferenceForwardTests: XCTestCase {
    /// The one-layer-buffer inference forward equals the training forward bit for bit.
    func testInferenceHiddenEqualsTrainingForward() throws {
        let trunk = try randomTrunk()
        let adapter = try LoRAAdapter(
            config: LoRAConfig(rank: 2, alpha: 4, targets: trunk.config.allLoRATargets), modelConfig: trunk.config)
        var rng = RNG(seed: 4)
        for i in 0..<adapter.weights.count { adapter.weights[i] = 0.2 * rng.normal() }
        let tokens = randomTokens(3 * 7, vocab: 23, seed: 9)
        for lora in [nil, adapter] {
            let act = trunk.makeActivations(batch: 3, tokens: 7, loraRank: 2)
            try trunk.forward(tokens: tokens, adapter: lora, activations: act)
            XCTAssertEqual(
                try trunk.inferenceHidden(tokens: tokens, batch: 3, length: 7, adapter: lora).array, act.hidden.array)
        }
    }
}
