import Cluster
import Datasets
import Foundation
import XCTest

@testable import Rewards
@testable import Training

/// A PPO run rewarded by an external command (issue 29, point 1): jq reads each batch's request and
/// replies with the iteration plus the prompt's own `bonus` field, so the logged reward shows
/// that every batch was asked, with its iteration and the dataset's extra column.
final class ExternalRewardStageTests: TemporaryDirectoryTestCase {
    func config(_ model: String, _ overrides: [String]) throws -> PPOConfig {
        let prompts = directory + "/prompts.jsonl"
        try (1...4).map { "{\"prompt\": \"\($0)+\($0)=\", \"answer\": \"\(2 * $0)\", \"bonus\": 0.25}" }
            .joined(separator: "\n").write(toFile: prompts, atomically: true, encoding: .utf8)
        return try tinyPPOConfig(
            model: model, out: directory + "/run",
            ["data.task=", "data.train=\(prompts)", "checkpoint.every=1", "rewards.verifier=0", "rewards.format=0"]
                + overrides)
    }

    func testTheExternalRewardIsAskedEveryBatchWithTheIterationAndTheRowsFields() async throws {
        let model = try makeTinyModel(directory: directory)
        let program = "{rewards: [range(0; .completions | length) as $i | .iteration + .bonus[$i]]}"
        let cfg = try config(model, ["rewards.external=2", "rewards.external_command=jq -c --unbuffered '\(program)'"])
        _ = try await PPOStage(config: cfg, transport: SingleProcessTransport(), say: { _ in }).run()
        let lines = try JSONL.objects(path: directory + "/run/metrics.jsonl").map(\.object)
        XCTAssertEqual(lines.count, 2)
        for (i, line) in lines.enumerated() {
            XCTAssertEqual(line["reward_external_mean"] as? Double, Double(i + 1) + 0.25, "iteration \(i + 1)")
            XCTAssertEqual(line["reward_external_std"] as? Double, 0)
        }
        // samples.jsonl: every response of both iterations with its prompt, rewards and advantage.
        let samples = try JSONL.objects(path: directory + "/run/samples.jsonl").map(\.object)
        XCTAssertEqual(samples.map { $0["iteration"] as? Int }, [1, 1, 1, 1, 2, 2, 2, 2])
        let prompts = Set((1...4).map { "\($0)+\($0)=" })
        for sample in samples {
            let iteration = try XCTUnwrap(sample["iteration"] as? Int)
            let rewards = try XCTUnwrap(sample["rewards"] as? [String: Double])
            XCTAssertEqual(rewards["external"], Double(iteration) + 0.25)
            XCTAssertEqual(rewards["verifier"], 0, "logged at weight 0")
            XCTAssertTrue(prompts.contains(try XCTUnwrap(sample["prompt"] as? String)))
            XCTAssertNotNil(sample["completion"] as? String)
            let tokens = try XCTUnwrap(sample["tokens"] as? Int), finished = try XCTUnwrap(sample["finished"] as? Bool)
            XCTAssertTrue(finished ? tokens >= 1 && tokens <= 4 : tokens == 4, "cut responses are 4 tokens long")
        }
        // The final adapter's model card: base model, method, data and the newest metrics.
        let card = try String(contentsOfFile: directory + "/run/final/policy_adapter/README.md", encoding: .utf8)
        XCTAssertTrue(card.hasPrefix("---\nbase_model: \"\(model)\"\nlibrary_name: peft\n"), card)
        XCTAssertTrue(
            card.contains("- method: PPO, estimator grpo, layout hydra, 2 iterations of 2 prompts × 2 samples"))
        XCTAssertTrue(card.contains("- data: `\(directory)/prompts.jsonl`"), card)
        XCTAssertTrue(card.contains("| reward_external_mean | 2.25 |"), card)
        XCTAssertTrue(card.contains("rewards:\n"), "the resolved config")
        // GRPO's advantages are centred in each group of 2 samples.
        let advantages = samples.compactMap { $0["advantage"] as? Double }
        XCTAssertEqual(advantages.count, 8)
        for g in 0..<4 { XCTAssertEqual(advantages[2 * g] + advantages[2 * g + 1], 0, accuracy: 1e-9) }
    }

    func testAFailingCommandStopsTheRunNamingTheBatchAndKeepsTheCheckpoint() async throws {
        let model = try makeTinyModel(directory: directory)
        // Replies to the first batch, then exits.
        let program = "{rewards: [.completions[] | 1]}"
        let cfg = try config(model, ["rewards.external=1", "rewards.external_command=head -n 1 | jq -c '\(program)'"])
        do {
            _ = try await PPOStage(config: cfg, transport: SingleProcessTransport(), say: { _ in }).run()
            XCTFail("the run went on without rewards")
        } catch {
            XCTAssertTrue("\(error)".contains("exited with status 0 before replying to batch 2"), "\(error)")
        }
        let checkpoints = try FileManager.default.contentsOfDirectory(atPath: directory + "/run/checkpoints")
        XCTAssertEqual(checkpoints.filter { $0.hasPrefix("step-") }, ["step-00000001"])
    }

    func testTheServerKeysAreCheckedAtLoad() throws {
        let model = try makeTinyModel(directory: directory)
        let refused: [([String], String)] = [
            (["rewards.external=1"], "rewards.external needs rewards.external_command or rewards.external_url"),
            (["rewards.external_command=cat"], "rewards.external_command is set but rewards.external is 0"),
            (["rewards.external_url=http://rm/"], "rewards.external_url is set but rewards.external is 0"),
            (
                ["rewards.external=1", "rewards.external_command=cat", "rewards.external_url=http://rm/"],
                "not both"
            ),
            (["rewards.external=1", "rewards.external_url=https://rm/"], "https is not supported"),
            (["rewards.external_timeout=5"], "rewards.external needs rewards.external_command or rewards.external_url"),
        ]
        for (overrides, expected) in refused {
            XCTAssertThrowsError(try RewardSources.validate(try config(model, overrides).rewardConfig), "\(overrides)")
            {
                XCTAssertTrue("\($0)".contains(expected), "\($0)")
            }
        }
    }
}
