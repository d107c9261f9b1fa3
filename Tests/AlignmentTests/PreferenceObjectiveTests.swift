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
        var cplNLL = cpl
        cplNLL.nllCoefficient = 0.7
        var cplBC = PreferenceObjective(kind: .cplBC)
        cplBC.cplGamma = 0.9
        cplBC.cplBCCoefficient = 1.5
        var rpo = PreferenceObjective(kind: .family(.dpo))
        rpo.nllCoefficient = 0.7
        let simpo = PreferenceObjective(kind: .inspo(.simpo))  // μ_dpo = 0 by default: no unconditional term
        var rdpo = PreferenceObjective(kind: .inspo(.rdpo))
        rdpo.rdpoAlpha = 0.3
        rdpo.muDPO = 1
        // Every InSPO variant with the unconditional DPO term on, so its derivatives are checked too.
        let withDPO = InSPOVariant.allCases.map {
            var o = PreferenceObjective(kind: .inspo($0))
            o.muDPO = 1
            return o
        }
        all += [ipoSums, cpl, cplNLL, cplBC, rpo, simpo, rdpo] + withDPO
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
                XCTAssertEqual(analytic.count, pair[keyPath: path].count, "\(o.name) \(name)")
                for t in pair[keyPath: path].indices {
                    var up = pair, down = pair
                    up[keyPath: path][t] += 1e-6
                    down[keyPath: path][t] -= 1e-6
                    let numeric = (o.evaluate(up).loss - o.evaluate(down).loss) / 2e-6
                    XCTAssertEqual(analytic[t], numeric, accuracy: 1e-6, "\(o.name) d/d \(name)[\(t)]")
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
            loss(.inspo(.dpo23)) { $0.muDPO = 1 }, 2 * log(2), accuracy: 1e-12,
            "conditional DPO-23 + μ_dpo × DPO, both log 2")
        XCTAssertEqual(loss(.inspo(.dpo23)), log(2), accuracy: 1e-12, "by default no unconditional DPO term")
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
        XCTAssertTrue(inspo.needsConditional)
        XCTAssertFalse(inspo.needsUnconditional, "without μ_dpo or NLL InSPO reads only the conditioned sequences")
        inspo.muDPO = 1
        XCTAssertTrue(inspo.needsConditional && inspo.needsUnconditional)
        XCTAssertTrue(PreferenceObjective(kind: .cplBC).needsUnconditional)
        XCTAssertFalse(PreferenceObjective(kind: .cplBC).needsConditional)
        XCTAssertEqual(PreferenceLossKind(loss: "inspo", inspoVariant: .ipo), .inspo(.ipo))
        XCTAssertEqual(PreferenceLossKind(loss: "cpl_bc"), .cplBC)
        XCTAssertNil(PreferenceLossKind(loss: "kto"))
    }
}

/// InSPO and CPL as their papers have them by default; our additions named.
final class PreferenceDefaultsTests: XCTestCase {
    /// InSPO with default settings is the DPO-23 formula of docs/algorithms.md §6.3 alone (oracle I:
    /// β = 0.1, log π(y_w|x,y_l) = −9, log π(y_l|x,y_w) = −13, ref_w = ref_l = −11), with no
    /// unconditional DPO term: logit β[(−9 + 11) − (−13 + 11)] = 0.4, loss log(1 + e^−0.4) = 0.513015.
    func testInSPODefaultHasNoUnconditionalDPOTerm() {
        let p = PreferenceObjective.PairLogProbs(
            chosen: [-4, -6], rejected: [-5, -7], conditionalChosen: [-4, -5], conditionalRejected: [-6, -7],
            refChosen: -11, refRejected: -11)
        let inspo = PreferenceObjective(kind: .inspo(.dpo23))
        XCTAssertEqual(inspo.muDPO, 0)
        let g = inspo.evaluate(p)
        XCTAssertEqual(g.loss, 0.513015, accuracy: 1e-6)
        XCTAssertEqual(g.loss, log(1 + exp(-0.4)), accuracy: 1e-12)
        XCTAssertEqual(g.chosen, [0, 0], "the unconditional responses get no gradient")
        XCTAssertEqual(g.rejected, [0, 0])
        // dL/dlog π(y_w|x,y_l) per token = −β σ(−0.4) = −0.040131; the rejected's is its opposite.
        for d in g.conditionalChosen { XCTAssertEqual(d, -0.1 / (1 + exp(0.4)), accuracy: 1e-12) }
        for d in g.conditionalRejected { XCTAssertEqual(d, 0.1 / (1 + exp(0.4)), accuracy: 1e-12) }
        // With our term on, + μ × DPO on the unconditional sums (h = (−10 + 11) − (−12 + 11) = 2): 0.598139.
        var withDPO = inspo
        withDPO.muDPO = 1
        XCTAssertEqual(withDPO.evaluate(p).loss, 0.513015 + 0.598139, accuracy: 1e-6)
        for d in withDPO.evaluate(p).chosen { XCTAssertEqual(d, -0.1 / (1 + exp(0.2)), accuracy: 1e-12) }
    }

    func testNamesShowEveryAddedTerm() {
        func named(_ kind: PreferenceLossKind, nll: Double = 0, mu: Double = 0) -> String {
            var o = PreferenceObjective(kind: kind)
            o.nllCoefficient = nll
            o.muDPO = mu
            return o.name
        }
        XCTAssertEqual(named(.cpl), "cpl")
        XCTAssertEqual(named(.cpl, nll: 1), "cpl+nll", "CPL plus NLL on the chosen is neither CPL nor CPL-BC")
        XCTAssertEqual(named(.cplBC), "cpl_bc")
        XCTAssertEqual(named(.family(.dpo), nll: 0.5), "dpo+nll")
        XCTAssertEqual(named(.inspo(.dpo23)), "inspo-dpo23")
        XCTAssertEqual(named(.inspo(.dpo23), nll: 1, mu: 1), "inspo-dpo23+dpo+nll")
        XCTAssertEqual(named(.family(.ipo), mu: 1), "ipo", "μ_dpo is InSPO's only")
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
