import Foundation
import Kernels
@testable import Models
import XCTest

/// algorithms.md oracle R2M (toy weights) and the §7.4 invariants, plus the head's gradient
/// against central differences.
final class R2MHeadTests: XCTestCase {
    func toy() -> (R2MHead, [Float], [Float]) {
        let head = R2MHead(channels: 4, policyChannels: 3, heads: 1, keySize: 2, valueSize: 2)
        let P = head.parameters.pointer
        for i in 0..<8 { P[head.layout["r2m.q.weight"]!.offset + i] = 0.1 }
        for i in 0..<6 { P[head.layout["r2m.k.weight"]!.offset + i] = 0.2 }
        let v = head.layout["r2m.v.weight"]!.offset
        P[v + 0] = 1; P[v + 4] = 1                                  // I_3[:2]
        for i in 0..<8 { P[head.layout["r2m.o.weight"]!.offset + i] = 0.5 }
        let w = head.layout["r2m.head"]!.offset
        for (i, x) in [Float(1), 0.5, -0.5, 0.25, 0].enumerated() { P[w + i] = x }
        return (head, [0.5, -1, 0.25, 2], (0..<15).map { Float($0) / 10 })
    }

    func testToyNumbers() {
        let (head, h, p) = toy()
        let c = head.forward(rewardHidden: h, policyHidden: p, weight: 1)
        for (a, b) in zip(c.attentionWeights, [0.182589, 0.190907, 0.199604, 0.208697, 0.218204] as [Float]) { XCTAssertEqual(a, b, accuracy: 1e-5) }
        XCTAssertEqual(c.reward, 1.220882, accuracy: 1e-5)
        XCTAssertEqual(head.forward(rewardHidden: h, policyHidden: p, weight: 0.5).reward, 0.797941, accuracy: 1e-5)
        XCTAssertEqual(head.forward(rewardHidden: h, policyHidden: p, weight: 0).reward, 0.375, accuracy: 1e-6, "w = 0: the base head on h")
    }

    func testFreshHeadIsTheOriginalRewardAndGradientsMatchFiniteDifferences() {
        var rng = RNG(seed: 4)
        let base = ScalarHead(channels: 6)
        base.initialize(rng: &rng, std: 0.5)
        let head = R2MHead(channels: 6, policyChannels: 5, heads: 2, keySize: 3, valueSize: 2)
        head.initialize(rewardHead: base, rng: &rng, std: 0.4)
        let h = (0..<6).map { _ in rng.normal() }, p = (0..<(4 * 5)).map { _ in rng.normal() }
        let original = base.forward(hidden: h, rows: 1)[0]
        XCTAssertEqual(head.forward(rewardHidden: h, policyHidden: p, weight: 1).reward, original, accuracy: 1e-6, "W_o = 0 at start")
        // Move W_o off zero, then check every parameter's gradient in Float64 differences.
        for i in 0..<head.layout["r2m.o.weight"]!.count { head.parameters[head.layout["r2m.o.weight"]!.offset + i] = 0.3 * rng.normal() }
        let cache = head.forward(rewardHidden: h, policyHidden: p, weight: 0.7)
        let grads = FloatBuffer(count: head.parameters.count)
        head.backward(cache, dReward: 1, gradients: grads)
        var worst: Float = 0
        for i in 0..<head.parameters.count {
            let saved = head.parameters[i], eps: Float = 1e-2
            head.parameters[i] = saved + eps
            let up = head.forward(rewardHidden: h, policyHidden: p, weight: 0.7).reward
            head.parameters[i] = saved - eps
            let down = head.forward(rewardHidden: h, policyHidden: p, weight: 0.7).reward
            head.parameters[i] = saved
            worst = max(worst, abs((up - down) / (2 * eps) - grads[i]))
        }
        XCTAssertLessThan(worst, 2e-3, "R2M head gradient vs central differences")
    }
}
