import Alignment
import Config
import Foundation
import Kernels
import Models
import XCTest

@testable import Datasets
@testable import Rewards
@testable import Training

/// Issue 30: the seed methods as their papers and release code run them, and a study that
/// compares them fairly (docs/algorithms.md §7, §9; benchmarks/2026-12-07-seed-methods-fair.md).
final class SeedMethodFairnessTests: XCTestCase {
    /// LASeR's release code (scripts/utils/linucb.py) pays the first reward raw: with x = (0.6, 0.8),
    /// α = 0.1 and −loss = −0.7 on arm 0, A₀ = I + xxᵀ, θ₀ = −0.7x/2, so UCB₀ = −0.35 + 0.1·√0.5 =
    /// −0.279289 < 0.1 for an untried arm: the bandit moves on. Normalised from the first reward (a
    /// lone value is its own middle, 0.5) arm 0 keeps UCB₀ = 0.25 + 0.0707 = 0.320711 and is chosen
    /// again (the first study's LASeR never left arm 0).
    func testLaserPaysTheFirstRewardRawAsTheReleaseCodeDoes() {
        let x = [0.6, 0.8]
        var release = LinUCB(dimension: 2, arms: 3, alpha: 0.1, rawFirstReward: true)
        XCTAssertEqual(release.update(arm: 0, context: x, reward: -0.7), -0.7, "the first reward is paid raw")
        for (a, b) in zip(release.scores(x), [-0.279289, 0.1, 0.1]) { XCTAssertEqual(a, b, accuracy: 1e-6) }
        XCTAssertEqual(release.select(x), 1)
        // The second reward is normalised against [−0.7, −0.5]: q20 −0.66, q80 −0.54, so −0.5 → 1.
        XCTAssertEqual(release.update(arm: 1, context: x, reward: -0.5), 1)
        var normalised = LinUCB(dimension: 2, arms: 3, alpha: 0.1, rawFirstReward: false)
        XCTAssertEqual(normalised.update(arm: 0, context: x, reward: -0.7), 0.5)
        XCTAssertEqual(normalised.scores(x)[0], 0.320711, accuracy: 1e-6)
        XCTAssertEqual(normalised.select(x), 0)
    }

    /// laser.raw_first_reward defaults to the release code's rule and reaches the bandit.
    func testTheReleaseRuleIsTheDefault() throws {
        let config = try PPOConfig(
            try ppoSchema.resolve(
                file: nil, overrides: ["model.init_from=/sft", "data.task=arith", "rewards.selection=laser"]))
        XCTAssertTrue(config.laser.rawFirstReward)
        let learned = LearnedRewards(
            names: ["proxy1", "proxy2"], heads: [ScalarHead(channels: 4), ScalarHead(channels: 4)], trunks: [nil, nil],
            channels: 4, selection: .laser, laser: config.laser, r2m: nil, r2mSettings: config.r2m, iterations: 10,
            seed: 1)
        XCTAssertEqual(learned.bandit?.rawFirstReward, true)
    }

    /// The fair hybrid's verifier (last digit + format) is weaker than the gold (exact + format):
    /// it passes wrong sums that end in the right digit.
    func testTheFairVerifierIsNotTheGold() throws {
        let fair = try XCTUnwrap(try Verifiers.routes("arith=last_digit+format")["arith"])
        func score(_ r: String, _ answer: String) -> Double {
            fair.reduce(0) { $0 + $1.score(response: r, answer: answer) }
        }
        let cases: [(response: String, answer: String, fair: Double, gold: Double)] = [
            ("46", "46", 1, 1), ("56", "46", 1, 0), ("6", "46", 1, 0), ("45", "46", 0, 0), (" 46", "46", 0, 0),
            ("x", "46", -1, -1), ("-16", "-6", 1, 0), ("106", "106", 1, 1),
        ]
        for c in cases {
            XCTAssertEqual(score(c.response, c.answer), c.fair, "fair '\(c.response)' for \(c.answer)")
            XCTAssertEqual(OverOptimisation.gold(c.response, answer: c.answer), c.gold, "gold '\(c.response)'")
        }
        XCTAssertTrue(cases.contains { $0.fair != $0.gold }, "the verifier differs from the gold")
    }

    /// R2M's held-out accuracy: with ω = 1 the fused reward is the head ϕ = (w = (1, −1), b = 0.5)
    /// on H_last: pairs (2.5 vs 0.5) right, (−0.5 vs 1.5) wrong, (0.5 vs 0.5) a tie (half), (2.5 vs
    /// −1.5) right: (1 + 0 + 0.5 + 1) / 4 = 0.625.
    func testR2MHeldOutAccuracyOnWorkedNumbers() {
        let fusion = R2MFusion(channels: 2, policyChannels: 2, attentionSize: 2)
        var rng = RNG(seed: 3)
        fusion.initialize(rewardHead: [1, -1, 0.5], rng: &rng)
        let states: [[Float]] = [[2, 0], [0, 0], [0, 1], [1, 0], [1, 1], [2, 2], [3, 1], [1, 3]]
        let pairs = R2MHeldOutPairs(sequences: states.map { _ in [1, 2] }, rewardStates: states)
        let policy = states.map { _ in [Float](repeating: 0.3, count: 2) }
        XCTAssertEqual(pairs.accuracy(fusion, policyStates: policy, omega: 1), 0.625)
        // ω < 1 mixes in the policy's states: the accuracy is that of the fused rewards themselves.
        let fused = states.indices.map {
            fusion.forward(rewardHidden: states[$0], policyHidden: policy[$0], omega: 0.2).reward
        }
        var expected = 0.0
        for p in 0..<4 where fused[2 * p] >= fused[2 * p + 1] { expected += fused[2 * p] > fused[2 * p + 1] ? 1 : 0.5 }
        XCTAssertEqual(pairs.accuracy(fusion, policyStates: policy, omega: 0.2), expected / 4)
    }

    /// Matched KL on worked numbers: KL 0, 0.2, 0.6, 0.4, 1.0 with gold 0.5, 0.7, 0.3, 0.9, 0.1.
    /// Gold at KL 0.5: between 0.2 (0.7) and 0.6 (0.3), three quarters of the way: 0.4. The mean
    /// gold over KL ≤ 0.5: trapezoids (0 → 0.2: (0.5 + 0.7)/2) and (0.2 → 0.5: (0.7 + 0.4)/2),
    /// (0.2·0.6 + 0.3·0.55)/0.5 = 0.57. The dip back to KL 0.4 does not count twice.
    func testGoldAtMatchedKL() {
        let kl = [0, 0.2, 0.6, 0.4, 1.0], gold = [0.5, 0.7, 0.3, 0.9, 0.1]
        XCTAssertEqual(OverOptimisation.MatchedKL.gold(at: 0.5, kl: kl, gold: gold)!, 0.4, accuracy: 1e-12)
        XCTAssertEqual(OverOptimisation.MatchedKL.meanGold(upTo: 0.5, kl: kl, gold: gold)!, 0.57, accuracy: 1e-12)
        XCTAssertNil(OverOptimisation.MatchedKL.gold(at: 1.5, kl: kl, gold: gold), "never reached")
        XCTAssertEqual(OverOptimisation.MatchedKL.gold(at: 0, kl: kl, gold: gold), 0.5)
    }

    /// The 95% t-interval: values 1, 2, 3, 4, 5 have sd √2.5, so the half-width is
    /// 2.776 · 1.5811 / √5 = 1.9630; df 1 is 12.706; one value has no interval.
    func testTInterval() {
        let (m, h) = Statistics.meanAndInterval95([1, 2, 3, 4, 5])
        XCTAssertEqual(m, 3)
        XCTAssertEqual(h, 2.776 * 2.5.squareRoot() / 5.0.squareRoot(), accuracy: 1e-12)
        XCTAssertEqual(Statistics.t975(degreesOfFreedom: 1), 12.706)
        XCTAssertEqual(Statistics.t975(degreesOfFreedom: 60), 2.0, accuracy: 0.001)
        XCTAssertEqual(Statistics.meanAndInterval95([2]).halfWidth, .infinity)
    }

    /// A method helps only where its interval lies wholly above the best proxy's and the ensemble's.
    func testVerdictNeedsTheIntervalToClearBothBaselines() {
        func run(_ method: String, _ seed: Int, _ gold: Double) -> OverOptimisation.Result {
            var r = OverOptimisation.Result(method: method, seed: seed, runFolder: "")
            (r.klCurve, r.goldCurve) = ([0, 1], [0.5, gold])
            return r
        }
        let golds: [String: [Double]] = [
            "proxy": [0.30, 0.32, 0.31], "proxy2": [0.20, 0.22, 0.21], "ensemble": [0.35, 0.36, 0.34],
            "good": [0.60, 0.61, 0.62], "close": [0.34, 0.40, 0.37], "bad": [0.05, 0.06, 0.07],
        ]
        let methods = ["proxy", "proxy2", "ensemble", "good", "close", "bad"]
        let results = methods.flatMap { m in golds[m]!.enumerated().map { run(m, $0.offset + 1, $0.element) } }
        let matched = OverOptimisation.MatchedKL(results: results, methods: methods)
        XCTAssertEqual(matched.kl, 1)
        XCTAssertEqual(matched.bestProxy?.method, "proxy")
        let verdicts = Dictionary(uniqueKeysWithValues: matched.rows.map { ($0.method, matched.verdict($0)) })
        XCTAssertEqual(verdicts["good"], .helps)
        XCTAssertEqual(verdicts["close"], .notShown)
        XCTAssertEqual(verdicts["bad"], .hurts)
        XCTAssertEqual(verdicts["proxy"], .baseline)
        let d = matched.paired(matched.rows[3], matched.bestProxy!)!
        XCTAssertEqual(d.mean, 0.3, accuracy: 1e-12, "good − proxy, paired by seed")
    }

    /// Proxies that know different things: size bands partition the problems; carry slices split
    /// them by the units' carry.
    func testProxySlices() {
        let problems = (0..<30).map { ArithTask.Problem(a: $0 * 3, b: ($0 * 7) % 50) }
        let bands = (0..<3).map { ProxySlices.size.problems(problems, proxy: $0, of: 3) }
        XCTAssertEqual(bands.map(\.count), [10, 10, 10])
        XCTAssertEqual(Set(bands.flatMap { $0 }), Set(problems))
        let sums = bands.map { band in band.map { p in p.a + p.b } }
        XCTAssertLessThanOrEqual(sums[0].max()!, sums[1].min()!)
        let carry = ProxySlices.carry.problems(problems, proxy: 0, of: 2)
        let plain = ProxySlices.carry.problems(problems, proxy: 1, of: 2)
        XCTAssertTrue(carry.allSatisfy { $0.a % 10 + $0.b % 10 >= 10 } && !carry.isEmpty)
        XCTAssertEqual(carry.count + plain.count, problems.count)
        XCTAssertEqual(ProxySlices.none.problems(problems, proxy: 2, of: 3), problems)
    }

    /// The fair GenRM's judgements: the proxies' budget, drawn without replacement, with the noise
    /// share of the verdicts flipped.
    func testBudgetJudgements() {
        let all: [[String: Any]] = (0..<2000).map {
            ["prompt": "p\($0)", "completion": JudgePrompt.yes, "answer": JudgePrompt.yes]
        }
        let kept = OverOptimisation.budgetJudgements(all, count: 1000, noise: 0.1, seed: 5)
        XCTAssertEqual(kept.count, 1000)
        XCTAssertEqual(Set(kept.map { $0["prompt"] as! String }).count, 1000, "no judgement twice")
        let flipped = kept.filter { $0["completion"] as? String == JudgePrompt.no }
        XCTAssertTrue((70...130).contains(flipped.count), "about 10% flipped: \(flipped.count)")
        XCTAssertTrue(flipped.allSatisfy { $0["answer"] as? String == JudgePrompt.no })
    }
}
