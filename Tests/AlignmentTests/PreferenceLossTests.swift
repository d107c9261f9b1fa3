import Alignment
import Foundation
import XCTest

/// docs/algorithms.md test oracles D, C, I and R2–R3, plus derivatives against central differences.
final class PreferenceLossTests: XCTestCase {
    func testTableD() {
        let h = PreferenceLosses.margin(chosen: -10, rejected: -12, refChosen: -11, refRejected: -11)
        XCTAssertEqual(h, 2)
        XCTAssertEqual(PreferenceLosses.dpoFamily(.dpo, h: h, beta: 0.1).loss, 0.598139, accuracy: 1e-6)
        XCTAssertEqual(
            -PreferenceLosses.dpoFamily(.dpo, h: h, beta: 0.1).dh / 0.1, 0.450166, accuracy: 1e-6,
            "gradient weight σ(−βh)")
        XCTAssertEqual(PreferenceLosses.dpoFamily(.ipo, h: h, beta: 0.1).loss, 9, accuracy: 1e-9)
        let normalised = PreferenceLosses.ipoLengthNormalisedMargin(
            chosen: -10, rejected: -12, refChosen: -11, refRejected: -11, chosenLength: 20, rejectedLength: 25)
        XCTAssertEqual(PreferenceLosses.dpoFamily(.ipo, h: normalised, beta: 0.1).loss, 24.1081, accuracy: 1e-4)
        XCTAssertEqual(PreferenceLosses.dpoFamily(.cdpo, h: h, beta: 0.1, epsilon: 0.1).loss, 0.618139, accuracy: 1e-6)
        XCTAssertEqual(
            PreferenceLosses.dpoFamily(.robust, h: h, beta: 0.1, epsilon: 0.1).loss, 0.573139, accuracy: 1e-6)
        XCTAssertEqual(PreferenceLosses.dpoFamily(.hinge, h: h, beta: 0.1).loss, 0.8, accuracy: 1e-12)
        // Invariants at h = 0.
        XCTAssertEqual(PreferenceLosses.dpoFamily(.dpo, h: 0, beta: 0.1).loss, log(2), accuracy: 1e-12)
        XCTAssertEqual(PreferenceLosses.dpoFamily(.cdpo, h: 0, beta: 0.1, epsilon: 0.1).loss, log(2), accuracy: 1e-12)
        XCTAssertEqual(PreferenceLosses.dpoFamily(.hinge, h: 0, beta: 0.1).loss, 1)
        XCTAssertEqual(PreferenceLosses.dpoFamily(.ipo, h: 0, beta: 0.1).loss, 25, accuracy: 1e-9)
        XCTAssertEqual(
            PreferenceLosses.dpoFamily(.dpo, h: 1.7, beta: 0.3).loss
                - PreferenceLosses.dpoFamily(.dpo, h: -1.7, beta: 0.3).loss, -0.3 * 1.7, accuracy: 1e-12)
        for variant in DPOVariant.allCases {
            for h in [-3.0, 0.4, 2.5] {
                let f = { (x: Double) in PreferenceLosses.dpoFamily(variant, h: x, beta: 0.2, epsilon: 0.1).loss }
                XCTAssertEqual(
                    PreferenceLosses.dpoFamily(variant, h: h, beta: 0.2, epsilon: 0.1).dh,
                    (f(h + 1e-6) - f(h - 1e-6)) / 2e-6, accuracy: 1e-6, "\(variant) at \(h)")
            }
        }
    }

    func testTableC() {
        let pos = [-1.0, -0.5, -0.8], neg = [-2.0, -1.5, -1.0]
        XCTAssertEqual(
            PreferenceLosses.cpl(positive: pos, negative: neg, alpha: 0.1, lambda: 0.5).loss, 0.695650, accuracy: 1e-6)
        XCTAssertEqual(
            PreferenceLosses.cpl(positive: pos, negative: neg, alpha: 0.1, lambda: 1).loss, 0.589185, accuracy: 1e-6)
        XCTAssertEqual(
            PreferenceLosses.cpl(positive: pos, negative: neg, alpha: 0.1, lambda: 0.5, gamma: 0.99).loss, 0.695476,
            accuracy: 1e-6)
        // λ = 1, γ = 1: DPO with a zero reference and β = α.
        XCTAssertEqual(
            PreferenceLosses.cpl(positive: pos, negative: neg, alpha: 0.1, lambda: 1).loss,
            PreferenceLosses.dpoFamily(.dpo, h: pos.reduce(0, +) - neg.reduce(0, +), beta: 0.1).loss, accuracy: 1e-12)
        let (_, dp, dn) = PreferenceLosses.cpl(positive: pos, negative: neg, alpha: 0.1, lambda: 0.5, gamma: 0.9)
        for k in 0..<3 {
            var p1 = pos, p2 = pos
            p1[k] += 1e-6
            p2[k] -= 1e-6
            var n1 = neg, n2 = neg
            n1[k] += 1e-6
            n2[k] -= 1e-6
            let f = { (p: [Double], n: [Double]) in
                PreferenceLosses.cpl(positive: p, negative: n, alpha: 0.1, lambda: 0.5, gamma: 0.9).loss
            }
            XCTAssertEqual(dp[k], (f(p1, neg) - f(p2, neg)) / 2e-6, accuracy: 1e-7)
            XCTAssertEqual(dn[k], (f(pos, n1) - f(pos, n2)) / 2e-6, accuracy: 1e-7)
        }
    }

    /// CPL-BC (official cpl_bc configs: λ = 1, bc_data all) on oracle C's segments, α = 0.1, bc_coeff 1.5:
    /// CPL at λ = 1 is 0.589185 (z = S⁺ − S⁻ = −0.23 + 0.45 = 0.22); BC = (2.3 + 4.5)/6 = 1.133333;
    /// L = 0.589185 + 1.5 × 1.133333 = 2.289185. Per token, dL/dlog π⁺ = −α σ(−z) − 1.5/6 = −0.294522
    /// and dL/dlog π⁻ = +α σ(−z) − 1.5/6 = −0.205478: BC raises both responses' likelihood.
    func testTableCBC() {
        let pos = [-1.0, -0.5, -0.8], neg = [-2.0, -1.5, -1.0]
        let r = PreferenceLosses.cplBC(positive: pos, negative: neg, alpha: 0.1, bcCoefficient: 1.5)
        XCTAssertEqual(r.loss, 2.289185, accuracy: 1e-6)
        for d in r.dPositive { XCTAssertEqual(d, -0.294522, accuracy: 1e-6) }
        for d in r.dNegative { XCTAssertEqual(d, -0.205478, accuracy: 1e-6) }
        let state = PreferenceLosses.cplBC(positive: pos, negative: neg, alpha: 0.1, bcCoefficient: 1)
        XCTAssertEqual(state.loss, 1.722518, accuracy: 1e-6, "bc_coeff 1 (state configs)")
        XCTAssertEqual(
            PreferenceLosses.cplBC(positive: pos, negative: neg, alpha: 0.1, bcCoefficient: 0).loss,
            PreferenceLosses.cpl(positive: pos, negative: neg, alpha: 0.1, lambda: 1).loss, accuracy: 1e-15,
            "without BC: CPL with λ = 1")
        // Unequal lengths and a discount: derivatives against central differences.
        let shortNeg = [-2.0, -1.5]
        let f = { (p: [Double], n: [Double]) in
            PreferenceLosses.cplBC(positive: p, negative: n, alpha: 0.1, gamma: 0.9, bcCoefficient: 1.5).loss
        }
        let g = PreferenceLosses.cplBC(positive: pos, negative: shortNeg, alpha: 0.1, gamma: 0.9, bcCoefficient: 1.5)
        for k in pos.indices {
            var up = pos, down = pos
            up[k] += 1e-6
            down[k] -= 1e-6
            XCTAssertEqual(g.dPositive[k], (f(up, shortNeg) - f(down, shortNeg)) / 2e-6, accuracy: 1e-7)
        }
        for k in shortNeg.indices {
            var up = shortNeg, down = shortNeg
            up[k] += 1e-6
            down[k] -= 1e-6
            XCTAssertEqual(g.dNegative[k], (f(pos, up) - f(pos, down)) / 2e-6, accuracy: 1e-7)
        }
    }

    func testTableI() {
        XCTAssertEqual(
            InSPO.dpo23(conditionalChosen: -9, conditionalRejected: -13, refChosen: -11, refRejected: -11, beta: 0.1)
                .loss, 0.513015, accuracy: 1e-6)
        XCTAssertEqual(
            InSPO.dpo22(conditionalRejected: -13, refRejected: -11, beta: 0.1).loss, 0.598139, accuracy: 1e-6)
        XCTAssertEqual(
            InSPO.ipo25(conditionalChosen: -9, conditionalRejected: -13, refChosen: -11, refRejected: -11, tau: 1).loss,
            12.25, accuracy: 1e-9)
        // Conditional policy == unconditional reference ⇒ log 2.
        XCTAssertEqual(
            InSPO.dpo23(conditionalChosen: -11, conditionalRejected: -11, refChosen: -11, refRejected: -11, beta: 0.1)
                .loss, log(2), accuracy: 1e-12)
        XCTAssertEqual(
            InSPO.rdpo(
                conditionalChosen: -9, conditionalRejected: -13, refChosen: -11, refRejected: -11, chosenLength: 5,
                rejectedLength: 5, beta: 0.1, alpha: 0.7
            ).loss,
            0.513015, accuracy: 1e-6, "R-DPO with equal lengths is DPO-23")
        let s = InSPO.simpo(
            conditionalChosen: -9, conditionalRejected: -13, chosenLength: 3, rejectedLength: 4, beta: 0.1, gamma: 0.1)
        let f = { (w: Double) in
            InSPO.simpo(
                conditionalChosen: w, conditionalRejected: -13, chosenLength: 3, rejectedLength: 4, beta: 0.1,
                gamma: 0.1
            ).loss
        }
        XCTAssertEqual(s.dChosen, (f(-9 + 1e-6) - f(-9 - 1e-6)) / 2e-6, accuracy: 1e-8)
    }

    func testTablesR2AndR3() {
        XCTAssertEqual(PreferenceLosses.kwise([2, 1, 0]).loss, 0.251150, accuracy: 1e-5)
        let d = 1 / (1 + exp(-1.0)) - 1 / (1 + exp(1.0))
        XCTAssertEqual(d, 0.462117, accuracy: 1e-6)
        XCTAssertEqual(RankUtility.x.pairLoss(positive: 1, negative: -1).loss, -0.462117, accuracy: 1e-6)
        XCTAssertEqual(RankUtility.log.pairLoss(positive: 1, negative: -1).loss, -1.726540, accuracy: 1e-6)
        XCTAssertEqual(RankUtility.xInverse.pairLoss(positive: 1, negative: -1).loss, -8.221011, accuracy: 1e-6)
        XCTAssertEqual(RankUtility.logsigmoid.pairLoss(positive: 1, negative: -1).loss, 0.146244, accuracy: 1e-6)
        XCTAssertEqual(RankUtility.x.pairLoss(positive: -1, negative: 1).loss, 0.462117, accuracy: 1e-6)
        XCTAssertEqual(RankUtility.log.pairLoss(positive: -1, negative: 1).loss, 4.621172, accuracy: 1e-6)
        XCTAssertEqual(RankUtility.xInverse.pairLoss(positive: -1, negative: 1).loss, 46.211716, accuracy: 1e-5)
        for u in RankUtility.allCases {
            let (_, dp, dn) = u.pairLoss(positive: 0.8, negative: -0.3)
            let f = { (p: Double, n: Double) in u.pairLoss(positive: p, negative: n).loss }
            XCTAssertEqual(dp, (f(0.8 + 1e-6, -0.3) - f(0.8 - 1e-6, -0.3)) / 2e-6, accuracy: 1e-6, "\(u)")
            XCTAssertEqual(dn, (f(0.8, -0.3 + 1e-6) - f(0.8, -0.3 - 1e-6)) / 2e-6, accuracy: 1e-6, "\(u)")
        }
        let (_, grad) = PreferenceLosses.kwise([0.5, 1.2, -0.4])
        for k in 0..<3 {
            var a = [0.5, 1.2, -0.4], b = a
            a[k] += 1e-6
            b[k] -= 1e-6
            XCTAssertEqual(
                grad[k], (PreferenceLosses.kwise(a).loss - PreferenceLosses.kwise(b).loss) / 2e-6, accuracy: 1e-7)
        }
    }
}
