import Foundation
import Kernels
import Models
import XCTest

/// A model small enough for finite differences over every tensor, with MLP width ≠ 4C and
/// heads > 1 so that no dimension mix-up can cancel out.
func tinyConfig(context: Int = 16) -> GPT2Config {
    GPT2Config(
        vocabSize: 23, contextLength: context, channels: 16, layers: 2, heads: 2, innerSize: 24,
        bosTokenId: 21, eosTokenId: 22)
}

func randomTrunk(_ config: GPT2Config = tinyConfig(), seed: UInt64 = 1, std: Float = 0.3) throws -> GPT2Trunk {
    let trunk = try GPT2Trunk(config: config)
    var rng = RNG(seed: seed)
    trunk.initialize(rng: &rng, std: std)
    // Non-trivial LayerNorm and bias parameters, so their gradients are exercised too.
    for tensor in trunk.layout.tensors.tensors where tensor.name.contains("ln_") || tensor.name.hasSuffix(".bias") {
        for i in 0..<tensor.count { trunk.weights[tensor.offset + i] += 0.1 * rng.normal() }
    }
    return trunk
}

func randomTokens(_ n: Int, vocab: Int, seed: UInt64) -> [Int32] {
    var rng = RNG(seed: seed)
    return (0..<n).map { _ in Int32(rng.next() % UInt64(vocab)) }
}

func fixturesDirectory() -> String {
    Bundle.module.resourceURL!.appendingPathComponent("Fixtures").path
}

func temporaryDirectory(_ name: String = #function) -> String {
    let path =
        NSTemporaryDirectory()
        + "rlhf-tests-\(getpid())-\(name.filter(\.isLetter))-\(UInt32.random(in: 0...UInt32.max))"
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

func maxAbsDifference(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count, "maxAbsDifference: \(a.count) vs \(b.count)")
    return zip(a, b).map { abs($0 - $1) }.max() ?? 0
}

/// KV-cache decoding of prompts with different lengths in one batch gives the hidden states,
/// logits and log-probs of a full forward over each finished sequence (≤ 1e-5).
func assertKVCacheMatchesFullForward(
    _ trunk: any CausalLM, adapter: LoRAAdapter?, file: StaticString = #filePath, line: UInt = #line
) throws {
    let v = trunk.config.vocabSize
    let prompts: [[Int32]] = [randomTokens(3, vocab: v, seed: 1), randomTokens(7, vocab: v, seed: 2), [5]]
    let result = try trunk.generate(
        prompts: prompts, adapter: adapter, options: SamplingOptions(temperature: 1, maxNewTokens: 10, seed: 3),
        returnHiddenStates: true)
    for (i, prompt) in prompts.enumerated() {
        let generated = result.tokens[i]
        XCTAssertEqual(generated.count, 10, file: file, line: line)
        let full = prompt + generated
        let fullLogits = try trunk.logits(of: full, adapter: adapter)
        let scores = try trunk.scoreSequences([full], adapter: adapter)[0]
        let hidden = FloatBuffer(result.hiddenStates![i])
        XCTAssertEqual(hidden.count, generated.count * trunk.config.channels, file: file, line: line)
        let head = LMHeadCache(rows: generated.count, vocab: v)
        trunk.lmHeadLogits(hidden: hidden.pointer, rows: generated.count, cache: head)
        for k in 0..<generated.count {
            let position = prompt.count - 1 + k
            let expected = Array(fullLogits[(position * v)..<((position + 1) * v)])
            let ours = Array(head.logits.array[(k * v)..<((k + 1) * v)])
            XCTAssertLessThanOrEqual(
                maxAbsDifference(ours, expected), 1e-5, "sequence \(i) token \(k)", file: file, line: line)
            XCTAssertEqual(result.logProbs[i][k], scores[position], accuracy: 1e-5, file: file, line: line)
        }
    }
}
