import Foundation
import XCTest

@testable import Alignment

/// The GRPO recipes' formulas (issue 29, point 3) on worked numbers, as TRL's GRPOTrainer and
/// verl compute them: clip-higher, the four loss aggregations, GSPO's sequence ratio, DAPO's
/// soft overlong punishment.
final class RecipeMathTests: XCTestCase {
    func testClipHigherBoundsEachSideByItsOwnEpsilon() {
        // ρ = e^0.3 = 1.3499, A = 1: ε_high 0.28 clips it to 1.28 (loss −1.28, no gradient); 0.4 does not.
        let up = PPOMath.policyLoss(logp: [0.3], logpOld: [0], advantages: [1], clipLow: 0.2, clipHigh: 0.28)
        XCTAssertEqual(up.loss, -1.28, accuracy: 1e-12)
        XCTAssertEqual(up.dLogp, [0])
        XCTAssertEqual(up.clipFraction, 1)
        let free = PPOMath.policyLoss(logp: [0.3], logpOld: [0], advantages: [1], clipLow: 0.2, clipHigh: 0.4)
        XCTAssertEqual(free.loss, -exp(0.3), accuracy: 1e-12)
        XCTAssertEqual(free.dLogp[0], -exp(0.3), accuracy: 1e-12)
        // ρ = e^−0.3 = 0.7408, A = −1: ε_low 0.2 holds it at 0.8 whatever ε_high is.
        let down = PPOMath.policyLoss(logp: [-0.3], logpOld: [0], advantages: [-1], clipLow: 0.2, clipHigh: 10)
        XCTAssertEqual(down.loss, 0.8, accuracy: 1e-12)
        XCTAssertEqual(down.dLogp, [0])
    }

    /// Two sequences of 1 and 3 tokens at ratio 1 with advantages 2 and 1: each token's term is −A.
    func testTheFourAggregationsDivideAsTRLsLossTypes() {
        let logp = [-1.0, -2, -0.5, -0.25], advantages = [2.0, 1, 1, 1], lengths = [1, 3], owner = [0, 1, 1, 1]
        let expected: [(LossAggregation, loss: Double, grads: [Double])] = [
            (.tokenMean, -(2 + 1 + 1 + 1) / 4, [-2 / 4, -1 / 4, -1 / 4, -1 / 4]),  // TRL "dapo"
            (.seqMeanTokenMean, -(2 / 1 + 3 / 3) / 2, [-2 / 2, -1 / 6, -1 / 6, -1 / 6]),  // TRL "grpo"
            (.seqMeanTokenSum, -(2 + 3) / 2, [-2 / 2, -1 / 2, -1 / 2, -1 / 2]),
            (.drGRPO, -(2 + 3) / (2 * 4), [-2 / 8, -1 / 8, -1 / 8, -1 / 8]),  // TRL "dr_grpo", L = 4
        ]
        for (aggregation, loss, grads) in expected {
            let divisors = owner.map {
                Double(aggregation.divisor(tokens: lengths[$0], sequences: 2, totalTokens: 4, maxTokens: 4))
            }
            let result = PPOMath.policyLoss(
                logp: logp, logpOld: logp, advantages: advantages, clipLow: 0.2, clipHigh: 0.2, divisors: divisors)
            XCTAssertEqual(result.loss, loss, accuracy: 1e-12, "\(aggregation)")
            for (g, e) in zip(result.dLogp, grads) { XCTAssertEqual(g, e, accuracy: 1e-12, "\(aggregation)") }
        }
    }

    func testTheTokenMeanWithDivisorsIsTheNormalizersStep() {
        let logp = [-1.0, -2, -0.5], old = [-1.1, -1.8, -0.5], advantages = [0.5, -1, 2]
        let plain = PPOMath.policyLoss(
            logp: logp, logpOld: old, advantages: advantages, clipLow: 0.2, clipHigh: 0.2, normalizer: 7)
        let divided = PPOMath.policyLoss(
            logp: logp, logpOld: old, advantages: advantages, clipLow: 0.2, clipHigh: 0.2, divisors: [7, 7, 7])
        XCTAssertEqual(plain.dLogp, divided.dLogp)
        XCTAssertEqual(plain.loss, divided.loss, accuracy: 1e-15)
    }

    func testGSPOTakesOneRatioPerSequenceAndItsGradientIsTheLosss() {
        // log-ratios 0.1 and −0.3: s = e^−0.1 = 0.904837, inside [0.8, 1.2]; A = 1 on both tokens;
        // one sequence, divisors 2 (seq_mean_token_mean): L = −s, ∂L/∂log π_t = −s/2.
        let logp = [-1.0, -2.3], old = [-1.1, -2.0]
        func loss(_ p: [Double]) -> (loss: Double, dLogp: [Double], clipFraction: Double) {
            PPOMath.sequencePolicyLoss(
                logp: p, logpOld: old, advantages: [1, 1], sequences: [0..<2], divisors: [2, 2], clipLow: 0.2,
                clipHigh: 0.2)
        }
        let s = exp(-0.1), result = loss(logp)
        XCTAssertEqual(result.loss, -s, accuracy: 1e-12)
        XCTAssertEqual(result.dLogp[0], -s / 2, accuracy: 1e-12)
        XCTAssertEqual(result.dLogp[1], -s / 2, accuracy: 1e-12)
        XCTAssertEqual(result.clipFraction, 0)
        // Central differences agree.
        let h = 1e-6
        for t in 0..<2 {
            var up = logp, down = logp
            up[t] += h
            down[t] -= h
            XCTAssertEqual((loss(up).loss - loss(down).loss) / (2 * h), result.dLogp[t], accuracy: 1e-8)
        }
        // log-ratios 0.5 and 0.5: s = e^0.5 = 1.6487 > 1.2 with A > 0: clipped, no gradient.
        let clipped = PPOMath.sequencePolicyLoss(
            logp: [0.5, 0.5], logpOld: [0, 0], advantages: [1, 1], sequences: [0..<2], divisors: [2, 2],
            clipLow: 0.2, clipHigh: 0.2)
        XCTAssertEqual(clipped.loss, -1.2, accuracy: 1e-12)
        XCTAssertEqual(clipped.dLogp, [0, 0])
        XCTAssertEqual(clipped.clipFraction, 1)
    }

    func testGSPOsRatiosAreEachSequencesOwn() {
        // Two sequences: a token's gradient depends on its own sequence only.
        let both = PPOMath.sequencePolicyLoss(
            logp: [0.1, -0.2, 0.05], logpOld: [0, 0, 0], advantages: [1, 1, -1], sequences: [0..<2, 2..<3],
            divisors: [4, 4, 4], clipLow: 0.2, clipHigh: 0.2)
        let first = PPOMath.sequencePolicyLoss(
            logp: [0.1, -0.2], logpOld: [0, 0], advantages: [1, 1], sequences: [0..<2], divisors: [4, 4],
            clipLow: 0.2, clipHigh: 0.2)
        XCTAssertEqual(Array(both.dLogp[0..<2]), first.dLogp)
        XCTAssertEqual(both.dLogp[2], exp(0.05) / 4, accuracy: 1e-12)  // −A·s/d with A = −1, n = 1
    }

    func testSoftOverlongPunishmentAsDAPOsEquation13() {
        // L_max 20, L_cache 4: 0 up to 16 tokens, then −(len − 16)/4, −1 at and past 20.
        let values = [10, 16, 17, 18, 20, 21].map { overlongPenalty(length: $0, limit: 20, buffer: 4, factor: 1) }
        XCTAssertEqual(values, [0, 0, -0.25, -0.5, -1, -1])
        XCTAssertEqual(overlongPenalty(length: 18, limit: 20, buffer: 4, factor: 0.5), -0.25)
        XCTAssertEqual(overlongPenalty(length: 20, limit: 20, buffer: 0, factor: 1), 0, "buffer 0 is off")
    }
}
