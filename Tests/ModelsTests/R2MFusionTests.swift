import Foundation
import Kernels
import XCTest

@testable import Models

/// R2M's fusion (Huang et al., arXiv 2601.22664 v4, §4.1, Eqs. 3–4) on the docs/algorithms.md toy
/// weights, its ω schedule, and its gradient against central differences.
final class R2MFusionTests: XCTestCase {
    /// H_last = [0.5, −1, 0.25, 2]; h = arange(15).reshape(5, 3)/10; W_q = 0.1·1 [2, 4];
    /// W_k = 0.2·1 [2, 3]; W_v = I_3[:2]; W_o = 0.5·1 [4, 2]; ϕ = w [1, 0.5, −0.5, 0.25], b = 0; d = 2.
    func toy() -> (R2MFusion, [Float], [Float]) {
        let fusion = R2MFusion(channels: 4, policyChannels: 3, attentionSize: 2)
        let P = fusion.parameters.pointer
        for i in 0..<8 { P[fusion.layout["r2m.q.weight"]!.offset + i] = 0.1 }
        for i in 0..<6 { P[fusion.layout["r2m.k.weight"]!.offset + i] = 0.2 }
        let v = fusion.layout["r2m.v.weight"]!.offset
        P[v + 0] = 1
        P[v + 4] = 1
        for i in 0..<8 { P[fusion.layout["r2m.o.weight"]!.offset + i] = 0.5 }
        let w = fusion.layout["r2m.head"]!.offset
        for (i, x) in [Float(1), 0.5, -0.5, 0.25, 0].enumerated() { P[w + i] = x }
        return (fusion, [0.5, -1, 0.25, 2], (0..<15).map { Float($0) / 10 })
    }

    /// Worked by hand (numpy): q = W_q H_last = [0.175, 0.175]; s_t = (W_k h_t)·q/√2;
    /// a = [0.182589, 0.190907, 0.199604, 0.208697, 0.218204]; f = aᵀh W_vᵀ = [0.626706, 0.726706];
    /// Ĥ = W_o f = 0.676706·1; r = ϕ((1 − ω)Ĥ + ω H_last): ω = 1 → 0.375 (the RM head on H_last),
    /// ω = 0.7 → 0.516265, ω = 0 → 0.845882.
    func testToyNumbers() {
        let (fusion, hLast, h) = toy()
        let c = fusion.forward(rewardHidden: hLast, policyHidden: h, omega: 0.7)
        for (a, b) in zip(c.attention, [0.182589, 0.190907, 0.199604, 0.208697, 0.218204] as [Float]) {
            XCTAssertEqual(a, b, accuracy: 1e-5)
        }
        XCTAssertEqual(c.reward, 0.516265, accuracy: 1e-5)
        XCTAssertEqual(
            fusion.forward(rewardHidden: hLast, policyHidden: h, omega: 1).reward, 0.375, accuracy: 1e-6,
            "ω = 1: the reward model's own head on H_last")
        XCTAssertEqual(fusion.forward(rewardHidden: hLast, policyHidden: h, omega: 0).reward, 0.845882, accuracy: 1e-5)
    }

    /// Eq. 4: ω(t) = max(½cos(πt/T) + ½, Ω); T = 4, Ω = 0.7 → 1, 0.853553, 0.7, 0.7.
    func testOmegaSchedule() {
        let omega = (0..<4).map { R2MFusion.omega(round: $0, rounds: 4, floor: 0.7) }
        for (a, b) in zip(omega, [1, 0.8535533905932737, 0.7, 0.7]) { XCTAssertEqual(a, b, accuracy: 1e-12) }
        XCTAssertEqual(
            R2MFusion.omega(round: 2, rounds: 4, floor: 0), 0.5, accuracy: 1e-12, "no floor: the cosine alone")
    }

    func testFreshFusionIsTheOriginalRewardAtRoundZeroAndGradientsMatchFiniteDifferences() {
        var rng = RNG(seed: 4)
        let base = ScalarHead(channels: 6)
        base.initialize(rng: &rng, std: 0.5)
        let fusion = R2MFusion(channels: 6, policyChannels: 5, attentionSize: 3)
        fusion.initialize(rewardHead: base.parameters.array, rng: &rng, std: 0.4)
        let hLast = (0..<6).map { _ in rng.normal() }, h = (0..<(4 * 5)).map { _ in rng.normal() }
        let original = base.forward(hidden: hLast, rows: 1)[0]
        XCTAssertEqual(
            fusion.forward(rewardHidden: hLast, policyHidden: h, omega: 1).reward, original, accuracy: 1e-6,
            "ω = 1: the original reward")
        XCTAssertNotEqual(
            fusion.forward(rewardHidden: hLast, policyHidden: h, omega: 0.6).reward, original,
            "ω < 1: the untrained cross-attention adds a term of the policy's states")
        let cache = fusion.forward(rewardHidden: hLast, policyHidden: h, omega: 0.7)
        let grads = FloatBuffer(count: fusion.parameters.count)
        fusion.backward(cache, dReward: 1, gradients: grads)
        var worst: Float = 0
        for i in 0..<fusion.parameters.count {
            let saved = fusion.parameters[i], eps: Float = 1e-2
            fusion.parameters[i] = saved + eps
            let up = fusion.forward(rewardHidden: hLast, policyHidden: h, omega: 0.7).reward
            fusion.parameters[i] = saved - eps
            let down = fusion.forward(rewardHidden: hLast, policyHidden: h, omega: 0.7).reward
            fusion.parameters[i] = saved
            worst = max(worst, abs((up - down) / (2 * eps) - grads[i]))
        }
        XCTAssertLessThan(worst, 2e-3, "R2M fusion gradient vs central differences")
        XCTAssertGreaterThan(
            (0..<fusion.layout["r2m.q.weight"]!.count).map { abs(grads[fusion.layout["r2m.q.weight"]!.offset + $0]) }
                .max()!, 0,
            "every projection trains from the first update")
    }
}
