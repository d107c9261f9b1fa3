import Cluster
import Config
import Datasets
import Foundation
import XCTest

@testable import Training

/// The reward-collapse task: well-formed rankings for both prompt classes, and the stages that
/// cannot use rankings refuse it by name.
final class CollapseTaskTests: XCTestCase {
    func testRankingsAreWellFormedAndSeeded() {
        let task = CollapseTask(seed: 3, responses: 6, prompts: 200, evalPrompts: 40)
        XCTAssertEqual(task.train.count, 200)
        XCTAssertEqual(task.eval.count, 40)
        XCTAssertEqual(task.train.filter { $0.openEnded == true }.count, 100, "half open-ended")
        for e in task.train + task.eval {
            let ranked = e.ranked!.map { Int($0)! }
            XCTAssertEqual(ranked.count, 6)
            XCTAssertEqual(Set(ranked).count, 6, "\(e.source): distinct responses")
            XCTAssertEqual(e.chosen, e.ranked!.first)
            XCTAssertEqual(e.rejected, e.ranked!.last)
            if e.openEnded == true {
                let bounds = e.prompt.dropFirst(4).dropLast().split(separator: ".").compactMap { Int($0) }
                XCTAssertEqual(bounds.count, 2, e.prompt)
                XCTAssertTrue(ranked.allSatisfy { (bounds[0]...bounds[1]).contains($0) }, "\(e.prompt) \(ranked)")
                XCTAssertEqual(ranked, ranked.sorted(by: >), "open-ended: larger first")
                XCTAssertLessThanOrEqual(bounds[1], 99)
            } else {
                let terms = e.prompt.dropLast().split(separator: "+").map { Int($0)! }
                let correct = terms[0] + terms[1]
                XCTAssertEqual(ranked[0], correct, e.prompt)
                let distances = ranked.dropFirst().map { abs($0 - correct) }
                XCTAssertEqual(distances, distances.sorted(), "closed: nearest wrong sums first")
                XCTAssertTrue(ranked.dropFirst().allSatisfy { $0 >= 0 && $0 != correct })
            }
        }
        XCTAssertEqual(
            CollapseTask(seed: 3, responses: 6, prompts: 200, evalPrompts: 40).train, task.train,
            "same seed, same rankings")
        XCTAssertNotEqual(CollapseTask(seed: 4, responses: 6, prompts: 200, evalPrompts: 40).train, task.train)
    }

    func testStagesWithoutRankingsRefuseTheTask() throws {
        XCTAssertThrowsError(try SFTConfig(try sftSchema.resolve(file: nil, overrides: ["data.task=collapse"]))) {
            XCTAssertTrue("\($0)".contains("data.task collapse has rankings only"), "\($0)")
        }
        XCTAssertThrowsError(
            try PPOConfig(try ppoSchema.resolve(file: nil, overrides: ["data.task=collapse", "model.init_from=/sft"]))
        ) {
            XCTAssertTrue("\($0)".contains("it is for rlhf rm"), "\($0)")
        }
        XCTAssertThrowsError(try DPOConfig(try dpoSchema.resolve(file: nil, overrides: ["data.task=collapse"]))) {
            XCTAssertTrue("\($0)".contains("it is for rlhf rm"), "\($0)")
        }
        XCTAssertNoThrow(
            try SFTConfig(try rmSchema.resolve(file: nil, overrides: ["data.task=collapse", "rm.utility=adaptive"])))
    }
}

/// The paper's regime is a reward model that interpolates its training rankings: `rlhf rm` on the
/// collapse task reports the pairwise accuracy on them (data.collapse_prompts sizes the set). A
/// tie counts as wrong, so a saturating utility (x) that polarises the middle responses stays below 1.
final class CollapseInterpolationTests: TemporaryDirectoryTestCase {
    func testTrainingRankingAccuracyIsReportedAndReachedOnAFewPrompts() async throws {
        let config = try SFTConfig(
            try rmSchema.resolve(
                file: nil,
                overrides: [
                    "out=\(directory)/rm", "resume=never", "tokenizer=byte", "model.preset=tiny", "data.task=collapse",
                    "data.collapse_prompts=4", "data.eval_size=4", "rm.utility=x_inv", "train.steps=600",
                    "train.max_length=16", "train.lr=1e-3", "hydra.pair_batch_size=4", "hydra.pair_micro_batch_size=4",
                    "eval.every=600",
                    "checkpoint.every=0",
                ]))
        let result = try await SFTStage(config: config, transport: SingleProcessTransport(), say: { _ in }).run()
        let accuracy = try XCTUnwrap(result.trainRewardAccuracy)
        // 4 rankings of 6 responses: 60 ordered pairs, so the accuracy is a multiple of 1/60.
        XCTAssertEqual((accuracy * 60).rounded(), accuracy * 60, accuracy: 1e-9)
        XCTAssertGreaterThanOrEqual(accuracy, 0.95, "x_inv interpolates 4 rankings in 600 steps")
        let kept = try XCTUnwrap(result.trainOrderKept)
        XCTAssertGreaterThanOrEqual(kept, accuracy, "a pair ranked right keeps its order up to ties")
        let logged = try JSONL.objects(path: directory + "/rm/metrics.jsonl").compactMap {
            $0.object["train_reward_accuracy"] as? Double
        }
        XCTAssertEqual(logged.last, accuracy)
        XCTAssertThrowsError(
            try SFTConfig(try rmSchema.resolve(file: nil, overrides: ["data.task=arith", "data.collapse_prompts=9"]))
        ) { XCTAssertTrue("\($0)".contains("'data.collapse_prompts' sizes data.task collapse"), "\($0)") }
    }
}
