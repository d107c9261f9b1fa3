import Foundation
import Kernels
import XCTest

/// Forward values against direct Double formulas, backwards against central differences.
/// Tolerances: relative 1e-2 with an absolute floor of 1e-3 (Float32 forward, h = 1e-2).
final class LayerGradientTests: XCTestCase {
    func testLayerNormForwardAndBackward() {
        var probe = Probe(seed: 11)
        let rows = 3, c = 37
        let x = probe.buffer(rows * c, std: 2, mean: 0.5), w = probe.buffer(c, mean: 1), b = probe.buffer(c)
        let r = probe.buffer(rows * c)
        let out = FloatBuffer(count: rows * c), mean = FloatBuffer(count: rows), rstd = FloatBuffer(count: rows)
        func forward() -> Double {
            layerNormForward(
                out: out.pointer, mean: mean.pointer, rstd: rstd.pointer, x: x.pointer,
                weight: w.pointer, bias: b.pointer, rows: rows, channels: c, eps: 1e-5)
            return weightedSum(out, r)
        }
        _ = forward()
        for row in 0..<rows {
            let xs = (0..<c).map { Double(x[row * c + $0]) }
            let m = xs.reduce(0, +) / Double(c)
            let v = xs.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(c)
            for j in 0..<c {
                let expected = (xs[j] - m) / (v + 1e-5).squareRoot() * Double(w[j]) + Double(b[j])
                XCTAssertEqual(Double(out[row * c + j]), expected, accuracy: 1e-5)
            }
        }
        let dx = FloatBuffer(count: rows * c), dw = FloatBuffer(count: c), db = FloatBuffer(count: c)
        let scratch = FloatBuffer(count: 2 * c)
        layerNormBackward(
            dx: dx.pointer, dweight: dw.pointer, dbias: db.pointer, dout: r.pointer, x: x.pointer,
            weight: w.pointer, mean: mean.pointer, rstd: rstd.pointer, rows: rows, channels: c,
            scratch: scratch.pointer)
        assertGradient("dx", analytic: dx, parameter: x, loss: forward)
        assertGradient("dweight", analytic: dw, parameter: w, loss: forward)
        assertGradient("dbias", analytic: db, parameter: b, loss: forward)
    }

    func testGELUForwardAndBackward() {
        var probe = Probe(seed: 12)
        let n = 300
        let x = probe.buffer(n, std: 3), r = probe.buffer(n), out = FloatBuffer(count: n)
        func forward() -> Double {
            geluForward(out: out.pointer, x: x.pointer, count: n)
            return weightedSum(out, r)
        }
        _ = forward()
        for i in 0..<n {
            let v = Double(x[i])
            let expected = 0.5 * v * (1 + Foundation.tanh((2 / Double.pi).squareRoot() * (v + 0.044715 * v * v * v)))
            XCTAssertEqual(Double(out[i]), expected, accuracy: 2e-6)
        }
        let dx = FloatBuffer(count: n)
        geluBackward(dx: dx.pointer, dout: r.pointer, x: x.pointer, count: n)
        assertGradient("dx", analytic: dx, parameter: x, maxChecks: 300, loss: forward)
    }

    func testCausalAttentionForwardAndBackward() {
        var probe = Probe(seed: 13)
        let shape = AttentionShape(batch: 2, tokens: 5, channels: 12, heads: 3)
        let b = shape.batch, t = shape.tokens, c = shape.channels, h = shape.heads, d = shape.headSize
        let qkv = probe.buffer(b * t * 3 * c), r = probe.buffer(b * t * c)
        let out = FloatBuffer(count: b * t * c), probs = FloatBuffer(count: b * h * t * t)
        func forward() -> Double {
            attentionForward(out: out.pointer, probs: probs.pointer, qkv: qkv.pointer, shape: shape)
            return weightedSum(out, r)
        }
        _ = forward()
        // Direct Double reference: causal softmax(q·k/√d)·v per batch row, head and position.
        for bi in 0..<b {
            for hi in 0..<h {
                for i in 0..<t {
                    func at(_ row: Int, _ part: Int, _ j: Int) -> Double {
                        Double(qkv[(bi * t + row) * 3 * c + part * c + hi * d + j])
                    }
                    var scores = (0...i).map { k in
                        (0..<d).map { at(i, 0, $0) * at(k, 1, $0) }.reduce(0, +) / Double(d).squareRoot()
                    }
                    let m = scores.max()!
                    scores = scores.map { Foundation.exp($0 - m) }
                    let z = scores.reduce(0, +)
                    for j in 0..<d {
                        let expected = (0...i).map { scores[$0] / z * at($0, 2, j) }.reduce(0, +)
                        XCTAssertEqual(Double(out[(bi * t + i) * c + hi * d + j]), expected, accuracy: 1e-5)
                    }
                }
            }
        }
        let dqkv = FloatBuffer(count: b * t * 3 * c), scratch = FloatBuffer(count: t * t)
        attentionBackward(
            dqkv: dqkv.pointer, dout: r.pointer, qkv: qkv.pointer, probs: probs.pointer, shape: shape,
            scratch: scratch.pointer)
        assertGradient("dqkv", analytic: dqkv, parameter: qkv, maxChecks: 360, loss: forward)
    }

    func testTokenLogProbsForwardAndBackwardWithTemperature() {
        var probe = Probe(seed: 14)
        let rows = 4, v = 29
        let logits = probe.buffer(rows * v, std: 2)
        var targets: [Int32] = [3, -1, 28, 0]
        let weights: [Float] = [0.7, 1.3, -0.4, 2]
        for temperature: Float in [1, 0.7] {
            let lp = FloatBuffer(count: rows), lse = FloatBuffer(count: rows), scratch = FloatBuffer(count: v)
            func forward() -> Double {
                tokenLogProbsForward(
                    logProbs: lp.pointer, logSumExp: lse.pointer, logits: logits.pointer, targets: &targets,
                    rows: rows, vocab: v, temperature: temperature, scratch: scratch.pointer)
                return (0..<rows).map { Double(lp[$0]) * Double(weights[$0]) }.reduce(0, +)
            }
            _ = forward()
            for r in 0..<rows {
                let row = (0..<v).map { Double(logits[r * v + $0]) / Double(temperature) }
                let z = Foundation.log(row.map { Foundation.exp($0) }.reduce(0, +))
                let expected = targets[r] < 0 ? 0 : row[Int(targets[r])] - z
                XCTAssertEqual(Double(lp[r]), expected, accuracy: 1e-5)
            }
            let grad = logits.clone()
            tokenLogProbsBackward(
                logitsToGrad: grad.pointer, dLogProbs: weights, logSumExp: lse.pointer, targets: &targets,
                rows: rows, vocab: v, temperature: temperature)
            for j in 0..<v { XCTAssertEqual(grad[v + j], 0, "row without target gets no gradient") }
            assertGradient("dlogits τ=\(temperature)", analytic: grad, parameter: logits, maxChecks: 200, loss: forward)
        }
    }

    /// Three AdamW steps against the update rule of torch.optim.AdamW written out in Double,
    /// over 37 parameters (two 16-lane blocks and a scalar tail).
    func testAdamWMatchesTorchUpdateRule() {
        let hyper = AdamWHyperparameters(learningRate: 0.1, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.1)
        var probe = Probe(seed: 15)
        let n = 37
        let p = probe.buffer(n), m = FloatBuffer(count: n), v = FloatBuffer(count: n)
        var ref = p.array.map(Double.init), rm = [Double](repeating: 0, count: n), rv = rm
        for step in 1...3 {
            let g = probe.buffer(n)
            adamWUpdate(
                params: p.pointer, grads: g.pointer, m: m.pointer, v: v.pointer, count: n, step: step, hyper: hyper)
            let t = Double(step)
            for i in 0..<n {
                let gi = Double(g[i])
                ref[i] *= 1 - 0.1 * 0.1
                rm[i] = 0.9 * rm[i] + 0.1 * gi
                rv[i] = 0.99 * rv[i] + 0.01 * gi * gi
                let denom = (rv[i] / (1 - Foundation.pow(0.99, t))).squareRoot() + 1e-8
                ref[i] -= 0.1 * (rm[i] / (1 - Foundation.pow(0.9, t))) / denom
            }
        }
        for i in 0..<n { XCTAssertEqual(Double(p[i]), ref[i], accuracy: 1e-5, "parameter \(i)") }
        // Worked number: step 1 moves a parameter by lr·sign(g) (m̂/√v̂ = ±1) plus decay: 1·0.99 − 0.1.
        let q = FloatBuffer([1]), qm = FloatBuffer(count: 1), qv = FloatBuffer(count: 1)
        adamWUpdate(params: q.pointer, grads: [3], m: qm.pointer, v: qv.pointer, count: 1, step: 1, hyper: hyper)
        XCTAssertEqual(q[0], 0.89, accuracy: 1e-6)
    }

    func testSgemmTransposesAndStrides() {
        // C = A·Bᵀ with A [2×3] read from a wider row stride of 4.
        let a: [Float] = [1, 2, 3, 99, 4, 5, 6, 99]
        let b: [Float] = [1, 0, 1, 0, 1, 0]  // [2×3]
        var c = [Float](repeating: 0, count: 4)
        BLAS.sgemm(transB: true, m: 2, n: 2, k: 3, a: a, lda: 4, b: b, ldb: 3, c: &c, ldc: 2)
        XCTAssertEqual(c, [4, 2, 10, 5])
    }
}

final class EntropyGradientTests: XCTestCase {
    /// ∂(Σ a·logp + Σ b·H)/∂logits against central differences, τ = 1 and 0.8.
    func testEntropyBonusGradient() {
        var probe = Probe(seed: 21)
        let rows = 3, v = 17
        let logits = probe.buffer(rows * v, std: 1.5)
        var targets: [Int32] = [4, 0, 16]
        let a: [Float] = [0.3, -1.1, 0.7], b: [Float] = [0.9, -0.4, 1.3]
        for temperature: Float in [1, 0.8] {
            let lp = FloatBuffer(count: rows), lse = FloatBuffer(count: rows), scratch = FloatBuffer(count: v)
            func forward() -> Double {
                tokenLogProbsForward(
                    logProbs: lp.pointer, logSumExp: lse.pointer, logits: logits.pointer, targets: &targets,
                    rows: rows, vocab: v, temperature: temperature, scratch: scratch.pointer)
                let h = rowEntropies(
                    logits: logits.pointer, logSumExp: lse.pointer, rows: rows, vocab: v, temperature: temperature)
                return (0..<rows).map { Double(a[$0]) * Double(lp[$0]) + Double(b[$0]) * Double(h[$0]) }.reduce(0, +)
            }
            _ = forward()
            // Entropy against its definition −Σ p log p.
            for r in 0..<rows {
                let z = (0..<v).map { Double(logits[r * v + $0]) / Double(temperature) }
                let m = z.max()!, s = z.map { Foundation.exp($0 - m) }.reduce(0, +)
                let h = -z.map { Foundation.exp($0 - m) / s }.map { $0 * Foundation.log($0) }.reduce(0, +)
                XCTAssertEqual(
                    Double(
                        rowEntropies(
                            logits: logits.pointer, logSumExp: lse.pointer, rows: rows, vocab: v,
                            temperature: temperature)[r]), h, accuracy: 1e-5)
            }
            let grad = logits.clone()
            tokenLogProbsBackward(
                logitsToGrad: grad.pointer, dLogProbs: a, logSumExp: lse.pointer, targets: &targets,
                rows: rows, vocab: v, temperature: temperature, dEntropy: b)
            assertGradient(
                "dlogits with entropy τ=\(temperature)", analytic: grad, parameter: logits, maxChecks: 60, loss: forward
            )
        }
    }
}
