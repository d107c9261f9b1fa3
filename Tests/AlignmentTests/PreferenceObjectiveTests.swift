import Alignment
import Foundation
import XCTest

/// The per-pair objective a `dpo` stage backpropagates: every loss's token derivatives against
/// central differences, and the invariants at policy = reference.
final class PreferenceObjectiveTests: XCTestCase {
    let pair = PreferenceObjective.PairLogProbs(
        chosen: [-0.7, -1.9, -0.2], rejected: [-2.1, -0.4], conditionalChosen: [-0.5, -1.2, -0.1],
        conditionalRejected: [-2.6, -0.9], refChosen: -3.1, refRejected: -2.2)

    func objectives() -> [PreferenceObjective] {
        var all = DPOVariant.allCases.map { PreferenceObjective(kind: .family($0)) }
        var ipoSums = PreferenceObjective(kind: .family(.ipo))
        ipoSums.ipoLengthNormalised = false
        var cpl = PreferenceObjective(kind: .cpl)
        cpl.cplGamma = 0.9
        var rpo = PreferenceObjective(kind: .family(.dpo))
        rpo.nllCoefficient = 0.7
        var simpo = PreferenceObjective(kind: .inspo(.simpo))
        simpo.muDPO = 0
        var rdpo = PreferenceObjective(kind: .inspo(.rdpo))
        rdpo.rdpoAlpha = 0.3
        all += [ipoSums, cpl, rpo, simpo, rdpo] + InSPOVariant.allCases.map { PreferenceObjective(kind: .inspo($0)) }
        for i in all.indices {
            all[i].beta = 0.3
            all[i].labelSmoothing = 0.1
        }
        return all
    }

    func testTokenDerivativesMatchCentralDifferences() {
        for o in objectives() {
            let g = o.evaluate(pair)
            let fields: [(WritableKeyPath<PreferenceObjective.PairLogProbs, [Double]>, [Double], String)] = [
                (\.chosen, g.chosen, "chosen"), (\.rejected, g.rejected, "rejected"),
                (\.conditionalChosen, g.conditionalChosen, "conditional chosen"),
                (\.conditionalRejected, g.conditionalRejected, "conditional rejected"),
            ]
            for (path, analytic, name) in fields {
                XCTAssertEqual(analytic.count, pair[keyPath: path].count, "\(o.kind.name) \(name)")
                for t in pair[keyPath: path].indices {
                    var up = pair, down = pair
                    up[keyPath: path][t] += 1e-6
                    down[keyPath: path][t] -= 1e-6
                    let numeric = (o.evaluate(up).loss - o.evaluate(down).loss) / 2e-6
                    XCTAssertEqual(analytic[t], numeric, accuracy: 1e-6, "\(o.kind.name) d/d \(name)[\(t)]")
                }
            }
        }
    }

    func testPolicyEqualToReferenceGivesTheKnownValues() {
        // Sums equal to the reference: h = 0.
        let same = PreferenceObjective.PairLogProbs(
            chosen: [-1.0, -2.0], rejected: [-0.5], conditionalChosen: [-1.0, -2.0], conditionalRejected: [-0.5],
            refChosen: -3, refRejected: -0.5)
        func loss(_ kind: PreferenceLossKind, _ tweak: (inout PreferenceObjective) -> Void = { _ in }) -> Double {
            var o = PreferenceObjective(kind: kind)
            o.beta = 0.1
            o.labelSmoothing = 0.1
            tweak(&o)
            return o.evaluate(same).loss
        }
        XCTAssertEqual(loss(.family(.dpo)), log(2), accuracy: 1e-12)
        XCTAssertEqual(loss(.family(.cdpo)), log(2), accuracy: 1e-12)
        XCTAssertEqual(loss(.family(.hinge)), 1, accuracy: 1e-12)
        XCTAssertEqual(loss(.family(.ipo)), 25, accuracy: 1e-9, "1/(4τ²) with τ = β = 0.1")
        XCTAssertEqual(
            loss(.inspo(.dpo23)), 2 * log(2), accuracy: 1e-12, "conditional DPO-23 + μ_dpo × DPO, both log 2")
        XCTAssertEqual(loss(.inspo(.dpo23)) { $0.muDPO = 0 }, log(2), accuracy: 1e-12)
        XCTAssertEqual(
            loss(.family(.dpo)) { $0.nllCoefficient = 1 }, log(2) + 1.5, accuracy: 1e-12, "+ NLL(y_w)/|y_w| = 3/2")
        // CPL with λ = 1, γ = 1 is DPO with a zero reference and β = α.
        XCTAssertEqual(
            loss(.cpl) {
                $0.cplLambda = 1
                $0.cplAlpha = 0.1
            },
            PreferenceLosses.dpoFamily(.dpo, h: -3 - -0.5, beta: 0.1).loss, accuracy: 1e-12)
    }

    func testWhichSequencesEachLossReads() {
        XCTAssertTrue(PreferenceObjective(kind: .family(.dpo)).needsUnconditional)
        XCTAssertFalse(PreferenceObjective(kind: .family(.dpo)).needsConditional)
        var inspo = PreferenceObjective(kind: .inspo(.dpo23))
        XCTAssertTrue(inspo.needsConditional && inspo.needsUnconditional)
        inspo.muDPO = 0
        XCTAssertFalse(inspo.needsUnconditional, "without μ_dpo or NLL InSPO reads only the conditioned sequences")
        XCTAssertEqual(PreferenceLossKind(loss: "inspo", inspoVariant: .ipo), .inspo(.ipo))
        XCTAssertNil(PreferenceLossKind(loss: "kto"))
    }
}

/// Oracle R4: the reward-collapse optimum for n = 10 under U = x, log and −1/x.
final class RewardCollapseTests: XCTestCase {
    func testCollapseShapes() {
        let expected: [String: [Double]] = [
            "x": [1, 1, 1, 1, 1, 0, 0, 0, 0, 0],
            "log": [1, 0.9598, 0.8694, 0.7390, 0.5826, 0.4174, 0.2610, 0.1306, 0.0402, 0],
            "x_inv": [1, 0.9097, 0.8001, 0.6825, 0.5612, 0.4388, 0.3175, 0.1999, 0.0903, 0],
        ]
        for (name, shape) in expected {
            let r = RewardCollapse.optimalRewards(n: 10, derivative: RewardCollapse.derivative(name)!)
            for (a, b) in zip(r, shape) { XCTAssertEqual(a, b, accuracy: 1e-3, "\(name): \(r)") }
        }
        XCTAssertNil(RewardCollapse.derivative("logsigmoid"))
    }
}
