import Foundation
import Kernels
import XCTest

/// The Llama-family ops: forward values against direct Double formulas (transformers'
/// definitions), backwards against central differences (relative 1e-2, absolute floor 1e-3).
final class LlamaKernelTests: XCTestCase {
    func testRMSNormForwardAndBackward() {
        var probe = Probe(seed: 21)
        let rows = 3, c = 37
        let x = probe.buffer(rows * c, std: 2, mean: 0.5), w = probe.buffer(c, mean: 1), r = probe.buffer(rows * c)
        let out = FloatBuffer(count: rows * c), rstd = FloatBuffer(count: rows)
        func forward() -> Double {
            rmsNormForward(
                out: out.pointer, rstd: rstd.pointer, x: x.pointer, weight: w.pointer, rows: rows, channels: c,
                eps: 1e-6)
            return weightedSum(out, r)
        }
        _ = forward()
        for row in 0..<rows {
            let xs = (0..<c).map { Double(x[row * c + $0]) }
            let scale = 1 / (xs.map { $0 * $0 }.reduce(0, +) / Double(c) + 1e-6).squareRoot()
            for j in 0..<c { XCTAssertEqual(Double(out[row * c + j]), xs[j] * scale * Double(w[j]), accuracy: 1e-5) }
        }
        let dx = FloatBuffer(count: rows * c), dw = FloatBuffer(count: c), scratch = FloatBuffer(count: 2 * c)
        rmsNormBackward(
            dx: dx.pointer, dweight: dw.pointer, dout: r.pointer, x: x.pointer, weight: w.pointer, rstd: rstd.pointer,
            rows: rows, channels: c, scratch: scratch.pointer)
        assertGradient("dx", analytic: dx, parameter: x, loss: forward)
        assertGradient("dweight", analytic: dw, parameter: w, loss: forward)
    }

    /// HF's rotate_half: x·cos + rotate_half(x)·sin with rotate_half(x) = (−x₂, x₁) per head.
    func testRotaryMatchesRotateHalfAndItsBackwardIsTheInverse() {
        var probe = Probe(seed: 22)
        let rows = 4, heads = 3, d = 8, ld = heads * d + 2  // a row stride wider than the heads
        let frequencies = (0..<(d / 2)).map { Float(1 / Foundation.pow(100.0, Double(2 * $0) / Double(d))) }
        let table = RotaryTable(inverseFrequencies: frequencies, positions: 16)
        let positions = [0, 5, 9, 15]
        let x = probe.buffer(rows * ld), r = probe.buffer(rows * ld)
        let y = FloatBuffer(count: rows * ld)
        func forward() -> Double {
            y.copy(from: x)
            table.apply(y.pointer, rows: rows, rowStride: ld, heads: heads, positions: positions)
            return weightedSum(y, r)
        }
        _ = forward()
        for row in 0..<rows {
            for h in 0..<heads {
                for i in 0..<d {
                    let half = d / 2, j = i % half
                    let angle = Double(Float(positions[row]) * frequencies[j])
                    let v = Double(x[row * ld + h * d + i])
                    let rotated =
                        i < half ? -Double(x[row * ld + h * d + i + half]) : Double(x[row * ld + h * d + i - half])
                    XCTAssertEqual(
                        Double(y[row * ld + h * d + i]), v * Foundation.cos(angle) + rotated * Foundation.sin(angle),
                        accuracy: 1e-5)
                }
            }
            for i in (heads * d)..<ld {
                XCTAssertEqual(y[row * ld + i], x[row * ld + i], "columns past the heads are untouched")
            }
        }
        // The backward of a rotation is the inverse rotation applied to the output gradient.
        let dx = FloatBuffer(count: rows * ld)
        dx.copy(from: r)
        table.apply(dx.pointer, rows: rows, rowStride: ld, heads: heads, positions: positions, inverse: true)
        assertGradient("dx", analytic: dx, parameter: x, maxChecks: 120, loss: forward)
    }

    func testSwiGLUForwardAndBackward() {
        var probe = Probe(seed: 23)
        let n = 200
        let gate = probe.buffer(n, std: 3), up = probe.buffer(n), r = probe.buffer(n), out = FloatBuffer(count: n)
        func forward() -> Double {
            swigluForward(out: out.pointer, gate: gate.pointer, up: up.pointer, count: n)
            return weightedSum(out, r)
        }
        _ = forward()
        for i in 0..<n {
            let g = Double(gate[i])
            XCTAssertEqual(Double(out[i]), g / (1 + Foundation.exp(-g)) * Double(up[i]), accuracy: 1e-5)
        }
        let dGate = FloatBuffer(count: n), dUp = FloatBuffer(count: n)
        swigluBackward(
            dGate: dGate.pointer, dUp: dUp.pointer, dout: r.pointer, gate: gate.pointer, up: up.pointer, count: n)
        assertGradient("dgate", analytic: dGate, parameter: gate, maxChecks: 200, loss: forward)
        assertGradient("dup", analytic: dUp, parameter: up, maxChecks: 200, loss: forward)
    }

    /// Grouped-query attention equals per-head causal attention where head h reads K/V head h/(H/G).
    func testGroupedAttentionForwardAndBackward() {
        var probe = Probe(seed: 24)
        let shape = GroupedAttentionShape(batch: 2, tokens: 5, heads: 4, kvHeads: 2, headSize: 3)
        let b = shape.batch, t = shape.tokens, h = shape.heads, g = shape.kvHeads, d = shape.headSize
        let q = probe.buffer(b * t * h * d), k = probe.buffer(b * t * g * d), v = probe.buffer(b * t * g * d),
            r = probe.buffer(b * t * h * d)
        let out = FloatBuffer(count: b * t * h * d), probs = FloatBuffer(count: b * h * t * t)
        func forward() -> Double {
            groupedAttentionForward(
                out: out.pointer, probs: probs.pointer, q: q.pointer, k: k.pointer, v: v.pointer, shape: shape)
            return weightedSum(out, r)
        }
        _ = forward()
        for bi in 0..<b {
            for hi in 0..<h {
                let gi = hi / (h / g)
                for i in 0..<t {
                    func query(_ e: Int) -> Double { Double(q[(bi * t + i) * h * d + hi * d + e]) }
                    func key(_ j: Int, _ e: Int) -> Double { Double(k[(bi * t + j) * g * d + gi * d + e]) }
                    func value(_ j: Int, _ e: Int) -> Double { Double(v[(bi * t + j) * g * d + gi * d + e]) }
                    var scores: [Double] = (0...i).map { j in
                        var dot = 0.0
                        for e in 0..<d { dot += query(e) * key(j, e) }
                        return dot / Double(d).squareRoot()
                    }
                    let m = scores.max()!
                    scores = scores.map { Foundation.exp($0 - m) }
                    let z = scores.reduce(0, +)
                    for e in 0..<d {
                        var expected = 0.0
                        for j in 0...i { expected += scores[j] / z * value(j, e) }
                        XCTAssertEqual(Double(out[(bi * t + i) * h * d + hi * d + e]), expected, accuracy: 1e-5)
                    }
                }
            }
        }
        let dq = FloatBuffer(count: q.count), dk = FloatBuffer(count: k.count), dv = FloatBuffer(count: v.count),
            scratch = FloatBuffer(count: t * t)
        groupedAttentionBackward(
            dq: dq.pointer, dk: dk.pointer, dv: dv.pointer, dout: r.pointer, q: q.pointer, k: k.pointer, v: v.pointer,
            probs: probs.pointer, shape: shape, scratch: scratch.pointer)
        assertGradient("dq", analytic: dq, parameter: q, maxChecks: 120, loss: forward)
        assertGradient("dk", analytic: dk, parameter: k, maxChecks: 60, loss: forward)
        assertGradient("dv", analytic: dv, parameter: v, maxChecks: 60, loss: forward)
    }
}
