import Cluster
import Datasets
import Foundation
import Roles
import Runs
import XCTest

@testable import Rewards
@testable import Training

/// A reward source with state, written in one file (this one) and added by one registry line:
/// the response length in characters, and the running mean of its batch means, which it updates
/// after every iteration and keeps in checkpoints. Nothing in PPO names it.
final class RunningLengthSource: RewardSource {
    static let registration = RewardSourceRegistration(name: "length", isActive: { _ in true }) { _ in
        RunningLengthSource()
    }
    static let stateFile = "running_length.json"
    let name = "length", weight = 0.01

    struct State: Codable, Equatable { var iterations = 0.0, runningMean = 0.0 }
    var state = State()
    var batchMean = 0.0

    func scores(_ batch: RewardBatch) throws -> [Double] {
        let lengths = batch.texts.map { Double($0.count) }
        batchMean = lengths.reduce(0, +) / Double(max(lengths.count, 1))
        return lengths
    }

    func update(_ update: RewardUpdate) async throws -> [String: Double] {
        state.iterations += 1
        state.runningMean += (batchMean - state.runningMean) / state.iterations
        return ["length_running_mean": state.runningMean]
    }

    func writeState(directory: String) throws {
        try JSONEncoder().encode(state).write(to: URL(fileURLWithPath: directory + "/" + Self.stateFile))
    }

    func restore(directory: String, snapshots: [String: TrainableSnapshot]) throws {
        state = try JSONDecoder().decode(
            State.self, from: Data(contentsOf: URL(fileURLWithPath: directory + "/" + Self.stateFile)))
    }
}

final class StatefulRewardSourceTests: TemporaryDirectoryTestCase {
    func config(_ model: String, out: String, resume: String) throws -> PPOConfig {
        var config = try PPOConfig(
            try ppoSchema.resolve(
                file: nil,
                overrides: [
                    "name=ppo", "out=\(out)", "resume=\(resume)", "model.init_from=\(model)", "data.task=arith",
                    "ppo.iterations=4", "ppo.prompts=4",
                    "ppo.samples_per_prompt=2", "ppo.max_new_tokens=4", "ppo.minibatch_size=4", "ppo.estimator=grpo",
                    "lora.rank=4",
                    "train.max_length=16", "eval.every=0", "checkpoint.every=2", "checkpoint.keep_last=5",
                    "log.every=100",
                ]))
        config.rewardRegistry.append(RunningLengthSource.registration)
        return config
    }

    func metrics(_ run: String) throws -> [[String: Double]] {
        let timings: Set<String> = ["generate_s", "score_s", "train_s", "communicate_s"]
        return try JSONL.objects(path: run + "/metrics.jsonl").map {
            $0.object.compactMapValues { $0 as? Double }.filter { !timings.contains($0.key) }
        }
    }

    func testAStatefulSourceLogsLearnsAndResumesWithoutPPONamingIt() async throws {
        let model = try makeTinyModel(directory: directory)
        let a = directory + "/a", b = directory + "/b"
        _ = try await PPOStage(
            config: try config(model, out: a, resume: "never"), transport: SingleProcessTransport(), say: { _ in }
        ).run()
        let lines = try metrics(a)
        XCTAssertEqual(lines.count, 4)
        var seen: [Double] = []
        for line in lines {
            let batchMean = try XCTUnwrap(line["reward_length_mean"], "logged under its name like every source")
            seen.append(batchMean)
            let running = try XCTUnwrap(line["length_running_mean"], "its own figure")
            XCTAssertEqual(
                running, seen.reduce(0, +) / Double(seen.count), accuracy: 1e-9, "the mean of the batch means so far")
        }
        XCTAssertGreaterThan(Set(seen).count, 1, "the batches differ, so the running mean is not one batch's")
        let saved = a + "/checkpoints/step-00000002/" + RunningLengthSource.stateFile
        let state = try JSONDecoder().decode(
            RunningLengthSource.State.self, from: Data(contentsOf: URL(fileURLWithPath: saved)))
        XCTAssertEqual(state.iterations, 2, "the checkpoint holds the state after its iteration")
        XCTAssertEqual(state.runningMean, try XCTUnwrap(lines[1]["length_running_mean"]), accuracy: 1e-12)

        // Interrupted after iteration 2 and resumed: the source's state comes back with the run.
        _ = try await PPOStage(
            config: try config(model, out: b, resume: "never"), transport: SingleProcessTransport(), say: { _ in }
        ).run()
        try FileManager.default.removeItem(atPath: b + "/checkpoints/step-00000004")
        _ = try await PPOStage(
            config: try config(model, out: b, resume: "auto"), transport: SingleProcessTransport(), say: { _ in }
        ).run()
        XCTAssertEqual(try metrics(b), lines, "metrics after resume, the running mean included")
    }
}
