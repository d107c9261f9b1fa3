import Foundation
import Kernels
import Models
import XCTest

@testable import Roles

/// Scoring a rollout in chunks (issue 13, point 6) gives the bits of one batch, and chunks honour
/// their budget.
final class ScoringChunksTests: XCTestCase {
    /// Sequences of mixed lengths, so chunks are padded to different lengths.
    let rollout: [[Int32]] = (0..<23).map { (i: Int) -> [Int32] in
        let length = 3 + (i * 7) % 17
        return (0..<length).map { (j: Int) -> Int32 in Int32((i * 5 + j * 3) % 30) }
    }

    func testChunkedScoringEqualsOneBatchBitForBit() async throws {
        let roles = try RoleSet()
        let trunk = await roles.policy.trunk, adapter = await roles.policy.adapter!
        // A budget of a few sequences: many chunks of unequal padding.
        let budget = ScoringChunks.bytes(trunk.config, batch: 3, tokens: 19, loraRank: 2)
        let ranges = ScoringChunks.ranges(rollout.map(\.count), config: trunk.config, loraRank: 2, budget: budget)
        XCTAssertGreaterThan(ranges.count, 5)
        XCTAssertEqual(ranges.flatMap { Array($0) }, Array(rollout.indices))
        for r in ranges where r.count > 1 {
            let padded = rollout[r].map(\.count).max()!
            XCTAssertLessThanOrEqual(
                ScoringChunks.bytes(trunk.config, batch: r.count, tokens: padded, loraRank: 2), budget)
        }

        XCTAssertEqual(
            try trunk.logProbs(rollout, adapter: adapter, budget: budget),
            try trunk.logProbsInOneBatch(rollout, adapter: adapter))
        let scorer = HydraScorer(trunk: trunk, rewardHead: await roles.reward.head)
        let chunked = try await scorer.referenceAndScores(rollout, budget: budget),
            whole = try await scorer.referenceAndScoresInOneBatch(rollout)
        XCTAssertEqual(chunked.logProbs, whole.logProbs)
        XCTAssertEqual(chunked.scores, whole.scores)
        let values = try await roles.critic.values(rollout, budget: budget),
            wholeValues = try await roles.critic.values(rollout, budget: .infinity)
        XCTAssertEqual(values, wholeValues)
        XCTAssertEqual(
            try trunk.lastHidden(rollout, budget: budget).array, try trunk.lastHidden(rollout, budget: .infinity).array)
        let (lp, hidden) = try trunk.logProbsAndHidden(rollout, adapter: adapter, budget: budget)
        let (lp1, hidden1) = try trunk.logProbsAndHidden(rollout, adapter: adapter, budget: .infinity)
        XCTAssertEqual(lp, lp1)
        XCTAssertEqual(hidden, hidden1)
        XCTAssertEqual(
            try ScoringChunks.ranges(rollout.map(\.count), config: trunk.config, loraRank: 2, budget: .infinity),
            [0..<rollout.count])
    }

    func testErrorsNameTheSequenceInTheWholeRollout() throws {
        let config = GPT2Config(vocabSize: 31, contextLength: 24, channels: 16, layers: 2, heads: 2, eosTokenId: 30)
        let model = try GPT2Trunk(config: config)
        var long = rollout
        long[17] = [Int32](repeating: 1, count: 25)
        XCTAssertThrowsError(
            try model.logProbs(
                long, adapter: nil, budget: ScoringChunks.bytes(config, batch: 2, tokens: 19, loraRank: 0))
        ) {
            XCTAssertEqual("\($0)", "sequence 17 has 25 tokens; it must have 1…24")
        }
        XCTAssertThrowsError(try model.logProbs([], adapter: nil)) { XCTAssertEqual("\($0)", "empty batch") }
    }
}
