import Cluster
import Datasets
import Foundation
import Training
import XCTest

/// SFT on the arith task learns: eval loss falls and exact match rises far above chance
/// (a random answer in 0…198 is right 0.5% of the time).
final class SFTLearningTests: XCTestCase {
    func testSFTOnArithLearns() async throws {
        let out = NSTemporaryDirectory() + "sft-e2e-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: out) }
        let config = try SFTConfig(
            try sftSchema.resolve(
                file: nil,
                overrides: [
                    "name=e2e", "out=\(out)", "resume=never", "data.task=arith", "data.eval_size=300",
                    "train.steps=1000", "train.batch_size=64", "train.micro_batch_size=32", "train.max_length=16",
                    "train.lr=1e-3",
                    "train.warmup_steps=30", "eval.every=500", "eval.max_examples=300", "eval.max_new_tokens=5",
                    "checkpoint.every=0", "log.every=500",
                ]))
        let result = try await SFTStage(config: config, transport: SingleProcessTransport(), say: { _ in }).run()
        let initial = try XCTUnwrap(result.initialEval), final = try XCTUnwrap(result.finalEval)
        XCTAssertLessThan(final.loss, initial.loss / 4, "eval loss falls (\(initial.loss) → \(final.loss))")
        XCTAssertEqual(initial.exactMatch, 0)
        XCTAssertGreaterThan(try XCTUnwrap(final.exactMatch), 0.2, "exact match rises far above chance")
        let evals = try JSONL.objects(path: out + "/metrics.jsonl").filter { $0.object["eval_loss"] != nil }
        XCTAssertEqual(evals.map { $0.object["step"] as! Int }, [0, 500, 1000])
    }
}
