import Foundation
import Kernels
import Models
import XCTest

/// Precision bf16 on both families (docs/architecture.md §12): close to fp32, deterministic, and a
/// trainable trunk's bf16 copy never stale. The comparison with transformers' bf16 is in
/// LlamaGoldenTests.
final class BFloat16ModelTests: XCTestCase {
    func trunks() throws -> [any CausalLM] {
        [try randomTrunk(), try randomLlama(), try randomLlama(tinyLlamaConfig(tied: true), seed: 4)]
    }

    /// Token log-probs and their loss through one training step: (loss, log-probs, trunk gradients).
    func step(_ trunk: any CausalLM, seed: UInt64 = 9) throws -> (loss: Float, logProbs: [Float], gradients: [Float]) {
        let tokens = randomTokens(24, vocab: trunk.config.vocabSize, seed: seed)
        let targets = tokens.indices.map { $0 % 8 == 7 ? -1 : tokens[($0 + 1) % tokens.count] }
        let step = LanguageModelStep(trunk: trunk, batch: 3, tokens: 8)
        let gradients = FloatBuffer(count: trunk.parameterCount)
        let loss = try step.run(tokens: tokens, targets: targets, trunkGradients: gradients)
        let logProbs = trunk.lmHeadLogProbs(hidden: step.activations.hidden, targets: targets, cache: step.head)
        return (loss, logProbs, gradients.array)
    }

    /// bf16 changes the numbers (the path runs) by no more than bf16 rounding of the inputs
    /// allows: |Δ log-prob| ≤ 0.05 on these random models (weights of std 0.3, logits of a few
    /// units), gradients at a cosine ≥ 0.999 with fp32's.
    func testBF16StaysCloseToFP32() throws {
        for trunk in try trunks() {
            let name = trunk.config.modelType
            let exact = try step(trunk)
            trunk.use(.bf16, frozen: false)
            XCTAssertEqual(trunk.precision, .bf16)
            let mixed = try step(trunk)
            let difference = maxAbsDifference(exact.logProbs, mixed.logProbs)
            XCTAssertGreaterThan(difference, 0, "\(name): bf16 gave fp32's bits, so it did not run")
            XCTAssertLessThan(difference, 0.05, name)
            XCTAssertEqual(mixed.loss, exact.loss, accuracy: 0.02, name)
            var dot = 0.0, a2 = 0.0, b2 = 0.0
            for (a, b) in zip(exact.gradients, mixed.gradients) {
                dot += Double(a) * Double(b)
                a2 += Double(a) * Double(a)
                b2 += Double(b) * Double(b)
            }
            XCTAssertGreaterThan(dot / (a2 * b2).squareRoot(), 0.999, name)
        }
    }

    /// Same weights, tokens and thread count → same bits, and a clone in bf16 computes the same.
    func testBF16RepeatsBitForBit() throws {
        for trunk in try trunks() {
            trunk.use(.bf16, frozen: false)
            let first = try step(trunk), second = try step(trunk)
            XCTAssertEqual(first.loss.bitPattern, second.loss.bitPattern)
            XCTAssertEqual(first.logProbs.map(\.bitPattern), second.logProbs.map(\.bitPattern))
            XCTAssertEqual(first.gradients.map(\.bitPattern), second.gradients.map(\.bitPattern))
            let copy = try trunk.clone()
            XCTAssertEqual(copy.precision, .bf16)
            XCTAssertEqual(try step(copy).logProbs.map(\.bitPattern), first.logProbs.map(\.bitPattern))
        }
    }

    /// A trainable trunk's bf16 copy follows its fp32 weights (an optimizer step is seen by the
    /// next pass); a frozen trunk's copy is the rounding made when bf16 was switched on.
    func testTrainableCopyFollowsTheWeights() throws {
        for trunk in try trunks() {
            trunk.use(.bf16, frozen: false)
            let before = try step(trunk)
            for i in 0..<trunk.parameterCount { trunk.weights[i] *= 1.25 }
            let after = try step(trunk)
            let fresh = try trunk.config.makeModel(weights: trunk.weights.clone())
            fresh.use(.bf16, frozen: true)
            XCTAssertNotEqual(after.logProbs, before.logProbs)
            XCTAssertEqual(after.logProbs.map(\.bitPattern), try step(fresh).logProbs.map(\.bitPattern))
        }
    }

    /// KV-cache decoding in bf16 gives the full forward's log-probs: a row's products do not
    /// depend on how many rows the call has (BFloat16Tests), so the one-row steps agree too.
    func testBF16KVCacheMatchesFullForward() throws {
        for trunk in [try randomTrunk(tinyConfig(context: 32)), try randomLlama(tinyLlamaConfig(context: 32))]
            as [any CausalLM]
        {
            trunk.use(.bf16, frozen: true)
            try assertKVCacheMatchesFullForward(trunk, adapter: nil)
        }
    }
}

/// Our bf16 against transformers under CPU autocast bf16 on the same fp32 weights (fixtures by
/// Fixtures/make_bf16_fixture.py). Autocast also rounds each matmul's output to bf16, which we
/// keep in fp32, so the two differ by about as much as each differs from fp32: the stated
/// tolerance is 0.05 in log-prob (transformers' own bf16 moves these log-probs by up to 0.042).
final class BFloat16GoldenTests: XCTestCase {
    struct Golden: Decodable {
        let sequences: [[Int32]]
        let fp32: [[Double]]
        let autocast_bf16: [[Double]]
    }

    func testBF16LogProbsMatchTransformersAutocast() throws {
        for name in ["llama-tiny", "qwen2-tiny"] {
            let url = URL(fileURLWithPath: fixturesDirectory()).appendingPathComponent("\(name)-bf16-logprobs.json")
            let golden = try JSONDecoder().decode(Golden.self, from: Data(contentsOf: url))
            let trunk = try HFCheckpoint.load(directory: fixturesDirectory() + "/" + name)
            trunk.use(.bf16, frozen: true)
            var worst = 0.0, theirs = 0.0
            for (i, sequence) in golden.sequences.enumerated() {
                let V = trunk.config.vocabSize
                let logits = try trunk.logits(of: sequence)
                for t in 0..<(sequence.count - 1) {
                    let row = logits[(t * V)..<((t + 1) * V)].map(Double.init)
                    let top = row.max()!
                    let logSum = top + log(row.reduce(0) { $0 + exp($1 - top) })
                    let ours = row[Int(sequence[t + 1])] - logSum
                    worst = max(worst, abs(ours - golden.autocast_bf16[i][t]))
                    theirs = max(theirs, abs(golden.fp32[i][t] - golden.autocast_bf16[i][t]))
                }
            }
            print("\(name): max |ours bf16 − transformers autocast bf16| = \(worst); theirs vs fp32 \(theirs)")
            XCTAssertLessThanOrEqual(worst, 0.05, name)
            XCTAssertGreaterThan(theirs, 0.005, "\(name): the fixture's bf16 must differ from fp32")
        }
    }
}
