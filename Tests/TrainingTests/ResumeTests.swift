import Cluster
import Foundation
@testable import Training
import XCTest

/// N steps straight vs N/2, a crash, then resume: bit-identical weights, optimizer moments,
/// training state and loss curve.
final class ResumeTests: TemporaryDirectoryTestCase {

    func config(out: String, resume: String) throws -> SFTConfig {
        try SFTConfig(try sftSchema.resolve(file: nil, overrides: [
            "name=resume", "out=\(out)", "resume=\(resume)", "data.task=arith", "data.eval_size=50",
            "train.steps=20", "train.batch_size=16", "train.micro_batch_size=8", "train.max_length=16",
            "train.warmup_steps=4", "train.lr=3e-3", "eval.every=0", "checkpoint.every=10", "checkpoint.keep_last=5", "log.every=100",
        ]))
    }

    func bytes(_ path: String) -> Data { FileManager.default.contents(atPath: path) ?? Data() }
    func losses(_ run: String) throws -> [Double] {
        try JSONL.objects(path: run + "/metrics.jsonl").compactMap { $0.object["loss"] as? Double }
    }

    func testResumeIsBitIdentical() async throws {
        let a = directory + "/a", b = directory + "/b"
        _ = try await SFTStage(config: try config(out: a, resume: "never"), transport: SingleProcessTransport(), say: { _ in }).run()
        _ = try await SFTStage(config: try config(out: b, resume: "never"), transport: SingleProcessTransport(), say: { _ in }).run()
        // Crash after the step-10 checkpoint: the step-20 checkpoint never happened.
        try FileManager.default.removeItem(atPath: b + "/checkpoints/step-00000020")
        var messages: [String] = []
        let resumed = try await SFTStage(config: try config(out: b, resume: "auto"), transport: SingleProcessTransport(), say: { messages.append($0) }).run()
        XCTAssertTrue(messages.contains { $0.contains("resuming from \(b)/checkpoints/step-00000010") && $0.contains("at step 10") }, "\(messages)")
        XCTAssertEqual(resumed.lastCheckpoint, b + "/checkpoints/step-00000020")
        for file in ["model.safetensors", "optimizer.safetensors", "training_state.json", "config.json"] {
            let left = bytes(a + "/checkpoints/step-00000020/" + file), right = bytes(b + "/checkpoints/step-00000020/" + file)
            XCTAssertFalse(left.isEmpty, file)
            XCTAssertEqual(left, right, "\(file) differs after resume")
        }
        XCTAssertEqual(try losses(a).count, 20)
        XCTAssertEqual(try losses(b), try losses(a), "the resumed loss curve is the same, without duplicated steps")
        XCTAssertNotEqual(bytes(a + "/checkpoints/step-00000010/model.safetensors"), bytes(a + "/checkpoints/step-00000020/model.safetensors"))
    }

    func testKeepLastAndFreshStartMessages() async throws {
        let out = directory + "/k"
        var messages: [String] = []
        let overrides = try SFTConfig(try sftSchema.resolve(file: nil, overrides: [
            "name=resume", "out=\(out)", "resume=auto", "data.task=arith", "data.eval_size=50", "train.steps=10",
            "train.batch_size=8", "train.micro_batch_size=8", "train.max_length=16", "eval.every=0", "log.every=100",
            "checkpoint.every=5", "checkpoint.keep_last=1",
        ]))
        _ = try await SFTStage(config: overrides, transport: SingleProcessTransport(), say: { messages.append($0) }).run()
        XCTAssertTrue(messages.contains { $0.contains("starting fresh: no checkpoint in") }, "\(messages)")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out + "/checkpoints"), ["step-00000010"])
        XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/config.yaml"))
    }
}
