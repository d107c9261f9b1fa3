import Alignment
import Cluster
import Foundation
import Kernels
import Models
import XCTest

@testable import Rewards
@testable import Roles
@testable import Training

/// PPO's phases one at a time on a tiny model: what each hands the next, and the reward registry.
final class PPOPhaseTests: TemporaryDirectoryTestCase {
    func session(_ overrides: [String], family: String = "gpt2") async throws -> PPOSession {
        let model = try makeTinyModel(directory: directory, family: family)
        let head = ScalarHead(channels: 128)
        var rng = RNG(seed: 3)
        head.initialize(rng: &rng, std: 0.5)
        try ScalarHeadIO.save(head, directory: model)
        let config = try PPOConfig(
            try ppoSchema.resolve(
                file: nil,
                overrides: [
                    "model.init_from=\(model)", "data.task=arith", "ppo.prompts=4", "ppo.samples_per_prompt=3",
                    "ppo.max_new_tokens=4",
                    "ppo.minibatch_size=5", "ppo.epochs=2", "train.max_length=16", "lora.rank=2", "eval.every=0",
                ] + overrides))
        let started = try await PPOSession.start(config: config, transport: SingleProcessTransport(), say: { _ in })
        let s = try XCTUnwrap(started)
        try await s.preparePrompts(folder: nil)
        return s
    }

    /// `ppo.old_logprobs: sampling` (the default) keeps the sampling pass's log-probs instead of a
    /// policy forward over the rollout: the same distributions up to summation order (and, in bf16,
    /// rounding); `recompute` takes the policy pass's, and both give the same reference log-probs.
    func testOldLogProbsFromSamplingMatchAPolicyPass() async throws {
        for precision in ["fp32", "bf16"] {
            for family in testedFamilies {
                let sampling = try await session(["precision=\(precision)"], family: family)
                let recompute = try await session(
                    ["precision=\(precision)", "ppo.old_logprobs=recompute"], family: family)
                XCTAssertTrue(sampling.oldLogProbsFromSampling)
                XCTAssertFalse(recompute.oldLogProbsFromSampling)
                let rollout = try await sampling.rollout(1), again = try await recompute.rollout(1)
                XCTAssertEqual(rollout.sequences, again.sequences, "same seed, same samples")
                let kept = try await sampling.score(rollout), passed = try await recompute.score(again)
                XCTAssertEqual(kept.oldLogProbs.map(\.count), rollout.tokens.map(\.count))
                XCTAssertEqual(kept.oldLogProbs, rollout.sampledLogProbs)
                XCTAssertEqual(kept.referenceLogProbs, passed.referenceLogProbs)
                let worst = zip(kept.oldLogProbs.joined(), passed.oldLogProbs.joined()).map { abs($0 - $1) }.max()!
                // fp32: summation order only. bf16: a last-bit difference before a rounding to bf16
                // can move that input by 2⁻⁸ relative, so the two passes differ by bf16 noise.
                XCTAssertLessThan(worst, precision == "fp32" ? 1e-4 : 1e-2, "\(precision) \(family)")
                XCTAssertGreaterThan(passed.oldLogProbs.joined().map(abs).max()!, 0.1, "log-probs that are not all ~0")
                // What bf16 costs, reported on the first iteration: bf16 sampling against fp32 scoring.
                if precision == "bf16" {
                    let gap = try XCTUnwrap(kept.precisionFigures["bf16_logprob_gap"])
                    XCTAssertGreaterThan(gap, 0, family)
                    XCTAssertLessThan(gap, 0.05, family)
                    XCTAssertLessThan(abs(try XCTUnwrap(kept.precisionFigures["bf16_kl"])), 0.05, family)
                } else {
                    XCTAssertEqual(kept.precisionFigures, [:])
                }
            }
        }
    }

    func testPhasesHandEachOtherTheirShapes() async throws {
        for family in testedFamilies {
            let s = try await session(["ppo.estimator=gae", "rewards.reward_head=0.5"], family: family)
            let rollout = try await s.rollout(1)
            XCTAssertEqual(rollout.sequences.count, 12, "4 prompts × 3 samples")
            XCTAssertEqual(
                Set(rollout.promptIndices.chunked(3).map { Set($0).count }), [1], "each prompt's samples are adjacent")
            for i in rollout.sequences.indices {
                XCTAssertEqual(rollout.sequences[i], rollout.prompts[i].tokens + rollout.tokens[i])
                XCTAssertTrue((1...4).contains(rollout.tokens[i].count))
            }
            let scored = try await s.score(rollout)
            for i in rollout.sequences.indices {
                XCTAssertEqual(scored.oldLogProbs[i].count, rollout.tokens[i].count, "one log-prob per response token")
                XCTAssertEqual(scored.referenceLogProbs[i].count, rollout.tokens[i].count)
                XCTAssertEqual(scored.oldValues[i].count, rollout.tokens[i].count)
                // A fresh adapter (B = 0) leaves the policy equal to the reference: KL 0.
                XCTAssertEqual(scored.klTokens[i].map(abs).max()!, 0, accuracy: 1e-5)
                XCTAssertLessThanOrEqual(abs(scored.scores[i]), s.cfg.ppo.rewardClip)
            }
            XCTAssertEqual(Set(scored.rewards.bySource.keys), ["reward_head", "verifier", "format"])
            let expected = rollout.sequences.indices.map { i in
                0.5 * scored.rewards.bySource["reward_head"]![i] + scored.rewards.bySource["verifier"]![i] + 0.5
                    * scored.rewards.bySource["format"]![i]
            }
            for i in expected.indices {
                XCTAssertEqual(scored.rewards.total[i], expected[i], accuracy: 1e-12, "the weighted sum of the sources")
            }
            let global = GlobalBatch(rollout, scored)
            let advantages = s.advantages(global, beta: scored.beta)
            let flat = advantages.advantages.flatMap { $0 }
            XCTAssertEqual(
                flat.reduce(0, +) / Double(flat.count), 0, accuracy: 1e-9, "whitened GAE advantages have mean 0")
            let stats = try await s.update(rollout.iteration, global, advantages)
            XCTAssertEqual(stats.steps.count, 2 * 3, "2 epochs × ⌈12 / 5⌉ minibatches")
            XCTAssertEqual(stats.valueLosses.count, 6, "GAE trains the critic alongside")
            let metrics = try await s.report(rollout, scored, stats)
            XCTAssertEqual(metrics.sums.samples, 12)
            XCTAssertEqual(metrics.sourceNames, ["reward_head", "verifier", "format"])
            XCTAssertEqual(
                try XCTUnwrap(metrics.value("reward_mean")), scored.scores.reduce(0, +) / 12, accuracy: 1e-12)
            // The summed record survives the all-reduce payload layout.
            XCTAssertEqual(metrics.sums.replacingSummands(with: metrics.sums.summands), metrics.sums)
            XCTAssertEqual(
                metrics.sums.summands.count, 4 + 2 + 2 + 3 * 2, "counts, reward and gold moments, one moment per source"
            )
        }
    }

    func testGroupEstimatorsCenterEachPromptsSamples() async throws {
        let s = try await session(["ppo.estimator=grpo", "rewards.format=1"])
        let rollout = try await s.rollout(2)
        let scored = try await s.score(rollout)
        let advantages = s.advantages(GlobalBatch(rollout, scored), beta: scored.beta)
        for group in Array(rollout.sequences.indices).chunked(3) {
            let perSample = group.map { advantages.advantages[$0].first ?? 0 }
            XCTAssertEqual(
                perSample.reduce(0, +), 0, accuracy: 1e-9, "GRPO: advantages sum to 0 within a prompt's group")
        }
        XCTAssertTrue(advantages.returns.isEmpty, "no critic, no returns")
    }

    /// The global batch travels between ranks intact, and a damaged record is an error, not a trap.
    func testGlobalBatchRoundTripsAndRefusesDamagedRecords() async throws {
        let s = try await session(["ppo.estimator=gae"])
        let rollout = try await s.rollout(1)
        let global = GlobalBatch(rollout, try await s.score(rollout))
        XCTAssertEqual(try GlobalBatch(decoding: global.encoded()), global)
        var twice = global
        twice.append(global)
        XCTAssertEqual(twice.count, 2 * global.count)
        var shortKL = global
        shortKL.klTokens[0].removeLast()
        XCTAssertThrowsError(try GlobalBatch(decoding: shortKL.encoded()))
        XCTAssertThrowsError(try GlobalBatch(decoding: global.encoded() + Data([0])), "trailing bytes")
        var noValue = global
        noValue.oldValues[1] = []
        XCTAssertThrowsError(try GlobalBatch(decoding: noValue.encoded()))
    }

    /// A minibatch's micro-batches are dealt to the ranks in turn: together the ranks cover each
    /// minibatch once, every rank knows the whole step's tokens, and one rank alone gets them all.
    func testUpdateStepsDealMicroBatchesToTheRanks() {
        let order = [5, 3, 0, 7, 1, 6, 2, 4, 8, 9], length = { (i: Int) in i + 1 }
        let one = UpdateStep.epoch(order: order, minibatch: 4, microBatch: 2, rank: 0, ranks: 1, responseLength: length)
        XCTAssertEqual(one.map(\.mine), [[5, 3, 0, 7], [1, 6, 2, 4], [8, 9]])
        let ranks = (0..<2).map {
            UpdateStep.epoch(order: order, minibatch: 4, microBatch: 2, rank: $0, ranks: 2, responseLength: length)
        }
        XCTAssertEqual(ranks[0].map(\.mine), [[5, 3], [1, 6], [8, 9]])
        XCTAssertEqual(ranks[1].map(\.mine), [[0, 7], [2, 4], []], "the last, partial minibatch leaves rank 1 none")
        XCTAssertEqual(ranks[1].map(\.tokens), one.map(\.tokens))
        XCTAssertEqual(one.map(\.tokens), [6 + 4 + 1 + 8, 2 + 7 + 3 + 5, 9 + 10])
        XCTAssertEqual(StepShape(microBatch: 2).parts(5), [0..<2, 2..<4, 4..<5])
        XCTAssertEqual(StepShape.whole.parts(5), [0..<5])
    }

    func testBatchesThatCannotBeCutAlikeAreRefused() throws {
        func settings(_ overrides: [String]) throws -> PPOSettings {
            try PPOConfig(
                try ppoSchema.resolve(file: nil, overrides: ["model.init_from=/sft", "data.task=arith"] + overrides)
            ).ppo
        }
        XCTAssertNoThrow(
            try PPOSession.checkBatches(
                settings(["ppo.minibatch_size=8", "ppo.micro_batch_size=2", "ppo.rollout_batch=4"]), share: 8, ranks: 4)
        )
        XCTAssertThrowsError(
            try PPOSession.checkBatches(settings(["ppo.rollout_batch=3"]), share: 8, ranks: 1)
        ) { XCTAssertTrue("\($0)".contains("'ppo.rollout_batch' (3) must divide"), "\($0)") }
        XCTAssertThrowsError(
            try PPOSession.checkBatches(
                settings(["ppo.minibatch_size=8", "ppo.micro_batch_size=3"]), share: 8, ranks: 2)
        ) { XCTAssertTrue("\($0)".contains("'ppo.minibatch_size' (8) must be a multiple"), "\($0)") }
    }

    /// The memory plan of a host: each rank's own bytes once per rank, the frozen weights once when
    /// the host shares them; a host whose ranks together exceed the machine is refused at start.
    func testTheMemoryPlanCountsSharedFrozenWeightsOncePerHost() throws {
        let cfg = try PPOConfig(
            try ppoSchema.resolve(
                file: nil, overrides: ["data.task=arith", "model.init_from=/sft", "precision=bf16", "ppo.prompts=64"]))
        let model = try ModelFamilies.preset("smollm2-135m", family: "llama")
        let rank = try MemoryPlan(cfg, model: model, ranksRollingOut: 4)
        let shared = try MemoryPlan(
            cfg, model: model, ranksRollingOut: 4, host: HostShare(ranks: 4, sharesFrozenWeights: true))
        let copies = try MemoryPlan(
            cfg, model: model, ranksRollingOut: 4, host: HostShare(ranks: 4, sharesFrozenWeights: false))
        let frozen = MemoryPlan.frozenWeightBytes(model, precision: .bf16)
        XCTAssertEqual(copies.hostBytes, 4 * rank.totalBytes)
        XCTAssertEqual(shared.hostBytes, 4 * rank.totalBytes - 3 * frozen, accuracy: 1)
        XCTAssertTrue(shared.description.contains("host of 4 ranks: "), shared.description)
        XCTAssertFalse(rank.description.contains("host of"), rank.description)
        let machine = try XCTUnwrap(MemoryPlan.defaultLimitBytes)
        let crowded = Int(machine / (rank.totalBytes - frozen)) + 2
        XCTAssertThrowsError(
            try PPOSession.checkMemoryPlan(
                cfg, model: model, ranksRollingOut: 4, host: HostShare(ranks: crowded, sharesFrozenWeights: true),
                say: { _ in })
        ) { XCTAssertTrue("\($0)".contains("for the \(crowded) ranks of this host"), "\($0)") }
        XCTAssertNoThrow(
            try PPOSession.checkMemoryPlan(
                cfg, model: model, ranksRollingOut: 4, host: HostShare(ranks: 2, sharesFrozenWeights: true),
                say: { _ in }))
        XCTAssertNoThrow(
            try PPOSession.checkMemoryPlan(
                cfg, model: model, ranksRollingOut: 1, host: HostShare(ranks: crowded, sharesFrozenWeights: true),
                say: { _ in }), "placed roles: each rank runs part of the plan")
    }

    func testRegistryNamesTheSourcesAConfigUsesAndLaserArmsComeFromIt() throws {
        func config(_ overrides: [String]) throws -> RewardConfig {
            try PPOConfig(
                try ppoSchema.resolve(file: nil, overrides: ["data.task=arith", "model.init_from=/sft"] + overrides)
            ).rewardConfig
        }
        XCTAssertEqual(RewardSources.names(for: try config([])), ["reward_head", "verifier", "format"])
        XCTAssertEqual(
            RewardSources.names(for: try config(["rewards.hybrid=1", "rewards.proxy_heads=/h"])),
            ["reward_head", "verifier", "format", "proxy", "hybrid"])
        XCTAssertEqual(Set(RewardSources.registry.map(\.name)).count, RewardSources.registry.count, "names are unique")
        XCTAssertEqual(
            RewardSources.names(for: try config(["rewards.genrm=0.5", "rewards.genrm_model=/judge"])),
            ["reward_head", "verifier", "format", "genrm"])
        XCTAssertTrue(ppoSchema.keys.contains { $0.path == "rewards.genrm" }, "a source's own keys join PPO's schema")
    }

    /// A source added by one file and one registry line: the generative reward model alone, its
    /// scores a probability, logged under its name and weighted into the reward.
    func testGenerativeRewardModelIsASourceOfItsOwn() async throws {
        let judge = try makeTinyModel(directory: directory + "/judge")
        let s = try await session([
            "ppo.estimator=grpo", "rewards.genrm=2", "rewards.genrm_model=\(judge)", "rewards.format=0",
        ])
        XCTAssertEqual(s.sources.map(\.name), ["reward_head", "verifier", "format", "genrm"])
        let rollout = try await s.rollout(1)
        let scored = try await s.score(rollout)
        let genrm = try XCTUnwrap(scored.rewards.bySource["genrm"])
        XCTAssertEqual(genrm.count, rollout.sequences.count)
        XCTAssertTrue(genrm.allSatisfy { $0 > 0 && $0 < 1 }, "P(Y) / (P(Y) + P(N)): \(genrm)")
        for i in genrm.indices {
            XCTAssertEqual(
                scored.rewards.total[i], scored.rewards.bySource["verifier"]![i] + 2 * genrm[i], accuracy: 1e-12)
        }
        let metrics = try await s.report(
            rollout, scored,
            try await s.update(
                rollout.iteration, GlobalBatch(rollout, scored),
                s.advantages(GlobalBatch(rollout, scored), beta: scored.beta)))
        XCTAssertEqual(
            try XCTUnwrap(metrics.value("reward_genrm_mean")), genrm.reduce(0, +) / Double(genrm.count), accuracy: 1e-12
        )
    }
}

extension PPOSession {
    /// The report's phases in the iteration's order, timings left at 0.
    func report(_ r: Rollout, _ s: ScoredRollout, _ stats: UpdateStats) async throws -> PPOMetrics {
        let sums = try await summarize(r, s, GlobalBatch(r, s))
        adaptKL(to: sums)
        return metrics(r, s, stats, sums: sums, sourceUpdates: try await updateRewardSources(r, s), seconds: (0, 0))
    }
}

extension Array {
    func chunked(_ n: Int) -> [[Element]] {
        stride(from: 0, to: count, by: n).map { Array(self[$0..<Swift.min($0 + n, count)]) }
    }
}
