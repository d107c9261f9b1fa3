import Alignment
import Foundation
import XCTest

func assertClose(
    _ a: [Double], _ b: [Double], _ tolerance: Double = 1e-5, _ message: String = "", file: StaticString = #filePath,
    line: UInt = #line
) {
    XCTAssertEqual(a.count, b.count, message, file: file, line: line)
    for (x, y) in zip(a, b) {
        XCTAssertEqual(x, y, accuracy: tolerance, "\(message): \(a) vs \(b)", file: file, line: line)
    }
}

/// docs/algorithms.md, test oracles table P (one sequence, T = 4) and table G.
final class PPOMathTests: XCTestCase {
    let logpOld = [-1.0, -0.5, -2.0, -0.2], logpRef = [-1.2, -0.4, -2.5, -0.3]
    let vOld = [0.5, 0.6, 0.4, 0.8], logpNew = [-0.9, -0.6, -1.7, -0.2], vNew = [0.7, 0.5, 0.9, 0.9]

    func testTableP() {
        assertClose(PPOMath.kl(logpOld, logpRef, estimator: .k1), [0.2, -0.1, 0.5, 0.1], 1e-9, "k1")
        assertClose(PPOMath.kl(logpOld, logpRef, estimator: .k2), [0.02, 0.005, 0.125, 0.005], 1e-9, "k2")
        assertClose(PPOMath.kl(logpOld, logpRef, estimator: .k3), [0.018731, 0.005171, 0.106531, 0.004837], 1e-6, "k3")
        let rewards = PPOMath.shapedRewards(kl: PPOMath.kl(logpOld, logpRef, estimator: .k1), beta: 0.05, score: 1)
        assertClose(rewards, [-0.01, 0.005, -0.025, 0.995], 1e-9, "shaped rewards")
        let (a, g) = PPOMath.gae(rewards: rewards, values: vOld, gamma: 1, lambda: 0.95)
        assertClose(a, [0.410376, 0.337237, 0.56025, 0.195], 1e-6, "GAE")
        assertClose(g, [0.910376, 0.937237, 0.96025, 0.995], 1e-6, "returns")
        let trl = PPOMath.whiten([a], unbiased: true)[0], openrlhf = PPOMath.whiten([a], unbiased: false)[0]
        assertClose(trl, [0.227892, -0.252999, 1.213332, -1.188226], 1e-5, "whitened (unbiased)")
        assertClose(openrlhf, [0.263147, -0.292138, 1.401036, -1.372045], 1e-5, "whitened (biased)")
        let policy = PPOMath.policyLoss(logp: logpNew, logpOld: logpOld, advantages: trl, clipLow: 0.2, clipHigh: 0.2)
        XCTAssertEqual(policy.loss, -0.072678, accuracy: 1e-5)
        XCTAssertEqual(policy.clipFraction, 0.25)
        let value = PPOMath.valueLoss(values: vNew, oldValues: vOld, returns: g, clip: 0.2)
        XCTAssertEqual(value.loss, 0.046780, accuracy: 1e-5)
        XCTAssertEqual(policy.loss + 0.1 * value.loss, -0.068, accuracy: 1e-5)
        var controller = AdaptiveKLController(beta: 0.2, target: 6)
        controller.update(observedKL: 8, steps: 256)
        XCTAssertEqual(controller.beta, 0.201024, accuracy: 1e-6)
        XCTAssertEqual(PPOMath.entropy(logits: [2, 1, 0]), 0.832396, accuracy: 1e-6)
    }

    func testInvariants() {
        // logp_old == logp_ref: the shaped reward is the score on the last token only.
        let kl = PPOMath.kl(logpOld, logpOld, estimator: .k1)
        XCTAssertEqual(PPOMath.shapedRewards(kl: kl, beta: 0.05, score: 1.5), [0, 0, 0, 1.5])
        for e in KLEstimator.allCases { XCTAssertEqual(PPOMath.kl(logpOld, logpOld, estimator: e), [0, 0, 0, 0]) }
        // logp == logp_old: ratio 1, L = −mean(A) = 0 over whitened advantages.
        let (a, _) = PPOMath.gae(rewards: [0.1, 0.2, 0.3, 1], values: vOld, gamma: 1, lambda: 0.95)
        let w = PPOMath.whiten([a], unbiased: true)[0]
        XCTAssertEqual(
            PPOMath.policyLoss(logp: logpOld, logpOld: logpOld, advantages: w, clipLow: 0.2, clipHigh: 0.2).loss, 0,
            accuracy: 1e-12)
        var fixed = AdaptiveKLController(beta: 0.1, target: nil)
        fixed.update(observedKL: 100, steps: 10)
        XCTAssertEqual(fixed.beta, 0.1, "no target: β is fixed")
        XCTAssertEqual(PPOMath.shapedRewards(kl: [0, 0], beta: 1, score: 50, clip: 10), [0, 10], "reward clipping")
    }

    /// ∂L/∂logp and ∂L/∂V against central differences, in and out of the clip ranges, with dual clip.
    func testLossGradients() {
        let adv = [0.9, -1.3, 0.4, -0.7]
        for dual in [nil, 1.5] as [Double?] {
            let logp = [-0.95, -0.3, -2.4, -0.05]  // ratios inside and outside [0.8, 1.2]
            let (_, grad, _) = PPOMath.policyLoss(
                logp: logp, logpOld: logpOld, advantages: adv, clipLow: 0.2, clipHigh: 0.2, dualClip: dual)
            for t in logp.indices {
                var plus = logp, minus = logp
                plus[t] += 1e-6
                minus[t] -= 1e-6
                let f = { (x: [Double]) in
                    PPOMath.policyLoss(
                        logp: x, logpOld: self.logpOld, advantages: adv, clipLow: 0.2, clipHigh: 0.2, dualClip: dual
                    ).loss
                }
                XCTAssertEqual(
                    grad[t], (f(plus) - f(minus)) / 2e-6, accuracy: 1e-6,
                    "policy token \(t) dual \(String(describing: dual))")
            }
        }
        let values = [0.75, 0.45, 0.3, 1.2], returns = [0.9, 0.9, 0.9, 0.9]
        let (_, dV) = PPOMath.valueLoss(values: values, oldValues: vOld, returns: returns, clip: 0.2)
        for t in values.indices {
            var plus = values, minus = values
            plus[t] += 1e-6
            minus[t] -= 1e-6
            let f = { (x: [Double]) in
                PPOMath.valueLoss(values: x, oldValues: self.vOld, returns: returns, clip: 0.2).loss
            }
            XCTAssertEqual(dV[t], (f(plus) - f(minus)) / 2e-6, accuracy: 1e-6, "value token \(t)")
        }
    }

    func testTableG() {
        let rewards = [1.0, 0, 0, 1, 0.5, 0, 0, 0], groups = [[0, 1, 2, 3], [4, 5, 6, 7]]
        assertClose(
            GroupAdvantages.compute(.grpo, rewards: rewards, groups: groups),
            [0.865875, -0.865875, -0.865875, 0.865875, 1.4994, -0.4998, -0.4998, -0.4998], 1e-4, "GRPO")
        assertClose(
            GroupAdvantages.compute(.drGRPO, rewards: rewards, groups: groups),
            [0.5, -0.5, -0.5, 0.5, 0.375, -0.125, -0.125, -0.125], 1e-9, "Dr.GRPO")
        assertClose(
            GroupAdvantages.compute(.rloo, rewards: rewards, groups: groups),
            [0.666667, -0.666667, -0.666667, 0.666667, 0.5, -0.166667, -0.166667, -0.166667], 1e-6, "RLOO")
        // REINFORCE++(-baseline) with one token per sample and no KL: whitened (biased) over the batch.
        let baseline = GroupAdvantages.compute(.reinforceBaseline, rewards: rewards, groups: groups)
        assertClose(
            PPOMath.whiten([baseline], unbiased: false)[0],
            [1.297771, -1.297771, -1.297771, 1.297771, 0.973329, -0.324443, -0.324443, -0.324443], 1e-5,
            "REINFORCE++-baseline")
        assertClose(
            PPOMath.whiten([rewards], unbiased: false)[0],
            [1.604515, -0.729325, -0.729325, 1.604515, 0.437595, -0.729325, -0.729325, -0.729325], 1e-5, "REINFORCE++")
        for e in [AdvantageEstimator.grpo, .drGRPO, .rloo] {
            XCTAssertEqual(
                GroupAdvantages.compute(e, rewards: [2, 2, 2], groups: [[0, 1, 2]]), [0, 0, 0],
                "\(e): equal rewards ⇒ 0")
        }
    }
}

final class BradleyTerryTests: XCTestCase {
    /// docs/algorithms.md table R1.
    func testTableR1() {
        XCTAssertEqual(BradleyTerry.loss(chosen: 1, rejected: 0).loss, 0.313262, accuracy: 1e-6)
        XCTAssertEqual(BradleyTerry.loss(chosen: 1, rejected: 0, margin: 0.5).loss, 0.474077, accuracy: 1e-6)
        XCTAssertEqual(BradleyTerry.loss(chosen: 0.3, rejected: 0.3).loss, log(2), accuracy: 1e-12)
        XCTAssertEqual(
            BradleyTerry.loss(chosen: 40, rejected: -40).loss, 0, accuracy: 1e-12, "stable for large margins")
        XCTAssertEqual(BradleyTerry.loss(chosen: -40, rejected: 40).loss, 80, accuracy: 1e-9)
        let (_, dw, dl) = BradleyTerry.loss(chosen: 0.7, rejected: -0.2)
        let f = { (w: Double, l: Double) in BradleyTerry.loss(chosen: w, rejected: l).loss }
        XCTAssertEqual(dw, (f(0.7 + 1e-6, -0.2) - f(0.7 - 1e-6, -0.2)) / 2e-6, accuracy: 1e-7)
        XCTAssertEqual(dl, (f(0.7, -0.2 + 1e-6) - f(0.7, -0.2 - 1e-6)) / 2e-6, accuracy: 1e-7)
    }
}
