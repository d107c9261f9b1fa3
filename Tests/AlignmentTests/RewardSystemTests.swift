import Alignment
import Foundation
import XCTest

/// docs/algorithms.md oracles L (LASeR's LinUCB) and B (Pre-PPO selection).
final class RewardSystemTests: XCTestCase {
    func testTableL() {
        var bandit = LinUCB(dimension: 2, arms: 3, alpha: 0.1, rawFirstReward: true)
        let steps: [(x: [Double], ucb: [Double], chosen: Int, raw: Double, normalised: Double)] = [
            ([1, 0], [0.1, 0.1, 0.1], 0, -0.70, -0.70),
            ([0, 1], [0.1, 0.1, 0.1], 0, -0.40, 1.0),
            ([0.6, 0.8], [0.260711, 0.1, 0.1], 0, -0.55, 0.5),
            ([1, 0], [-0.221668, 0.1, 0.1], 1, -0.30, 1.0),
        ]
        for (t, s) in steps.enumerated() {
            for (a, b) in zip(bandit.scores(s.x), s.ucb) { XCTAssertEqual(a, b, accuracy: 1e-5, "t=\(t) UCB") }
            XCTAssertEqual(bandit.select(s.x), s.chosen, "t=\(t) arm")
            XCTAssertEqual(
                bandit.update(arm: s.chosen, context: s.x, reward: s.raw), s.normalised, accuracy: 1e-9,
                "t=\(t) normalised reward")
        }
        for (a, b) in zip(bandit.theta(0), [-0.288, 0.582667]) { XCTAssertEqual(a, b, accuracy: 1e-5) }
        XCTAssertEqual(bandit.theta(1), [0.5, 0])
        XCTAssertEqual(bandit.theta(2), [0, 0])
    }

    func testTableB() {
        let tasks = ["math", "math", "math", "code", "code", "chat", "chat", "chat", "chat", "chat"]
        let scores = [0.2, 0.9, 0.5, -1.0, 1.0, 3.0, 2.0, 4.0, 1.0, 3.5]
        let z = PrePPOSelection.zScores(scores: scores, tasks: tasks)
        for (a, b) in zip(z, [-1.1625, 1.2787, -0.1162, -1, 1, 0.2785, -0.6499, 1.2070, -1.5784, 0.7428]) {
            XCTAssertEqual(a, b, accuracy: 1e-4)
        }
        XCTAssertEqual(PrePPOSelection.hardest(scores: scores, tasks: tasks, share: 0.3), [0, 3, 8])
        XCTAssertEqual(PrePPOSelection.zScores(scores: [2, 2], tasks: ["a", "a"]), [0, 0], "equal scores: z = 0")
    }
}
