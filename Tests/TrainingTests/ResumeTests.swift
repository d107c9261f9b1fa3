import Alignment
import Cluster
import Datasets
import Foundation
import Kernels
import Models
import Roles
import Tokenizers
import XCTest

@testable import Training

/// N steps straight vs N/2, a crash, then resume: bit-identical weights, optimizer moments,
/// training state and loss curve.
final class ResumeTests: TemporaryDirectoryTestCase {

    func config(out: String, resume: String, family: String = "gpt2") throws -> SFTConfig {
        try SFTConfig(
            try sftSchema.resolve(
                file: nil,
                overrides: [
                    "name=resume", "out=\(out)", "resume=\(resume)", "model.family=\(family)", "data.task=arith",
                    "data.eval_size=50",
                    "train.steps=20", "train.batch_size=16", "train.micro_batch_size=8", "train.max_length=16",
                    "train.warmup_steps=4", "train.lr=3e-3", "eval.every=0", "checkpoint.every=10",
                    "checkpoint.keep_last=5", "log.every=100",
                ]))
    }

    func bytes(_ path: String) -> Data { FileManager.default.contents(atPath: path) ?? Data() }
    func losses(_ run: String) throws -> [Double] {
        try JSONL.objects(path: run + "/metrics.jsonl").compactMap { $0.object["loss"] as? Double }
    }

    func testResumeIsBitIdentical() async throws {
        for family in testedFamilies {
            let a = directory + "/\(family)-a", b = directory + "/\(family)-b"
            _ = try await SFTStage(
                config: try config(out: a, resume: "never", family: family), transport: SingleProcessTransport(),
                say: { _ in }
            ).run()
            _ = try await SFTStage(
                config: try config(out: b, resume: "never", family: family), transport: SingleProcessTransport(),
                say: { _ in }
            ).run()
            // Crash after the step-10 checkpoint: the step-20 checkpoint never happened.
            try FileManager.default.removeItem(atPath: b + "/checkpoints/step-00000020")
            var messages: [String] = []
            let resumed = try await SFTStage(
                config: try config(out: b, resume: "auto", family: family), transport: SingleProcessTransport(),
                say: { messages.append($0) }
            ).run()
            XCTAssertTrue(
                messages.contains {
                    $0.contains("resuming from \(b)/checkpoints/step-00000010") && $0.contains("at step 10")
                }, "\(messages)")
            XCTAssertEqual(resumed.lastCheckpoint, b + "/checkpoints/step-00000020")
            for file in ["model.safetensors", "optimizer.safetensors", "training_state.json", "config.json"] {
                let left = bytes(a + "/checkpoints/step-00000020/" + file),
                    right = bytes(b + "/checkpoints/step-00000020/" + file)
                XCTAssertFalse(left.isEmpty, file)
                XCTAssertEqual(left, right, "\(file) differs after resume")
            }
            XCTAssertEqual(try losses(a).count, 20)
            XCTAssertEqual(try losses(b), try losses(a), "the resumed loss curve is the same, without duplicated steps")
            XCTAssertNotEqual(
                bytes(a + "/checkpoints/step-00000010/model.safetensors"),
                bytes(a + "/checkpoints/step-00000020/model.safetensors"))
            XCTAssertTrue(
                String(decoding: bytes(a + "/checkpoints/step-00000020/config.json"), as: UTF8.self).contains(
                    "\"model_type\" : \"\(family)\""), family)
        }
    }

    /// Hydra-SFT and rm carry more state: the reward head, its AdamW moments and the pair cursor.
    func testHydraSFTAndRewardModelResumeBitIdentically() async throws {
        for family in testedFamilies {
            for (name, schema, extra) in [
                ("hydra", hydraSFTSchema, ["hydra.pair_batch_size=8"]),
                ("rm", rmSchema, ["hydra.pair_batch_size=8", "rm.utility=adaptive"]),
                ("rm-lora", rmSchema, ["hydra.pair_batch_size=8", "lora.rank=4"]),
            ] {
                let name = "\(name)-\(family)"
                func config(_ out: String, _ resume: String) throws -> SFTConfig {
                    try SFTConfig(
                        try schema.resolve(
                            file: nil,
                            overrides: [
                                "name=\(name)", "out=\(out)", "resume=\(resume)", "data.task=arith",
                                "data.eval_size=50", "train.steps=12",
                                "train.batch_size=16", "train.micro_batch_size=8", "train.max_length=16",
                                "train.warmup_steps=2", "train.lr=3e-3",
                                "eval.every=0", "checkpoint.every=6", "checkpoint.keep_last=5", "log.every=100",
                                "model.family=\(family)",
                            ] + extra))
                }
                let a = directory + "/\(name)-a", b = directory + "/\(name)-b"
                _ = try await SFTStage(
                    config: try config(a, "never"), transport: SingleProcessTransport(), say: { _ in }
                ).run()
                _ = try await SFTStage(
                    config: try config(b, "never"), transport: SingleProcessTransport(), say: { _ in }
                ).run()
                try FileManager.default.removeItem(atPath: b + "/checkpoints/step-00000012")
                _ = try await SFTStage(
                    config: try config(b, "auto"), transport: SingleProcessTransport(), say: { _ in }
                ).run()
                for file in [
                    "model.safetensors", "optimizer.safetensors", "reward_head.safetensors",
                    "reward_head_optimizer.safetensors", "training_state.json",
                ]
                    + (name.hasPrefix("rm-lora") ? ["adapter/adapter_model.safetensors"] : [])
                {
                    let left = bytes(a + "/checkpoints/step-00000012/" + file),
                        right = bytes(b + "/checkpoints/step-00000012/" + file)
                    XCTAssertFalse(left.isEmpty, "\(name): \(file)")
                    XCTAssertEqual(left, right, "\(name): \(file) differs after resume")
                }
                let pairLosses = { (run: String) in
                    try JSONL.objects(path: run + "/metrics.jsonl").compactMap { $0.object["bt_loss"] as? Double }
                }
                XCTAssertEqual(try pairLosses(b), try pairLosses(a), "\(name): pair-loss curve")
                XCTAssertEqual(try pairLosses(a).count, 12)
            }
        }
    }

    func testKeepLastAndFreshStartMessages() async throws {
        let out = directory + "/k"
        var messages: [String] = []
        let overrides = try SFTConfig(
            try sftSchema.resolve(
                file: nil,
                overrides: [
                    "name=resume", "out=\(out)", "resume=auto", "data.task=arith", "data.eval_size=50",
                    "train.steps=10",
                    "train.batch_size=8", "train.micro_batch_size=8", "train.max_length=16", "eval.every=0",
                    "log.every=100",
                    "checkpoint.every=5", "checkpoint.keep_last=1",
                ]))
        _ = try await SFTStage(config: overrides, transport: SingleProcessTransport(), say: { messages.append($0) })
            .run()
        XCTAssertTrue(messages.contains { $0.contains("starting fresh: no checkpoint in") }, "\(messages)")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out + "/checkpoints"), ["step-00000010"])
        XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/config.yaml"))
    }
}

/// PPO: 4 iterations straight vs 2, a crash, then resume: bit-identical adapters, value head,
/// optimizer state and metrics (timings aside), with adaptive KL and PPO-ptx in play.
final class PPOResumeTests: TemporaryDirectoryTestCase {

    func config(_ model: String, out: String, resume: String) throws -> PPOConfig {
        try PPOConfig(
            try ppoSchema.resolve(
                file: nil,
                overrides: [
                    "name=ppo", "out=\(out)", "resume=\(resume)", "model.init_from=\(model)", "data.task=arith",
                    "data.eval_size=20",
                    "ppo.iterations=4", "ppo.prompts=4", "ppo.samples_per_prompt=2", "ppo.max_new_tokens=4",
                    "ppo.minibatch_size=4",
                    "ppo.estimator=gae", "ppo.kl_target=0.5", "ppo.ptx_coef=0.05", "lora.rank=4", "train.max_length=16",
                    "eval.every=100", "eval.max_examples=10", "checkpoint.every=2", "checkpoint.keep_last=5",
                    "log.every=100",
                ]))
    }

    func metrics(_ run: String) throws -> [[String: Double]] {
        let timings: Set<String> = ["generate_s", "score_s", "train_s", "communicate_s"]
        return try JSONL.objects(path: run + "/metrics.jsonl").map {
            $0.object.compactMapValues { $0 as? Double }.filter { !timings.contains($0.key) }
        }
    }

    func testResumeIsBitIdentical() async throws {
        for family in testedFamilies {
            let model = try makeTinyModel(directory: directory, family: family)
            let a = directory + "/\(family)-a", b = directory + "/\(family)-b"
            _ = try await PPOStage(
                config: try config(model, out: a, resume: "never"), transport: SingleProcessTransport(), say: { _ in }
            ).run()
            _ = try await PPOStage(
                config: try config(model, out: b, resume: "never"), transport: SingleProcessTransport(), say: { _ in }
            ).run()
            try FileManager.default.removeItem(atPath: b + "/checkpoints/step-00000004")
            var messages: [String] = []
            _ = try await PPOStage(
                config: try config(model, out: b, resume: "auto"), transport: SingleProcessTransport(),
                say: { messages.append($0) }
            ).run()
            XCTAssertTrue(
                messages.contains { $0.contains("resuming from") && $0.contains("at iteration 2") }, "\(messages)")
            for file in [
                "final/policy_adapter/adapter_model.safetensors", "final/critic_adapter/adapter_model.safetensors",
                "final/value_head.safetensors",
                "checkpoints/step-00000004/ppo_state.safetensors", "checkpoints/step-00000004/training_state.json",
            ] {
                let left = FileManager.default.contents(atPath: a + "/" + file) ?? Data(),
                    right = FileManager.default.contents(atPath: b + "/" + file) ?? Data()
                XCTAssertFalse(left.isEmpty, file)
                XCTAssertEqual(left, right, "\(file) differs after resume")
            }
            XCTAssertEqual(try metrics(b), try metrics(a), "metrics after resume (timings aside)")
            XCTAssertNotEqual(
                FileManager.default.contents(atPath: a + "/checkpoints/step-00000002/ppo_state.safetensors"),
                FileManager.default.contents(atPath: a + "/checkpoints/step-00000004/ppo_state.safetensors"))
        }
    }
}
