import Foundation
import Kernels
import Models
import XCTest

final class DecodingTests: XCTestCase {
    func adapter(for trunk: GPT2Trunk) throws -> LoRAAdapter {
        let adapter = try LoRAAdapter(
            config: LoRAConfig(rank: 2, alpha: 2, targets: trunk.config.allLoRATargets), modelConfig: trunk.config)
        var rng = RNG(seed: 77)
        for i in 0..<adapter.weights.count { adapter.weights[i] = 0.2 * rng.normal() }
        return adapter
    }

    /// KV-cache decoding of prompts with different lengths in one batch gives the same hidden
    /// states, logits and log-probs as a full forward over each finished sequence (≤ 1e-5).
    func testKVCacheMatchesFullForward() throws {
        let trunk = try randomTrunk(tinyConfig(context: 32))
        for lora in [nil, try adapter(for: trunk)] { try assertKVCacheMatchesFullForward(trunk, adapter: lora) }
    }

    func testGreedyFollowsArgmaxAndTopK1AndTinyTopPAgree() throws {
        let trunk = try randomTrunk(tinyConfig(context: 32))
        let prompts: [[Int32]] = [randomTokens(4, vocab: 23, seed: 8), randomTokens(2, vocab: 23, seed: 9)]
        let greedy = try trunk.generate(prompts: prompts, options: .greedy(maxNewTokens: 6))
        for (i, prompt) in prompts.enumerated() {
            var prefix = prompt
            for token in greedy.tokens[i] {
                let logits = try trunk.logits(of: prefix)
                let last = Array(logits.suffix(trunk.config.vocabSize))
                XCTAssertEqual(Int(token), last.indices.max { last[$0] < last[$1] }!)
                prefix.append(token)
            }
        }
        let top1 = try trunk.generate(
            prompts: prompts, options: SamplingOptions(temperature: 1, topK: 1, maxNewTokens: 6, seed: 4))
        let nucleus = try trunk.generate(
            prompts: prompts, options: SamplingOptions(temperature: 1, topP: 1e-4, maxNewTokens: 6, seed: 4))
        XCTAssertEqual(top1.tokens, greedy.tokens)
        XCTAssertEqual(nucleus.tokens, greedy.tokens)
    }

    func testSeededSamplingIsReproducibleAndTopKRestrictsChoices() throws {
        let trunk = try randomTrunk(tinyConfig(context: 32), std: 0.6)
        let prompts: [[Int32]] = [[1, 2, 3], [4]]
        let options = SamplingOptions(temperature: 1.3, topK: 3, maxNewTokens: 12, seed: 11)
        let a = try trunk.generate(prompts: prompts, options: options)
        let b = try trunk.generate(prompts: prompts, options: options)
        var other = options
        other.seed = 12
        let c = try trunk.generate(prompts: prompts, options: other)
        XCTAssertEqual(a.tokens, b.tokens)
        XCTAssertEqual(a.logProbs, b.logProbs)
        XCTAssertNotEqual(a.tokens, c.tokens)
        for (i, prompt) in prompts.enumerated() {
            var prefix = prompt
            for token in a.tokens[i] {
                let last = Array(try trunk.logits(of: prefix).suffix(trunk.config.vocabSize))
                let top3 = last.indices.sorted { last[$0] > last[$1] }.prefix(3)
                XCTAssertTrue(top3.contains(Int(token)), "token \(token) is outside the top 3")
                prefix.append(token)
            }
        }
    }

    /// Sampling at τ = 1 draws each token with its softmax probability (2000 draws, 4σ band).
    func testSamplingFrequenciesFollowTheDistribution() throws {
        let trunk = try randomTrunk(tinyConfig(context: 8), std: 0.5)
        let n = 2000
        let result = try trunk.generate(
            prompts: Array(repeating: [7, 3], count: n),
            options: SamplingOptions(temperature: 1, maxNewTokens: 1, seed: 21))
        let last = Array(try trunk.logits(of: [7, 3]).suffix(trunk.config.vocabSize)).map(Double.init)
        let z = last.map { Foundation.exp($0) }.reduce(0, +)
        var counts = [Int](repeating: 0, count: last.count)
        for tokens in result.tokens { counts[Int(tokens[0])] += 1 }
        for (j, logit) in last.enumerated() {
            let p = Foundation.exp(logit) / z
            let sigma = (p * (1 - p) / Double(n)).squareRoot()
            XCTAssertEqual(Double(counts[j]) / Double(n), p, accuracy: 4 * sigma + 1e-3, "token \(j)")
        }
    }

    func testStopsAtEOSAndAtTheContextEnd() throws {
        let trunk = try randomTrunk(tinyConfig(context: 12))
        let prompt = randomTokens(3, vocab: 23, seed: 1)
        let first = try trunk.generate(prompts: [prompt], options: .greedy(maxNewTokens: 5)).tokens[0][0]
        let stopped = try trunk.generate(prompts: [prompt, [1]], options: .greedy(maxNewTokens: 5, eosTokenId: first))
        XCTAssertEqual(stopped.tokens[0], [first])
        XCTAssertTrue(stopped.endedWithEOS[0])
        // An end-of-turn id other than the EOS (a chat model's <|eot_id|>) ends the sequence the same way.
        let endOfTurn = try trunk.generate(
            prompts: [prompt], options: .greedy(maxNewTokens: 5, eosTokenId: nil, stopTokenIds: [first]))
        XCTAssertEqual(endOfTurn.tokens[0], [first])
        XCTAssertTrue(endOfTurn.endedWithEOS[0])
        let long = randomTokens(10, vocab: 23, seed: 2)
        let truncated = try trunk.generate(prompts: [long], options: .greedy(maxNewTokens: 20))
        XCTAssertEqual(truncated.tokens[0].count, 2, "10 prompt tokens + 2 new fill the context of 12")
        XCTAssertFalse(truncated.endedWithEOS[0])
        XCTAssertThrowsError(
            try trunk.generate(prompts: [randomTokens(12, vocab: 23, seed: 3)], options: .greedy(maxNewTokens: 1)))
        XCTAssertThrowsError(try trunk.generate(prompts: [[]], options: .greedy(maxNewTokens: 1)))
        XCTAssertThrowsError(try trunk.generate(prompts: [[1]], options: SamplingOptions(topP: 0)))
    }

    /// Wide enough (C = 256, 8 rows) that decoding runs the few-row products and the batched
    /// attention; rows that stop at EOS leave the batch and every other row still matches a full
    /// forward over its own sequence (≤ 1e-5), for both families.
    func testRowsLeavingTheBatchStillMatchTheFullForward() throws {
        let gpt2 = try randomTrunk(
            GPT2Config(
                vocabSize: 50, contextLength: 24, channels: 256, layers: 2, heads: 4, innerSize: 512,
                bosTokenId: 48, eosTokenId: 49), std: 0.05)
        let llama = try randomLlama(
            LlamaConfig(
                vocabSize: 50, maxPositions: 24, channels: 256, layers: 2, heads: 8, kvHeads: 2, headSize: 32,
                innerSize: 512, ropeTheta: 10_000, tiedEmbeddings: false, bosTokenId: 48, eosTokenIds: [49]))
        for tensor in llama.parameterLayout.tensors where !tensor.name.hasSuffix("norm.weight") {
            // std 0.06: logits of a sensible size at C = 256
            for i in 0..<tensor.count { llama.weights[tensor.offset + i] *= 0.2 }
        }
        for trunk in [gpt2 as any CausalLM, llama] {
            let prompts = (0..<8).map { randomTokens(2 + $0 % 3, vocab: 48, seed: UInt64(40 + $0)) }
            let free = try trunk.generate(prompts: prompts, options: .greedy(maxNewTokens: 8))
            // Stop at a token row 0 emits early; some rows end at it, the rest run to 8 tokens.
            let eos = free.tokens[0][1]
            let result = try trunk.generate(prompts: prompts, options: .greedy(maxNewTokens: 8, eosTokenId: eos))
            XCTAssertTrue(result.endedWithEOS[0])
            XCTAssertLessThanOrEqual(result.tokens[0].count, 2)
            XCTAssertTrue(result.tokens.contains { $0.count == 8 }, "some row must outlive the others")
            for (i, prompt) in prompts.enumerated() {
                XCTAssertEqual(
                    result.tokens[i], Array(free.tokens[i].prefix(result.tokens[i].count)),
                    "row \(i) follows the same greedy path")
                let scores = try trunk.scoreSequences([prompt + result.tokens[i]])[0]
                for (k, logProb) in result.logProbs[i].enumerated() {
                    XCTAssertEqual(logProb, scores[prompt.count - 1 + k], accuracy: 1e-5, "row \(i) token \(k)")
                }
            }
        }
    }
}
