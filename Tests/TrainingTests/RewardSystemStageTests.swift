import Alignment
import Cluster
import Datasets
import Foundation
import Kernels
import Models
import Roles
import Tokenizers
import XCTest

@testable import Rewards
@testable import Training

/// PPO with learned rewards: LASeR over two proxy heads and R2M resume exactly too (bandit
/// state, R2M parameters and moments are in the checkpoint); R2M's update never touches the policy.
final class LearnedRewardTests: TemporaryDirectoryTestCase {
    func heads(_ model: String, count: Int) throws -> [String] {
        try (0..<count).map { k in
            let dir = directory + "/head\(k)"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let head = ScalarHead(channels: try HFCheckpoint.load(directory: model).config.channels)
            var rng = RNG(seed: 40 + UInt64(k))
            head.initialize(rng: &rng, std: 0.3)
            try ScalarHeadIO.save(head, directory: dir)
            return dir
        }
    }

    func testLaserAndR2MResumeBitIdentically() async throws {
        let model = try makeTinyModel(directory: directory)
        let proxies = try heads(model, count: 2).joined(separator: ",")
        // Held-out gold pairs for R2M's accuracy check: 3 pairs, so an accuracy is a multiple of 1/6 (ties count half).
        let pairs = directory + "/heldout_pairs.jsonl"
        try JSONL.write(
            [("1+2=", "3", "4"), ("5+5=", "10", "1"), ("7+8=", "15", "51")].map {
                ["prompt": $0.0, "chosen": $0.1, "rejected": $0.2]
            }, to: pairs)
        for (name, extra) in [
            ("laser", ["rewards.selection=laser"]),
            ("laser-heldout", ["rewards.selection=laser", "laser.reward=heldout", "laser.heldout_prompts=4"]),
            ("random", ["rewards.selection=random"]),
            (
                "r2m",
                [
                    "rewards.selection=r2m", "r2m.lr=1e-3", "r2m.steps=2", "r2m.anchor=0.1",
                    "r2m.heldout_pairs=\(pairs)",
                ]
            ),
        ] {
            func config(_ out: String, _ mode: String) throws -> PPOConfig {
                try PPOConfig(
                    try ppoSchema.resolve(
                        file: nil,
                        overrides: [
                            "name=\(name)", "out=\(out)", "resume=\(mode)", "model.init_from=\(model)",
                            "data.task=arith", "data.eval_size=20",
                            "ppo.iterations=4", "ppo.prompts=4", "ppo.samples_per_prompt=2", "ppo.max_new_tokens=4",
                            "ppo.minibatch_size=4",
                            "ppo.estimator=grpo", "lora.rank=4", "train.max_length=16",
                            "rewards.proxy_heads=\(proxies)", "rewards.proxy=1",
                            "eval.every=100", "eval.max_examples=10", "checkpoint.every=2", "checkpoint.keep_last=5",
                            "log.every=100",
                        ] + extra))
            }
            let a = directory + "/\(name)-a", b = directory + "/\(name)-b"
            _ = try await PPOStage(config: try config(a, "never"), transport: SingleProcessTransport(), say: { _ in })
                .run()
            _ = try await PPOStage(config: try config(b, "never"), transport: SingleProcessTransport(), say: { _ in })
                .run()
            try FileManager.default.removeItem(atPath: b + "/checkpoints/step-00000004")
            _ = try await PPOStage(config: try config(b, "auto"), transport: SingleProcessTransport(), say: { _ in })
                .run()
            for file in [
                "final/policy_adapter/adapter_model.safetensors", "checkpoints/step-00000004/ppo_state.safetensors",
                "checkpoints/step-00000004/learned_rewards.json",
            ] {
                let left = FileManager.default.contents(atPath: a + "/" + file) ?? Data(),
                    right = FileManager.default.contents(atPath: b + "/" + file) ?? Data()
                XCTAssertFalse(left.isEmpty, "\(name): \(file)")
                XCTAssertEqual(left, right, "\(name): \(file) differs after resume")
            }
            let metrics = try JSONL.objects(path: a + "/metrics.jsonl").map(\.object).filter {
                $0[name == "r2m" ? "reward_r2m_mean" : "reward_proxy_mean"] != nil
            }
            XCTAssertEqual(metrics.count, 4)
            XCTAssertTrue(metrics.allSatisfy { $0["gold_mean"] != nil }, "the gold reward is logged")
            if name == "laser" {
                // The paper's bandit reward: −(DPO + NLL) < 0 on every iteration's pairs (two samples of
                // random heads always differ); the first is paid raw, as the release code's linucb.py does.
                let paid = metrics.compactMap { $0["laser_reward"] as? Double }
                XCTAssertEqual(paid.count, 4)
                XCTAssertTrue(paid.allSatisfy { $0 < 0 }, "\(paid)")
                XCTAssertEqual(metrics.first?["laser_reward_normalised"] as? Double, paid[0])
                let later = metrics.dropFirst().compactMap { $0["laser_reward_normalised"] as? Double }
                XCTAssertTrue(later.allSatisfy { (0...1).contains($0) }, "then normalised into [0, 1]: \(later)")
                XCTAssertEqual(metrics.first?["laser_pairs"] as? Double, 4, "one pair per prompt")
            }
            if name == "laser-heldout" {
                XCTAssertEqual(metrics.compactMap { $0["laser_heldout_score"] as? Double }.count, 4)
            }
            if name == "random" {
                let arms = metrics.compactMap { $0["laser_arm"] as? Int }
                XCTAssertEqual(arms.count, 4, "an arm every iteration")
                XCTAssertTrue(Set(arms).isSubset(of: [0, 1]), "\(arms)")
            }
            if name == "r2m" {
                // ω(t) = max(½cos(πt/4) + ½, 0.7) for t = 0…3: 1, 0.854, 0.7 (floor), 0.7.
                let omega = metrics.compactMap { $0["r2m_omega"] as? Double }
                XCTAssertEqual(omega.count, 4)
                for (a, b) in zip(omega, [1, 0.5 * cos(Double.pi / 4) + 0.5, 0.7, 0.7]) {
                    XCTAssertEqual(a, b, accuracy: 1e-12)
                }
                XCTAssertGreaterThan(
                    try XCTUnwrap(metrics.last?["r2m_bt_loss"] as? Double), 0,
                    "−log σ(r_w − r_l) of the self-labelled pairs")
                try checkHeldOutAccuracy(
                    metrics, pairs: pairs, model: model, head: proxies.components(separatedBy: ",")[0])
            }
        }
    }

    /// R2M's held-out accuracy is logged before and after every round, a multiple of 1/6 on 3 pairs;
    /// at iteration 1 (ω = 1) the fused reward is proxy head 1's own, so its accuracy is the head's.
    func checkHeldOutAccuracy(_ metrics: [[String: Any]], pairs: String, model: String, head: String) throws {
        let before = metrics.compactMap { $0["r2m_heldout_acc_before"] as? Double }
        let after = metrics.compactMap { $0["r2m_heldout_acc_after"] as? Double }
        XCTAssertEqual(before.count, 4)
        XCTAssertEqual(after.count, 4)
        for a in before + after { XCTAssertEqual((a * 6).rounded(), a * 6, accuracy: 1e-9, "\(a)") }
        let base = try HFCheckpoint.load(directory: model)
        let scalar = try ScalarHeadIO.load(directory: head, channels: base.config.channels)
        let tokenizer = ByteTokenizer()
        let sequences = try JSONL.preferences(path: pairs).flatMap { e in
            [e.chosen, e.rejected].map {
                tokenizer.encodeWithPrefix(e.prompt) + tokenizer.encode($0) + [tokenizer.eosTokenId!]
            }
        }
        let last = try base.lastHiddenStates(sequences)
        let r = scalar.forward(hidden: last.flatMap { $0 }, rows: last.count)
        var right = 0.0
        for p in 0..<3 where r[2 * p] >= r[2 * p + 1] { right += r[2 * p] > r[2 * p + 1] ? 1 : 0.5 }
        XCTAssertEqual(before[0], right / 3, accuracy: 1e-12, "iteration 1: the head's own accuracy")
    }

    /// LASeR over named reward sources: each batch is rewarded by the chosen source alone.
    func testLaserOverNamedSources() async throws {
        let model = try makeTinyModel(directory: directory)
        let config = try PPOConfig(
            try ppoSchema.resolve(
                file: nil,
                overrides: [
                    "name=arms", "out=\(directory)/run", "resume=never", "model.init_from=\(model)", "data.task=arith",
                    "data.eval_size=20",
                    "ppo.iterations=5", "ppo.prompts=4", "ppo.samples_per_prompt=2", "ppo.max_new_tokens=4",
                    "ppo.minibatch_size=8", "ppo.estimator=grpo",
                    "ppo.missing_eos_penalty=0", "lora.rank=4", "train.max_length=16", "rewards.selection=laser",
                    "laser.arms=verifier,format", "laser.try_each_arm_first=true",
                    "eval.every=100", "log.every=100", "checkpoint.every=0",
                ]))
        _ = try await PPOStage(config: config, transport: SingleProcessTransport(), say: { _ in }).run()
        let rows = try JSONL.objects(path: directory + "/run/metrics.jsonl").map(\.object).filter {
            $0["laser_arm"] != nil
        }
        XCTAssertEqual(rows.count, 5)
        XCTAssertEqual(rows.prefix(2).map { $0["laser_arm"] as! Int }, [0, 1], "each arm once first")
        for r in rows {
            let source = (r["laser_arm"] as! Int) == 0 ? "reward_verifier_mean" : "reward_format_mean"
            XCTAssertEqual(
                r["reward_mean"] as! Double, r[source] as! Double, accuracy: 1e-12,
                "the batch's reward is the chosen source")
        }
        let bad = try ppoSchema.resolve(
            file: nil,
            overrides: [
                "model.init_from=\(model)", "data.task=arith", "rewards.selection=laser", "laser.arms=verifier,judge",
            ])
        do {
            _ = try await LearnedRewards.make(
                try PPOConfig(bad).rewardConfig, base: try HFCheckpoint.load(directory: model),
                originalHead: ScalarHead(channels: 128), seed: 1, namedArms: ["reward_head", "verifier", "format"])
            XCTFail("laser.arms naming no source was accepted")
        } catch {
            XCTAssertTrue("\(error)".contains("'judge' is not a reward source"), "\(error)")
        }
    }

    /// Settings that would train and log but never reach the policy are refused at load.
    func testLearnedSelectionsThatCannotActAreRefused() throws {
        func refused(_ overrides: [String], _ message: String) {
            XCTAssertThrowsError(
                try PPOConfig(
                    try ppoSchema.resolve(
                        file: nil,
                        overrides: ["model.init_from=/sft", "data.task=arith", "rewards.proxy_heads=/h"] + overrides))
            ) {
                XCTAssertTrue("\($0)".contains(message), "\($0)")
            }
        }
        refused(
            ["rewards.selection=r2m", "rewards.proxy=1", "ppo.estimator=gae", "ppo.samples_per_prompt=1"],
            "r2m updates on each prompt's best vs worst")
        refused(
            ["rewards.selection=laser", "rewards.proxy=1", "ppo.estimator=gae", "ppo.samples_per_prompt=1"],
            "laser.reward dpo_nll pays the bandit")
        refused(["rewards.selection=random"], "rewards.proxy is 0: it would never reach the policy")
        refused(["r2m.steps=3"], "'r2m.steps' is set, but rewards.selection is mean")
        refused(["r2m.heldout_pairs=/p.jsonl", "rewards.proxy=1"], "'r2m.heldout_pairs' is set")
        refused(["prepo.rule=random"], "'prepo.rule' random keeps a random prepo.keep share")
        refused(["rewards.proxy_tasks=chat", "rewards.proxy=1"], "'rewards.proxy_tasks' routes the hybrid reward's")
        refused(["laser.raw_first_reward=false", "rewards.proxy=1"], "'laser.raw_first_reward' is LASeR's bandit rule")
        XCTAssertNoThrow(
            try PPOConfig(
                try ppoSchema.resolve(
                    file: nil,
                    overrides: [
                        "model.init_from=/sft", "data.task=arith", "rewards.proxy_heads=/h",
                        "rewards.selection=laser", "laser.reward=heldout", "rewards.proxy=1",
                        "ppo.estimator=gae", "ppo.samples_per_prompt=1",
                    ])))
    }

    /// R2M's update (Huang et al. 2026, Alg. 1 lines 15–20) trains the fusion and head alone, and
    /// the fused reward of a sequence does not depend on the batch it is scored in.
    func testR2MUpdateTrainsTheFusionAloneAndIgnoresPadding() async throws {
        let model = try makeTinyModel(directory: directory)
        let base = try HFCheckpoint.load(directory: model)
        let config = try ppoSchema.resolve(
            file: nil,
            overrides: [
                "model.init_from=\(model)", "data.task=arith", "rewards.proxy_heads=\(try heads(model, count: 1)[0])",
                "rewards.selection=r2m", "rewards.proxy=1", "r2m.lr=1e-2", "ppo.iterations=10",
            ])
        let made = try await LearnedRewards.make(
            try PPOConfig(config).rewardConfig, base: base,
            originalHead: ScalarHead(channels: base.config.channels), seed: 1, namedArms: [])
        let learned = try XCTUnwrap(made)
        XCTAssertEqual(learned.r2mOmega(iteration: 1), 1, "round 0: the reward model's own token alone")
        var rng = RNG(seed: 9)
        // larger than the 0.02 start
        for i in 0..<learned.r2m!.parameters.count { learned.r2m!.parameters[i] += 0.05 * rng.normal() }
        let adapter = try LoRAAdapter(
            config: LoRAConfig(rank: 4, alpha: 8, targets: base.config.allLoRATargets), modelConfig: base.config)
        adapter.initialize(rng: &rng)
        let policy = LocalPolicy(trunk: base, adapter: adapter)
        let scorer = HydraScorer(trunk: base, rewardHead: ScalarHead(channels: base.config.channels))
        let a: [Int32] = [256, 49, 43, 50, 61, 51, 257], b: [Int32] = [256, 49, 43, 50, 61, 52, 257],
            long: [Int32] = [256, 52, 53, 43, 54, 55, 61, 57, 57, 257]
        // The scoring passes PPO runs for R2M: the shared trunk's last-token states, the policy's states.
        func score(_ sequences: [[Int32]], promptLengths: [Int]) async throws -> LearnedRewards.Scored {
            let (_, last) = try await scorer.referenceAndLastHidden(sequences)
            let (_, hidden) = try await policy.logProbsAndHidden(sequences)
            var batch = RewardBatch(
                texts: sequences.map { _ in "" }, answers: sequences.map { _ in nil },
                tasks: sequences.map { _ in "arith" },
                questions: sequences.map { _ in "" }, promptIndices: Array(sequences.indices), sequences: sequences,
                promptLengths: promptLengths, headScores: sequences.map { _ in 0 })
            (batch.lastHidden, batch.policyHidden, batch.iteration) = (last, hidden, 5)
            return try await learned.score(batch, replicas: nil)
        }
        let together = try await score([a, b, long, a], promptLengths: [5, 5, 7, 5])
        let alone = try await score([a], promptLengths: [5])
        XCTAssertEqual(together.proxy[0], alone.proxy[0], accuracy: 1e-5, "a padded batch gives the same reward")
        XCTAssertNotEqual(together.proxy[0], together.proxy[1], "different sequences, different rewards")
        let trunkBefore = base.weights.array, adapterBefore = adapter.weights.array,
            fusionBefore = learned.r2m!.parameters.array
        // Groups of two: (a, b) has a best and a worst; (long, a) too.
        let figures = try await learned.updateR2M(
            iteration: 5, scored: together, sequences: [a, b, long, a], groupSize: 2, policy: policy,
            replicas: nil as (any Transport)?)
        XCTAssertEqual(figures["r2m_groups"], 2)
        XCTAssertGreaterThan(try XCTUnwrap(figures["r2m_bt_loss"]), 0)
        XCTAssertEqual(base.weights.array, trunkBefore, "the trunk is untouched")
        XCTAssertEqual(adapter.weights.array, adapterBefore, "no gradient reaches the policy")
        XCTAssertNotEqual(learned.r2m!.parameters.array, fusionBefore, "the fusion and head train")
    }
}

/// Pre-PPO keeps the hardest prompts per task; the task-priority schedule draws only the
/// listed tasks first.
final class PrePPOTests: TemporaryDirectoryTestCase {
    func testPrePPOKeepsTheHardestShareAndTheCurriculumDrawsPriorityTasksFirst() async throws {
        let model = try makeTinyModel(directory: directory)
        let lines: [[String: Any]] = (0..<40).map { k in
            ["prompt": "\(k)+\(k % 7)=", "answer": String(k + k % 7), "task": k % 2 == 0 ? "math" : "code"]
        }
        try JSONL.write(lines, to: directory + "/prompts.jsonl")
        let config = try PPOConfig(
            try ppoSchema.resolve(
                file: nil,
                overrides: [
                    "name=prepo", "out=\(directory)/run", "resume=never", "model.init_from=\(model)",
                    "data.train=\(directory)/prompts.jsonl",
                    "ppo.iterations=4", "ppo.prompts=4", "ppo.samples_per_prompt=2", "ppo.max_new_tokens=4",
                    "ppo.minibatch_size=8", "ppo.estimator=grpo",
                    "lora.rank=4", "train.max_length=16", "rewards.format=1", "prepo.keep=0.5", "prepo.samples=3",
                    "prepo.candidates=0",
                    "curriculum.tasks=math", "curriculum.share=0.5", "eval.every=100", "log.every=100",
                    "checkpoint.every=0",
                ]))
        var messages: [String] = []
        _ = try await PPOStage(config: config, transport: SingleProcessTransport(), say: { messages.append($0) }).run()
        let rows = try JSONL.objects(path: directory + "/run/prepo.jsonl").map(\.object)
        XCTAssertEqual(rows.count, 40)
        let kept = rows.indices.filter { rows[$0]["kept"] as! Bool }
        XCTAssertEqual(kept.count, 20)
        let z = rows.map { $0["z"] as! Double }
        XCTAssertEqual(
            Set(kept), Set(z.indices.sorted { (z[$0], $0) < (z[$1], $1) }.prefix(20)), "the lowest z-scores are kept")
        let keptMath = kept.filter { rows[$0]["task"] as! String == "math" }.count
        let pools = try JSONL.objects(path: directory + "/run/metrics.jsonl").compactMap {
            $0.object["prompt_pool"] as? Int
        }
        XCTAssertEqual(
            pools, [keptMath, keptMath, 20, 20], "math prompts first for half the iterations, then every kept prompt")
        XCTAssertTrue(messages.contains { $0.hasPrefix("Pre-PPO: kept 20 of 40") }, "\(messages)")
    }

    /// Pre-PPO scores with the run's whole reward, the hybrid source included: with the hybrid
    /// routing every prompt to its verifier (exact + format) as the only reward, each candidate's
    /// mean equals the one scored by the verifier and format sources themselves, and the kept
    /// prompts are the lowest-scoring under it.
    func testPrePPOScoresWithTheHybridReward() async throws {
        let model = try makeTinyModel(directory: directory)
        let lines: [[String: Any]] = (0..<24).map { k in
            ["prompt": "\(k)+\(k % 5)=", "answer": String(k + k % 5), "task": "math"]
        }
        try JSONL.write(lines, to: directory + "/prompts.jsonl")
        func means(_ name: String, _ rewards: [String]) async throws -> [[String: Any]] {
            let config = try PPOConfig(
                try ppoSchema.resolve(
                    file: nil,
                    overrides: [
                        "name=\(name)", "out=\(directory)/\(name)", "resume=never", "model.init_from=\(model)",
                        "data.train=\(directory)/prompts.jsonl",
                        "ppo.iterations=1", "ppo.prompts=2", "ppo.samples_per_prompt=2", "ppo.max_new_tokens=4",
                        "ppo.minibatch_size=4", "ppo.estimator=grpo",
                        "ppo.temperature=1", "lora.rank=4", "train.max_length=16", "prepo.keep=0.25", "prepo.samples=4",
                        "prepo.candidates=0",
                        "eval.every=100", "log.every=100", "checkpoint.every=0",
                    ] + rewards))
            _ = try await PPOStage(config: config, transport: SingleProcessTransport(), say: { _ in }).run()
            return try JSONL.objects(path: directory + "/\(name)/prepo.jsonl").map(\.object)
        }
        let hybrid = try await means(
            "hybrid", ["rewards.verifier=0", "rewards.format=0", "rewards.hybrid=1", "rewards.verifier_tasks=math"])
        let rules = try await means("rules", ["rewards.verifier=1", "rewards.format=1"])
        let h = hybrid.map { $0["mean_reward"] as! Double }, r = rules.map { $0["mean_reward"] as! Double }
        XCTAssertEqual(h, r, "the hybrid's verifier route is exact + format")
        XCTAssertGreaterThan(Set(h).count, 1, "the candidates' scores differ (\(h))")
        let kept = hybrid.indices.filter { hybrid[$0]["kept"] as! Bool }
        XCTAssertEqual(kept.count, 6)
        XCTAssertLessThanOrEqual(
            kept.map { h[$0] }.max()!, hybrid.indices.filter { !kept.contains($0) }.map { h[$0] }.min()!,
            "the kept prompts score lowest under the hybrid reward")
    }
}
