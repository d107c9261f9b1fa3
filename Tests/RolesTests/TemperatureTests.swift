import Foundation
import Kernels
import Models
import XCTest

@testable import Alignment
@testable import Roles

/// `ppo.temperature` (issue 29, point 3): sampling, the policy's and the reference's log-probs
/// and the update's entropy all read softmax(logits/τ), as TRL's GRPOTrainer takes them.
final class TemperatureTests: XCTestCase {
    let tau: Float = 0.7

    /// log softmax(z/τ)[target] at each position of `sequence`, from the model's logits.
    func expected(_ trunk: any CausalLM, _ sequence: [Int32], adapter: LoRAAdapter?) throws -> [Double] {
        let v = trunk.config.vocabSize, logits = try trunk.logits(of: sequence, adapter: adapter)
        return (0..<(sequence.count - 1)).map { j in
            let z = logits[(j * v)..<((j + 1) * v)].map { Double($0) / Double(tau) }
            let m = z.max()!
            return z[Int(sequence[j + 1])] - (m + log(z.map { exp($0 - m) }.reduce(0, +)))
        }
    }

    func testThePolicyAndTheReferenceTakeLogProbsAtTheSamplingTemperature() async throws {
        let roles = try RoleSet(), adapter = await roles.policy.adapter
        // A fresh adapter is the identity (B = 0): give it weights, so that the policy differs from the reference.
        var rng = RNG(seed: 9)
        if let adapter {
            rng.fillNormal(
                UnsafeMutableBufferPointer(start: adapter.weights.pointer, count: adapter.weights.count), std: 0.3)
        }
        let policy = LocalPolicy(trunk: roles.trunk, adapter: adapter, temperature: tau)
        let scorer = HydraScorer(trunk: roles.trunk, rewardHead: ScalarHead(channels: 16), temperature: tau)
        let policyLogProbs = try await policy.logProbs(sequences)
        let reference = try await scorer.referenceAndScores(sequences).logProbs
        for (i, s) in sequences.enumerated() {
            let withAdapter = try expected(roles.trunk, s, adapter: adapter)
            let without = try expected(roles.trunk, s, adapter: nil)
            for j in withAdapter.indices {
                XCTAssertEqual(Double(policyLogProbs[i][j]), withAdapter[j], accuracy: 1e-4)
                XCTAssertEqual(Double(reference[i][j]), without[j], accuracy: 1e-4)
            }
            XCTAssertNotEqual(withAdapter, without, "the adapter changes the distribution")
        }
        // At τ = 1 the same pass gives other numbers: τ is used, not ignored.
        let atOne = try await roles.policy.logProbs(sequences)
        XCTAssertGreaterThan(abs(atOne[0][0] - policyLogProbs[0][0]), 1e-3)
    }

    func testSampledLogProbsAreWhatTheScoringPassGivesAtTheSameTemperature() async throws {
        let roles = try RoleSet(), adapter = await roles.policy.adapter
        let policy = LocalPolicy(trunk: roles.trunk, adapter: adapter, temperature: tau)
        let prompts: [[Int32]] = [[1, 2, 3], [4, 5]]
        let sampled = try await policy.generate(
            prompts: prompts, options: SamplingOptions(temperature: tau, maxNewTokens: 6, seed: 3))
        let full = zip(prompts, sampled.tokens).map { $0 + $1 }
        let scored = try await policy.logProbs(full)
        for (i, prompt) in prompts.enumerated() {
            for (t, lp) in sampled.logProbs[i].enumerated() {
                XCTAssertEqual(lp, scored[i][prompt.count - 1 + t], accuracy: 1e-4, "sequence \(i), token \(t)")
            }
        }
    }

    func testAPPOStepsEntropyIsThatOfTheTemperedDistribution() async throws {
        let roles = try RoleSet(), adapter = await roles.policy.adapter
        let policy = LocalPolicy(trunk: roles.trunk, adapter: adapter, temperature: tau)
        let s: [Int32] = [1, 2, 3, 4, 5], promptLength = 2
        let old = Array(try await policy.logProbs([s])[0][(promptLength - 1)...])
        // The tempered entropy of each response position, from the logits.
        let v = roles.trunk.config.vocabSize
        let logits = try roles.trunk.logits(of: s, adapter: adapter)
        let entropies = ((promptLength - 1)..<(s.count - 1)).map { j -> Double in
            let z = logits[(j * v)..<((j + 1) * v)].map { Double($0) / Double(tau) }
            return PPOMath.entropy(logits: z)
        }
        let targets = PPOTargets(
            promptLengths: [promptLength], oldLogProbs: [old], advantages: [[Float](repeating: 1, count: old.count)])
        let stats = try await policy.trainStep(
            [s], objective: PolicyObjective.ppo(targets), shape: StepShape.whole, learningRate: 0, maxGradNorm: 0)
        XCTAssertEqual(Double(stats.entropy), entropies.reduce(0, +) / Double(entropies.count), accuracy: 1e-4)
    }
}
