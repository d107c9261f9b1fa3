import Alignment
import Foundation
import XCTest

/// R2M's group loss (GREBT) and LASeR's pair signal on small worked examples written from the papers.
final class OnlineRewardLossTests: XCTestCase {
    /// Huang et al. 2026 §4.2: L = 0.7·[−log σ(r_w − r_l)] + 0.3·[−Σ p log p], p = softmax of the
    /// group-standardised rewards. r = [1.0, 0.2, −0.5, 0.4], w = 0, l = 2 (worked in numpy):
    /// BT = log(1 + e^−1.5) = 0.201413; z = [1.353604, −0.140028, −1.446956, 0.233380];
    /// p = [0.620525, 0.139342, 0.037713, 0.202419]; H = 1.017688; L = 0.446296;
    /// dL/dr by central differences = [−0.207795, 0.063242, 0.060246, 0.084307].
    func testGroupRewardEntropyWorkedExample() {
        let r = GroupRewardEntropy.loss(rewards: [1.0, 0.2, -0.5, 0.4], winner: 0, loser: 2, alpha: 0.3)
        XCTAssertEqual(r.bradleyTerry, 0.2014132779827524, accuracy: 1e-12)
        XCTAssertEqual(r.entropy, 1.0176881912764086, accuracy: 1e-12)
        XCTAssertEqual(r.loss, 0.44629575197084925, accuracy: 1e-12)
        for (a, b) in zip(r.gradient, [-0.20779507, 0.06324185, 0.06024599, 0.08430723]) {
            XCTAssertEqual(a, b, accuracy: 1e-7)
        }
        let flat = GroupRewardEntropy.loss(rewards: [0.3, 0.3, 0.3], winner: 0, loser: 1, alpha: 0.3)
        XCTAssertEqual(flat.entropy, 0, "equal rewards: no entropy term")
        XCTAssertEqual(flat.loss, 0.7 * log(2), accuracy: 1e-12)
    }

    /// The self-labels: the first highest and first lowest of a group; none when all tie.
    func testPairsAreTheGroupsBestAndWorst() {
        XCTAssertTrue(GroupRewardEntropy.pair(scores: [0.1, 0.9, -0.2, 0.9]).map { $0 == (1, 2) } ?? false)
        XCTAssertNil(GroupRewardEntropy.pair(scores: [1, 1, 1]))
        XCTAssertNil(GroupRewardEntropy.pair(scores: [0.5, 0.5 + 1e-9, 0.5]), "equal to Float precision: a tie")
        let pairs = LaserPairSignal.pairs(scores: [0, 1, 2, 2, 2, 2, 5, -1, 0], groupSize: 3)
        XCTAssertEqual(pairs.map(\.winner), [2, 6])
        XCTAssertEqual(pairs.map(\.loser), [0, 7], "the tied middle group makes no pair")
    }

    /// Nguyen et al. 2024 (release code: DPO β 0.1 + NLL on the chosen, reference = the policy at
    /// the iteration's start). Two pairs (π_w, π_l, ref_w, ref_l, |y_w|):
    /// (−4, −6, −5, −5.5, 3): h = 1.5, DPO = log(1 + e^−0.15) = 0.620957, NLL = 4/3;
    /// (−2, −2.5, −2.2, −2, 2): h = 0.7, DPO = 0.658760, NLL = 1; sum 3.613050, bandit reward −1.806525.
    func testLaserPairSignalWorkedExample() {
        let pairs = [
            LaserPairSignal.Pair(chosen: -4, rejected: -6, refChosen: -5, refRejected: -5.5, chosenTokens: 3),
            LaserPairSignal.Pair(chosen: -2, rejected: -2.5, refChosen: -2.2, refRejected: -2, chosenTokens: 2),
        ]
        XCTAssertEqual(LaserPairSignal.lossSum(pairs, beta: 0.1, nllWeight: 1), 3.6130499366715627, accuracy: 1e-12)
        XCTAssertEqual(
            LaserPairSignal.lossSum(pairs, beta: 0.1, nllWeight: 0), 0.6209570477895321 + 0.6587595555486971,
            accuracy: 1e-12)
        let untrained = LaserPairSignal.Pair(chosen: -3, rejected: -4, refChosen: -3, refRejected: -4, chosenTokens: 3)
        XCTAssertEqual(
            LaserPairSignal.lossSum([untrained], beta: 0.1, nllWeight: 0), log(2), accuracy: 1e-12,
            "π = π_ref: log 2 for every arm")
    }

    /// Normalisation from the first reward on: a history of one is its own middle.
    func testLinUCBNormalisesFromTheFirstReward() {
        var bandit = LinUCB(dimension: 2, arms: 2, alpha: 0.1)
        XCTAssertEqual(bandit.update(arm: 0, context: [1, 0], reward: -0.7), 0.5)
        XCTAssertEqual(bandit.update(arm: 0, context: [1, 0], reward: -0.4), 1.0)
        XCTAssertEqual(bandit.update(arm: 1, context: [1, 0], reward: -0.9), 0.0)
    }
}
