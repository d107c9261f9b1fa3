import Alignment
import Foundation
import Kernels
import Models
import XCTest

@testable import Roles

/// docs/algorithms.md oracles H1 and H2 on a random model.
final class HydraInvariantTests: XCTestCase {
    func model() throws -> (GPT2Trunk, ScalarHead) {
        let config = GPT2Config(vocabSize: 31, contextLength: 24, channels: 16, layers: 2, heads: 2, eosTokenId: 30)
        let trunk = try GPT2Trunk(config: config)
        var rng = RNG(seed: 12)
        trunk.initialize(rng: &rng, std: 0.3)
        let head = ScalarHead(channels: 16)
        head.initialize(rng: &rng, std: 0.3)
        return (trunk, head)
    }

    /// H1: a fresh policy LoRA (B = 0) equals the reference exactly, so KL = 0 under every
    /// estimator and the first step's shaped reward is the score on the last token only.
    func testFreshPolicyAdapterHasZeroKL() async throws {
        let (trunk, head) = try model()
        let lora = try LoRAAdapter(
            config: LoRAConfig(rank: 4, alpha: 8, targets: trunk.config.allLoRATargets), modelConfig: trunk.config)
        var rng = RNG(seed: 1)
        lora.initialize(rng: &rng)
        let policy = LocalPolicy(trunk: trunk, adapter: lora)
        let scorer = HydraScorer(trunk: trunk, rewardHead: head)
        let sequences: [[Int32]] = [[1, 2, 3, 4, 5, 6], [9, 8, 7]]
        let old = try await policy.logProbs(sequences)
        let (ref, scores) = try await scorer.referenceAndScores(sequences)
        XCTAssertEqual(old, ref, "adapter with B = 0 ⇒ identical log-probs")
        for (o, r) in zip(old, ref) {
            for e in KLEstimator.allCases {
                let kl = PPOMath.kl(o.map(Double.init), r.map(Double.init), estimator: e)
                XCTAssertEqual(kl, Array(repeating: 0, count: kl.count), "\(e)")
                let shaped = PPOMath.shapedRewards(kl: kl, beta: 0.05, score: Double(scores[0]))
                XCTAssertEqual(shaped, Array(repeating: 0, count: kl.count - 1) + [Double(scores[0])])
            }
        }
    }

    /// H2: the one adapters-off pass gives the reference log-probs and reward-head scores of
    /// separately loaded copies.
    func testOneAdaptersOffPassEqualsSeparateReferenceAndReward() async throws {
        let (trunk, head) = try model()
        let sequences: [[Int32]] = [[1, 2, 3, 4, 5, 6, 7, 8], [9, 8, 7], [4, 4]]
        let (ref, scores) = try await HydraScorer(trunk: trunk, rewardHead: head).referenceAndScores(sequences)
        let copy = try trunk.clone()
        let headCopy = ScalarHead(channels: 16)
        headCopy.parameters.copy(from: head.parameters)
        let separateRef = try await LocalReference(trunk: copy).logProbs(sequences)
        let separateScores = try await LocalReward(trunk: copy, head: headCopy).scores(sequences)
        for (a, b) in zip(ref.joined(), separateRef.joined()) { XCTAssertEqual(a, b, accuracy: 1e-6) }
        for (a, b) in zip(scores, separateScores) { XCTAssertEqual(a, b, accuracy: 1e-6) }
        // And the reference equals plain scoring of the trunk with adapters off.
        XCTAssertEqual(ref, try trunk.scoreSequences(sequences))
    }
}
