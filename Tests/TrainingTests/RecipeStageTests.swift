import Cluster
import Datasets
import Foundation
import Tokenizers
import XCTest

@testable import Rewards
@testable import Training

/// The GRPO recipes in a run (issue 29, point 3): keys checked at load, the sampling temperature
/// used by every pass, the overlong filter leaving cut responses out of the loss.
final class RecipeStageTests: TemporaryDirectoryTestCase {
    func config(_ model: String, _ overrides: [String], out: String = "run") throws -> PPOConfig {
        try tinyPPOConfig(model: model, out: directory + "/" + out, overrides)
    }

    func metrics(_ out: String) throws -> [[String: Any]] {
        try JSONL.objects(path: directory + "/\(out)/metrics.jsonl").map(\.object)
    }

    func testClipBoundsDefaultToPPOClipAndConflictingKeysAreRefused() throws {
        let model = try makeTinyModel(directory: directory)
        let plain = try config(model, []).recipe
        XCTAssertEqual([plain.clipLow, plain.clipHigh], [0.2, 0.2])
        let higher = try config(model, ["ppo.clip_high=0.28"]).recipe
        XCTAssertEqual([higher.clipLow, higher.clipHigh], [0.2, 0.28])
        let both = try config(model, ["ppo.clip_low=0.1", "ppo.clip_high=0.3"]).recipe
        XCTAssertEqual([both.clipLow, both.clipHigh], [0.1, 0.3])
        let refused: [([String], String)] = [
            (["ppo.clip=0.3", "ppo.clip_low=0.1", "ppo.clip_high=0.3"], "set one or the other"),
            (["ppo.overlong_penalty=0.5"], "ppo.overlong_buffer is 0"),
            (["ppo.dynamic_sampling_rounds=2"], "ppo.dynamic_sampling is false"),
            (["ppo.dynamic_sampling=true", "ppo.estimator=gae"], "it needs a group estimator"),
            (["ppo.loss_aggregation=mean"], "ppo.loss_aggregation"),
            (["ppo.dynamic_sampling=true", "ppo.samples_per_prompt=1", "ppo.estimator=reinforce_baseline"], "≥ 2"),
            (["ppo.overlong_buffer=4"], "must be below ppo.max_new_tokens 4"),
            (["ppo.clip_low=1.5"], "must be below 1"),
        ]
        for (overrides, expected) in refused {
            XCTAssertThrowsError(try config(model, overrides), "\(overrides)") {
                XCTAssertTrue("\($0)".contains(expected), "\($0)")
            }
        }
    }

    /// At τ = 0.7, the old log-probs kept from sampling and those of a recomputed pass are the same
    /// numbers, so the two runs report the same KL and loss (at τ = 1 in the passes they would not).
    func testTheSamplingTemperatureIsTheScoringPassesTemperature() async throws {
        let model = try makeTinyModel(directory: directory)
        for mode in ["sampling", "recompute"] {
            let cfg = try config(model, ["ppo.temperature=0.7", "ppo.old_logprobs=\(mode)"], out: mode)
            _ = try await PPOStage(config: cfg, transport: SingleProcessTransport(), say: { _ in }).run()
        }
        let (a, b) = (try metrics("sampling"), try metrics("recompute"))
        XCTAssertEqual(a.count, 2)
        for key in ["kl", "policy_loss", "reward_mean"] {
            let x = try XCTUnwrap(a[0][key] as? Double), y = try XCTUnwrap(b[0][key] as? Double)
            XCTAssertEqual(x, y, accuracy: 1e-4 * max(1, abs(x)), key)
        }
    }

    /// Responses cut at ppo.max_new_tokens teach nothing with the overlong filter: an iteration
    /// whose responses are all cut has no policy gradient.
    func testTheOverlongFilterLeavesCutResponsesOutOfTheLoss() async throws {
        let model = try makeTinyModel(directory: directory)
        let cfg = try config(model, ["ppo.overlong_filter=true", "ppo.missing_eos_penalty=0"])
        _ = try await PPOStage(config: cfg, transport: SingleProcessTransport(), say: { _ in }).run()
        let allCut = try metrics("run").filter { ($0["truncated_rate"] as? Double) == 1 }
        XCTAssertFalse(allCut.isEmpty, "the tiny model ends no response within 4 tokens")
        for line in allCut {
            XCTAssertEqual(line["grad_norm"] as? Double, 0)
            XCTAssertEqual(line["policy_loss"] as? Double, 0)
        }
        let unfiltered = try config(model, ["ppo.missing_eos_penalty=0"], out: "plain")
        _ = try await PPOStage(config: unfiltered, transport: SingleProcessTransport(), say: { _ in }).run()
        XCTAssertGreaterThan(try XCTUnwrap(try metrics("plain")[0]["grad_norm"] as? Double), 0)
    }
}

/// Rewards prompts of even index by the sample's place in its group (0, 1, …: spread) and those of
/// odd index by 0 (no spread), and records each batch it scores.
final class ParitySource: RewardSource {
    final class Record: @unchecked Sendable {
        var batches: [(iteration: Int, prompts: [Int])] = []
    }
    static let record = Record()
    static func registration(groupSize: Int) -> RewardSourceRegistration {
        RewardSourceRegistration(name: "parity", isActive: { _ in true }) { _ in ParitySource(groupSize: groupSize) }
    }
    let name = "parity", weight = 1.0, groupSize: Int
    init(groupSize: Int) { self.groupSize = groupSize }

    func scores(_ batch: RewardBatch) throws -> [Double] {
        Self.record.batches.append((batch.iteration, batch.promptIndices))
        return batch.promptIndices.enumerated().map { i, p in p % 2 == 0 ? Double(i % groupSize) : 0 }
    }
}

final class DynamicSamplingTests: TemporaryDirectoryTestCase {
    func testGroupsWithoutSpreadAreDroppedAndRefilled() async throws {
        let model = try makeTinyModel(directory: directory)
        var cfg = try tinyPPOConfig(
            model: model, out: directory + "/run",
            [
                "ppo.iterations=3", "ppo.prompts=4", "ppo.max_new_tokens=3", "ppo.minibatch_size=8",
                "rewards.verifier=0", "rewards.format=0", "ppo.missing_eos_penalty=0", "ppo.kl_coef=0",
                "ppo.dynamic_sampling=true", "ppo.dynamic_sampling_rounds=6",
            ])
        cfg.rewardRegistry.append(ParitySource.registration(groupSize: 2))
        ParitySource.record.batches = []
        _ = try await PPOStage(config: cfg, transport: SingleProcessTransport(), say: { _ in }).run()
        let lines = try JSONL.objects(path: directory + "/run/metrics.jsonl").map(\.object)
        XCTAssertEqual(lines.count, 3)
        var refilled = 0
        for (k, line) in lines.enumerated() {
            let dropped = try XCTUnwrap(line["dynamic_sampling_dropped"] as? Double)
            let short = try XCTUnwrap(line["dynamic_sampling_short"] as? Double)
            let rounds = try XCTUnwrap(line["dynamic_sampling_rounds"] as? Double)
            let batches = ParitySource.record.batches.filter { $0.iteration == k + 1 }
            // The first batch's odd prompts were dropped; one scoring per round, and one of the chosen groups.
            XCTAssertEqual(dropped, Double(batches[0].prompts.filter { $0 % 2 == 1 }.count / 2))
            XCTAssertEqual(batches.count, rounds > 1 ? Int(rounds) + 1 : 1)
            guard rounds > 1 else { continue }
            refilled += 1
            let trained = try XCTUnwrap(batches.last).prompts
            XCTAssertEqual(trained.count, 8)
            XCTAssertEqual(trained.filter { $0 % 2 == 1 }.count, Int(short) * 2, "only short places keep odd prompts")
            // With every group spread, the reward's spread is each group's: σ = 0.5 over 8 samples.
            if short == 0 { XCTAssertEqual(line["reward_parity_std"] as? Double ?? 0, 0.5, accuracy: 1e-9) }
        }
        XCTAssertGreaterThan(refilled, 0, "some iteration drew odd prompts")
    }
}

/// Records the responses it is asked to score (reward 0).
final class ResponseRecorder: RewardSource {
    final class Record: @unchecked Sendable { var responses: [(text: String, tokens: [Int32])] = [] }
    static let record = Record()
    static let registration = RewardSourceRegistration(name: "recorder", isActive: { _ in true }) { _ in
        ResponseRecorder()
    }
    let name = "recorder", weight = 0.0
    func scores(_ batch: RewardBatch) throws -> [Double] {
        for (i, s) in batch.sequences.enumerated() {
            Self.record.responses.append((batch.texts[i], Array(s[batch.promptLengths[i]...])))
        }
        return batch.texts.map { _ in 0 }
    }
}

final class StopStringTests: TemporaryDirectoryTestCase {
    func testAResponseEndsAfterTheTokenCompletingAStopStringAndItsTextBeforeIt() throws {
        let tokenizer = ByteTokenizer(), stop = try StopStrings(parsing: #"["</a>", "\n\n"]"#)
        let tokens = tokenizer.encode("12+34</a>more\n\n")
        let cut = try XCTUnwrap(stop.cut(tokens, tokenizer: tokenizer))
        XCTAssertEqual(cut.count, "12+34</a>".utf8.count)
        XCTAssertEqual(cut.text, "12+34")
        XCTAssertEqual(stop.cut(tokenizer.encode("x\n\ny</a>"), tokenizer: tokenizer)?.text, "x")
        XCTAssertNil(stop.cut(tokenizer.encode("12+34</"), tokenizer: tokenizer))
        XCTAssertEqual(try StopStrings(parsing: "END").strings, ["END"])
        XCTAssertEqual(try StopStrings(parsing: "").strings, [])
        for bad in [#"["a", 3]"#, "[oops", #"["a", ""]"#] {
            XCTAssertThrowsError(try StopStrings(parsing: bad), bad) { XCTAssertTrue("\($0)".contains("ppo.stop")) }
        }
    }

    func testRolloutsStopAtTheStopStringsAndRewardsReadTheTextBeforeThem() async throws {
        let model = try makeTinyModel(directory: directory)
        // Every ASCII letter and digit stops a response (the tiny model's random bytes hit one often).
        let characters = (Array("abcdefghijklmnopqrstuvwxyz0123456789")).map { "\"\($0)\"" }
        var cfg = try tinyPPOConfig(
            model: model, out: directory + "/run",
            [
                "ppo.prompts=4", "ppo.max_new_tokens=6", "ppo.minibatch_size=8",
                "ppo.stop=[" + characters.joined(separator: ",") + "]",
            ])
        cfg.rewardRegistry.append(ResponseRecorder.registration)
        ResponseRecorder.record.responses = []
        _ = try await PPOStage(config: cfg, transport: SingleProcessTransport(), say: { _ in }).run()
        let stops = Set("abcdefghijklmnopqrstuvwxyz0123456789".utf8.map(Int32.init))
        var cut = 0
        for (text, tokens) in ResponseRecorder.record.responses {
            XCTAssertFalse(text.contains { $0.isASCII && ($0.isLetter && $0.isLowercase || $0.isNumber) }, text)
            if let first = tokens.firstIndex(where: stops.contains) {
                XCTAssertEqual(first, tokens.count - 1, "the response ends at its first stop character")
                cut += 1
            }
        }
        XCTAssertEqual(ResponseRecorder.record.responses.count, 16)
        XCTAssertGreaterThan(cut, 0)
    }
}
