import Cluster
import Foundation
import Kernels
import Models
import XCTest

@testable import Roles

/// One set of roles over a trunk made from a fixed seed (every rank builds the same one).
struct RoleSet: Sendable {
    let policy: LocalPolicy, critic: LocalCritic, reference: LocalReference, reward: LocalReward
    let trunk: GPT2Trunk

    init(pool: ActivationPool? = nil) throws {
        let config = GPT2Config(vocabSize: 31, contextLength: 24, channels: 16, layers: 2, heads: 2, eosTokenId: 30)
        trunk = try GPT2Trunk(config: config)
        var rng = RNG(seed: 5)
        trunk.initialize(rng: &rng, std: 0.3)
        let policyLoRA = try LoRAAdapter(
            config: LoRAConfig(rank: 2, alpha: 4, targets: [.attentionQKV, .mlpUp]), modelConfig: config)
        let criticLoRA = try LoRAAdapter(
            config: LoRAConfig(rank: 2, alpha: 4, targets: [.attentionOutput]), modelConfig: config)
        policyLoRA.initialize(rng: &rng)
        criticLoRA.initialize(rng: &rng)
        let valueHead = ScalarHead(channels: 16), rewardHead = ScalarHead(channels: 16)
        valueHead.initialize(rng: &rng, std: 0.3)
        rewardHead.initialize(rng: &rng, std: 0.3)
        let hyper = AdamWHyperparameters(learningRate: 1e-2, weightDecay: 0)
        // Hydra: four roles over one trunk object.
        policy = LocalPolicy(trunk: trunk, adapter: policyLoRA, hyper: hyper, pool: pool ?? ActivationPool())
        critic = LocalCritic(
            trunk: trunk, adapter: criticLoRA, head: valueHead, hyper: hyper, pool: pool ?? ActivationPool())
        reference = LocalReference(trunk: trunk)
        reward = LocalReward(trunk: trunk, head: rewardHead)
    }
}

let sequences: [[Int32]] = [[1, 2, 3, 4, 5], [7, 8], [9, 10, 11, 12, 13, 14, 15]]

final class RoleTests: XCTestCase {
    func testRemoteRolesOnRankOneAnswerLikeLocalRoles() async throws {
        let world = EmbeddedWorld(size: 2)
        let results = try await world.run { transport -> [String] in
            let roles = try RoleSet()
            if transport.rank == 1 {
                let served = try await RoleServer(
                    transport: transport, policy: roles.policy, critic: roles.critic,
                    reference: roles.reference, reward: roles.reward
                ).serve()
                return ["served \(served)"]
            }
            let client = RoleClient(transport: transport, host: 1)
            let remote = (
                policy: RemotePolicy(client), critic: RemoteCritic(client), reference: RemoteReference(client),
                reward: RemoteReward(client)
            )
            var report: [String] = []
            func same<T: Equatable>(_ name: String, _ a: T, _ b: T) {
                report.append(a == b ? "\(name) ok" : "\(name) DIFFERS: \(a) vs \(b)")
            }
            same(
                "reference", try await remote.reference.logProbs(sequences),
                try await roles.reference.logProbs(sequences))
            same("reward", try await remote.reward.scores(sequences), try await roles.reward.scores(sequences))
            same("values", try await remote.critic.values(sequences), try await roles.critic.values(sequences))
            same(
                "policy log-probs", try await remote.policy.logProbs(sequences),
                try await roles.policy.logProbs(sequences))
            let options = SamplingOptions(temperature: 1, topK: 5, maxNewTokens: 4, eosTokenId: 30, seed: 3)
            let g1 = try await remote.policy.generate(prompts: [[1, 2], [3]], options: options)
            let g2 = try await roles.policy.generate(prompts: [[1, 2], [3]], options: options)
            same("generate", g1.tokens + [[]], g2.tokens + [[]])
            same("generate log-probs", g1.logProbs, g2.logProbs)
            same("generate eos", g1.endedWithEOS, g2.endedWithEOS)
            let weights = sequences.map { Array(repeating: Float(0.1), count: $0.count - 1) }
            let t1 = try await remote.policy.trainStep(
                sequences, objective: .weightedLogLikelihood(weights: weights), learningRate: 1e-2, maxGradNorm: 1)
            let t2 = try await roles.policy.trainStep(
                sequences, objective: .weightedLogLikelihood(weights: weights), learningRate: 1e-2, maxGradNorm: 1)
            same("policy train", t1, t2)
            let ppo = PolicyObjective.ppo(
                PPOTargets(
                    promptLengths: [2, 1, 4],
                    oldLogProbs: sequences.enumerated().map { i, s in
                        Array(repeating: Float(-3), count: s.count - [2, 1, 4][i])
                    },
                    advantages: sequences.enumerated().map { i, s in
                        (0..<(s.count - [2, 1, 4][i])).map { Float($0 % 2 == 0 ? 1 : -1) }
                    },
                    dualClip: 3, entropyCoefficient: 0.01))
            let p1 = try await remote.policy.trainStep(sequences, objective: ppo, learningRate: 1e-2, maxGradNorm: 1)
            let p2 = try await roles.policy.trainStep(sequences, objective: ppo, learningRate: 1e-2, maxGradNorm: 1)
            same("policy PPO train", p1, p2)
            // The recipes' fields cross the wire: divisors (sequence 2 left out), GSPO's ratio, clip-higher.
            guard case .ppo(var recipe) = ppo else { return ["not a PPO objective"] }
            (recipe.divisors, recipe.sequenceRatio, recipe.clipHigh) = ([6, 0, 12], true, 0.28)
            let r1 = try await remote.policy.trainStep(
                sequences, objective: .ppo(recipe), learningRate: 1e-2, maxGradNorm: 1)
            let r2 = try await roles.policy.trainStep(
                sequences, objective: .ppo(recipe), learningRate: 1e-2, maxGradNorm: 1)
            same("policy GSPO train", r1, r2)
            same(
                "policy after training", try await remote.policy.logProbs(sequences),
                try await roles.policy.logProbs(sequences))
            let targets = sequences.map { $0.map { Float($0) / 10 } },
                ones = sequences.map { Array(repeating: Float(1), count: $0.count) }
            let c1 = try await remote.critic.trainStep(
                sequences, objective: .regression(targets: targets, weights: ones), learningRate: 1e-2, maxGradNorm: 0)
            let c2 = try await roles.critic.trainStep(
                sequences, objective: .regression(targets: targets, weights: ones), learningRate: 1e-2, maxGradNorm: 0)
            same("critic train", c1, c2)
            let value = CriticObjective.clippedValue(
                promptLengths: [2, 1, 4],
                oldValues: sequences.enumerated().map { i, s in
                    Array(repeating: Float(0.1), count: s.count - [2, 1, 4][i])
                },
                returns: sequences.enumerated().map { i, s in Array(repeating: Float(1), count: s.count - [2, 1, 4][i])
                }, clip: 0.2)
            let v1 = try await remote.critic.trainStep(sequences, objective: value, learningRate: 1e-2, maxGradNorm: 1)
            let v2 = try await roles.critic.trainStep(sequences, objective: value, learningRate: 1e-2, maxGradNorm: 1)
            same("critic clipped value train", v1, v2)
            same(
                "values after training", try await remote.critic.values(sequences),
                try await roles.critic.values(sequences))
            do {
                _ = try await remote.reference.logProbs([[]])
                report.append("remote error NOT raised")
            } catch {
                report.append(
                    "\(error)".contains("rank 1 (reference): ") ? "remote error ok" : "remote error wrong: \(error)")
            }
            try await client.stop()
            return report
        }
        XCTAssertEqual(world.undelivered, [])
        for line in results[0] { XCTAssertTrue(line.hasSuffix(" ok"), line) }
        XCTAssertEqual(results[0].count, 15)
        XCTAssertEqual(results[1], ["served 13"], "thirteen requests answered, the failing one included")
    }

    func testLocalRolesLearn() async throws {
        let roles = try RoleSet()
        let weights = sequences.map { Array(repeating: Float(1) / 11, count: $0.count - 1) }
        let first = try await roles.policy.trainStep(
            sequences, objective: .weightedLogLikelihood(weights: weights), learningRate: 1e-2, maxGradNorm: 0)
        var last = first
        for _ in 0..<20 {
            last = try await roles.policy.trainStep(
                sequences, objective: .weightedLogLikelihood(weights: weights), learningRate: 1e-2, maxGradNorm: 0)
        }
        XCTAssertLessThan(last.loss, first.loss * 0.8, "weighted NLL falls (\(first.loss) → \(last.loss))")
        let targets = sequences.map { $0.map { _ in Float(0.5) } },
            ones = sequences.map { Array(repeating: Float(1) / 14, count: $0.count) }
        let c0 = try await roles.critic.trainStep(
            sequences, objective: .regression(targets: targets, weights: ones), learningRate: 1e-2, maxGradNorm: 0)
        var c = c0
        for _ in 0..<30 {
            c = try await roles.critic.trainStep(
                sequences, objective: .regression(targets: targets, weights: ones), learningRate: 1e-2, maxGradNorm: 0)
        }
        XCTAssertLessThan(c.loss, c0.loss * 0.5, "value regression falls (\(c0.loss) → \(c.loss))")
        // The reference never moves: the trunk is shared, only adapters and heads train.
        let reference = try await roles.reference.logProbs(sequences)
        let fresh = try await RoleSet().reference.logProbs(sequences)
        XCTAssertEqual(reference, fresh)
    }

    /// PPO's policy and critic take turns on one activation set (the memory plan counts one): the
    /// critic's step reuses the set the policy's step left, and computes the same bits as with a
    /// set of its own (a forward overwrites whatever the previous step left in it).
    func testPolicyAndCriticShareOneActivationSetWithoutChangingABit() async throws {
        let pool = ActivationPool()
        let shared = try RoleSet(pool: pool), apart = try RoleSet()
        let weights = sequences.map { Array(repeating: Float(1) / 11, count: $0.count - 1) }
        let targets = sequences.map { $0.map { _ in Float(0.5) } },
            ones = sequences.map { Array(repeating: Float(1) / 14, count: $0.count) }
        var stats: [[StepStats]] = [[], []]
        for (k, roles) in [shared, apart].enumerated() {
            for _ in 0..<2 {
                stats[k].append(
                    try await roles.policy.trainStep(
                        sequences, objective: .weightedLogLikelihood(weights: weights), learningRate: 1e-2,
                        maxGradNorm: 0))
                if k == 0 {
                    // The set the policy gave back is the one the critic's step takes next.
                    let left = pool.take(roles.trunk, batch: 3, tokens: 7, loraRank: 2)
                    pool.giveBack(left)
                    let critic = try await roles.critic.trainStep(
                        sequences, objective: .regression(targets: targets, weights: ones), learningRate: 1e-2,
                        maxGradNorm: 0)
                    stats[k].append(critic)
                    let after = pool.take(roles.trunk, batch: 3, tokens: 7, loraRank: 2)
                    XCTAssertTrue(after === left, "the critic allocated a set of its own")
                    pool.giveBack(after)
                } else {
                    stats[k].append(
                        try await roles.critic.trainStep(
                            sequences, objective: .regression(targets: targets, weights: ones), learningRate: 1e-2,
                            maxGradNorm: 0))
                }
            }
        }
        XCTAssertEqual(stats[0].map(\.loss.bitPattern), stats[1].map(\.loss.bitPattern))
        XCTAssertEqual(stats[0].map(\.gradNorm.bitPattern), stats[1].map(\.gradNorm.bitPattern))
    }

    /// The LM head over the gathered rows (the sequences' own positions, or those an objective reads)
    /// gives the log-probs the head over the whole padded batch gives there: the same bits in bf16,
    /// whose rows do not depend on the rows beside them, and the same to fp32 rounding in fp32.
    func testHeadOverGatheredRowsMatchesTheWholeBatch() throws {
        for precision in [Precision.fp32, .bf16] {
            let trunk = try RoleSet().trunk
            trunk.use(precision, frozen: true)
            let batch = try PaddedBatch(sequences, contextLength: 24)
            let hidden = try trunk.inferenceHidden(tokens: batch.tokens, batch: 3, length: batch.length, adapter: nil)
            let whole = trunk.lmHeadLogProbs(
                hidden: hidden, targets: batch.targets, cache: LMHeadCache(rows: 3 * batch.length, vocab: 31))
            let gathered = HeadRows(targetsOf: sequences, length: batch.length, of: hidden, channels: 16)
                .logProbs(trunk, sequences: sequences, targets: batch.targets)
            for (r, s) in sequences.enumerated() {
                let expected = Array(whole[(r * batch.length)..<(r * batch.length + s.count - 1)])
                if precision == .bf16 {
                    XCTAssertEqual(gathered[r].map(\.bitPattern), expected.map(\.bitPattern))
                } else {
                    XCTAssertLessThanOrEqual(maxDifference(gathered[r], expected), 1e-5)
                }
            }
        }
    }

    func testWireFormatRejectsBadMessages() throws {
        var w = WireWriter()
        w.sequences([[1, 2], []])
        w.floats([1.5])
        w.string("é")
        var r = try WireReader(w.data)
        XCTAssertEqual(try r.sequences(), [[1, 2], []])
        XCTAssertEqual(try r.floats(), [1.5])
        XCTAssertEqual(try r.string(), "é")
        XCTAssertTrue(r.isAtEnd)
        var truncated = try WireReader(w.data.prefix(w.data.count - 3))
        _ = try truncated.sequences()
        _ = try truncated.floats()
        XCTAssertThrowsError(try truncated.string())
        XCTAssertThrowsError(try WireReader(Data([9, 0, 0]))) { XCTAssertTrue("\($0)".contains("version 9")) }
        var huge = WireWriter()
        huge.int(1 << 40)
        var reader = try WireReader(huge.data)
        XCTAssertThrowsError(try reader.floats(), "a length beyond the message must not allocate")
    }

    func testPlacementParsing() throws {
        let p = try Placement.parse("reference=1,reward=1", worldSize: 2)
        XCTAssertEqual(p.remote, [.reference: 1, .reward: 1])
        XCTAssertEqual(p.servers, [1: [.reference, .reward]])
        XCTAssertEqual(p.description, "policy → rank 0, critic → rank 0, reference → rank 1, reward → rank 1")
        XCTAssertEqual(
            Placement.colocated(worldSize: 4).description,
            "policy → every rank (colocated), critic → every rank (colocated), reference → every rank (colocated), "
                + "reward → every rank (colocated)"
        )
        XCTAssertThrowsError(try Placement.parse("reward=2", worldSize: 2)) {
            XCTAssertTrue("\($0)".contains("outside the world of 2"))
        }
        XCTAssertThrowsError(try Placement.parse("judge=1", worldSize: 2)) {
            XCTAssertTrue("\($0)".contains("expected role=rank"))
        }
    }
}

func maxDifference(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count)
    return zip(a, b).map { abs($0 - $1) }.max() ?? 0
}
