import Foundation
import Kernels
import Models
import XCTest

/// Whole-model gradients against central differences: every trunk tensor (embeddings, LayerNorms,
/// all projections and biases), LoRA A and B on all four targets, the tied LM head and a scalar
/// head, through one loss that uses both heads on the same hidden states.
/// Method: central differences, h = 1e-2, loss accumulated in Double; tolerance relative 2e-2
/// with an absolute floor of 2e-3 (Float32 forward). Up to 24 coordinates per tensor.
final class ModelGradientTests: XCTestCase {
    struct Setup {
        let trunk: GPT2Trunk
        let adapter: LoRAAdapter
        let head: ScalarHead
        let tokens: [Int32], targets: [Int32]
        let logProbWeights: [Float], valueWeights: [Float]
        let batch = 2, length = 6
    }

    func makeSetup() throws -> Setup {
        let config = tinyConfig()
        let trunk = try randomTrunk(config)
        let adapter = try LoRAAdapter(
            config: LoRAConfig(rank: 3, alpha: 6, targets: config.allLoRATargets), modelConfig: config)
        var rng = RNG(seed: 9)
        adapter.initialize(rng: &rng)
        // B = 0 after init would hide A's gradient path: give B random values.
        for i in 0..<adapter.weights.count where adapter.weights[i] == 0 { adapter.weights[i] = 0.3 * rng.normal() }
        let head = ScalarHead(channels: config.channels)
        head.initialize(rng: &rng, std: 0.5)
        head.parameters[config.channels] = 0.2
        let n = 12
        let tokens = randomTokens(n, vocab: config.vocabSize, seed: 4)
        var targets = randomTokens(n, vocab: config.vocabSize, seed: 5)
        targets[5] = -1
        targets[11] = -1
        return Setup(
            trunk: trunk, adapter: adapter, head: head, tokens: tokens, targets: targets,
            logProbWeights: (0..<n).map { _ in rng.normal() }, valueWeights: (0..<n).map { _ in rng.normal() })
    }

    func loss(_ s: Setup, act: TrunkActivations, cache: LMHeadCache, adapter: LoRAAdapter?) throws -> Double {
        try s.trunk.forward(tokens: s.tokens, adapter: adapter, activations: act)
        let lp = s.trunk.lmHeadLogProbs(hidden: act.hidden, targets: s.targets, temperature: 0.8, cache: cache)
        let values = s.head.forward(hidden: act.hidden.pointer, rows: s.tokens.count)
        return zip(lp, s.logProbWeights).map { Double($0) * Double($1) }.reduce(0, +)
            + zip(values, s.valueWeights).map { Double($0) * Double($1) }.reduce(0, +)
    }

    /// Runs forward + backward and returns (trunk, adapter, head) gradients.
    func gradients(_ s: Setup, trainTrunk: Bool) throws -> (FloatBuffer?, FloatBuffer, FloatBuffer) {
        let act = s.trunk.makeActivations(batch: s.batch, tokens: s.length, loraRank: 3)
        let cache = LMHeadCache(rows: s.tokens.count, vocab: s.trunk.config.vocabSize)
        _ = try loss(s, act: act, cache: cache, adapter: s.adapter)
        let trunkGrad = trainTrunk ? FloatBuffer(count: s.trunk.layout.parameterCount) : nil
        let adapterGrad = FloatBuffer(count: s.adapter.layout.totalCount)
        let headGrad = FloatBuffer(count: s.head.parameters.count)
        let dHidden = FloatBuffer(count: act.hidden.count)
        s.head.backward(
            dValues: s.valueWeights, hidden: act.hidden.pointer, dHidden: dHidden.pointer, gradients: headGrad)
        s.trunk.lmHeadBackward(
            dLogProbs: s.logProbWeights, hidden: act.hidden, cache: cache, dHidden: dHidden, trunkGradients: trunkGrad)
        s.trunk.backward(
            dHidden: dHidden, adapter: s.adapter, activations: act, trunkGradients: trunkGrad,
            adapterGradients: adapterGrad)
        return (trunkGrad, adapterGrad, headGrad)
    }

    func testEveryParameterGradientMatchesFiniteDifferences() throws {
        let s = try makeSetup()
        let (trunkGrad, adapterGrad, headGrad) = try gradients(s, trainTrunk: true)
        let act = s.trunk.makeActivations(batch: s.batch, tokens: s.length, loraRank: 3)
        let cache = LMHeadCache(rows: s.tokens.count, vocab: s.trunk.config.vocabSize)
        let f = { try self.loss(s, act: act, cache: cache, adapter: s.adapter) }
        func check(_ name: String, _ grad: FloatBuffer, _ params: FloatBuffer, offset: Int, count: Int) throws {
            let stride = max(1, count / 24)
            for i in Swift.stride(from: offset, to: offset + count, by: stride) {
                let numeric = try FiniteDifferences.derivative(at: params.pointer + i, step: 1e-2, of: f)
                XCTAssertTrue(
                    FiniteDifferences.agrees(Double(grad[i]), numeric, relative: 2e-2, absolute: 2e-3),
                    "\(name)[\(i - offset)]: analytic \(grad[i]) vs finite difference \(numeric)")
            }
        }
        for tensor in s.trunk.layout.tensors.tensors {
            try check(tensor.name, trunkGrad!, s.trunk.weights, offset: tensor.offset, count: tensor.count)
        }
        XCTAssertEqual(s.adapter.layout.tensors.count, 2 * 4 * 2, "A and B on 4 targets in 2 layers")
        for tensor in s.adapter.layout.tensors {
            try check("lora " + tensor.name, adapterGrad, s.adapter.weights, offset: tensor.offset, count: tensor.count)
        }
        try check("scalar head", headGrad, s.head.parameters, offset: 0, count: s.head.parameters.count)
        // Gradients are not trivially zero anywhere.
        for tensor in s.trunk.layout.tensors.tensors {
            let norm = (0..<tensor.count).map { abs(trunkGrad![tensor.offset + $0]) }.max()!
            XCTAssertGreaterThan(norm, 0, "\(tensor.name) has an all-zero gradient")
        }
    }

    /// With a frozen trunk only A and B get gradients, and they equal the trainable-trunk ones.
    func testFrozenTrunkGivesSameAdapterGradientsAndTouchesNothingElse() throws {
        let s = try makeSetup()
        let before = s.trunk.weights.array
        let (_, frozenAdapterGrad, _) = try gradients(s, trainTrunk: false)
        let (_, fullAdapterGrad, _) = try gradients(s, trainTrunk: true)
        XCTAssertEqual(frozenAdapterGrad.array, fullAdapterGrad.array)
        XCTAssertEqual(s.trunk.weights.array, before, "forward/backward never write the trunk")
    }

    /// The training step used by `bench model`: full-weight gradients of the mean NLL.
    func testLanguageModelStepGradient() throws {
        let trunk = try randomTrunk()
        let step = LanguageModelStep(trunk: trunk, batch: 2, tokens: 6)
        let tokens = randomTokens(12, vocab: 23, seed: 7)
        var targets = Array(tokens.dropFirst()) + [-1]
        targets[5] = -1
        let grad = FloatBuffer(count: trunk.layout.parameterCount)
        let loss = try step.run(tokens: tokens, targets: targets, trunkGradients: grad)
        XCTAssertGreaterThan(loss, 0)
        let f = { Double(try step.run(tokens: tokens, targets: targets)) }
        for name in ["wte.weight", "h.1.mlp.c_fc.weight", "ln_f.bias"] {
            let t = trunk.layout.tensors[name]!
            for i in Swift.stride(from: t.offset, to: t.offset + t.count, by: max(1, t.count / 16)) {
                let numeric = try FiniteDifferences.derivative(at: trunk.weights.pointer + i, step: 1e-2, of: f)
                XCTAssertTrue(
                    FiniteDifferences.agrees(Double(grad[i]), numeric, relative: 2e-2, absolute: 5e-4),
                    "\(name): analytic \(grad[i]) vs \(numeric)")
            }
        }
    }
}
