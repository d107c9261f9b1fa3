import Cluster
import Datasets
import Foundation
import Kernels
import Models
import Tokenizers
import XCTest

@testable import Runs
@testable import Training

/// Data-parallel SFT on 2 and 4 ranks of the embedded world matches one process with the same
/// global batch: loss curve and final weights identical.
final class DataParallelTests: TemporaryDirectoryTestCase {
    func config(out: String, checkReplicas: Bool = true, family: String = "gpt2") throws -> SFTConfig {
        try SFTConfig(
            try sftSchema.resolve(
                file: nil,
                overrides: [
                    "name=dp", "out=\(out)", "resume=never", "model.family=\(family)", "data.task=arith",
                    "data.eval_size=50",
                    "train.steps=12", "train.batch_size=16", "train.micro_batch_size=4", "train.max_length=16",
                    "train.warmup_steps=2", "train.lr=3e-3", "eval.every=0", "checkpoint.every=0", "log.every=100",
                    "train.check_replicas=\(checkReplicas)",
                ]))
    }

    func losses(_ run: String) throws -> [Double] {
        try JSONL.objects(path: run + "/metrics.jsonl").compactMap { $0.object["loss"] as? Double }
    }

    func weights(_ run: String) throws -> [Float] {
        try HFCheckpoint.load(directory: run + "/checkpoints/step-00000012").weights.array
    }

    func testTwoAndFourRanksMatchOneProcess() async throws {
        // The embedded ranks share this process and call OpenBLAS concurrently; with several BLAS
        // threads, how a contended call splits its work (and so its rounding) depends on timing.
        // One BLAS thread, as each MPI rank has in the mpirun tests, makes every product deterministic.
        let threads = BLAS.threads
        BLAS.setThreads(1)
        defer { BLAS.setThreads(threads) }
        for family in testedFamilies {
            let single = directory + "/single-\(family)"
            _ = try await SFTStage(
                config: try config(out: single, checkReplicas: false, family: family),
                transport: SingleProcessTransport(), say: { _ in }
            ).run()
            let reference = try weights(single), referenceLosses = try losses(single)
            XCTAssertEqual(referenceLosses.count, 12)
            for ranks in [2, 4] {
                let out = directory + "/dp\(ranks)-\(family)"
                let world = EmbeddedWorld(size: ranks)
                let config = try config(out: out, family: family)
                _ = try await world.run { transport in
                    try await SFTStage(config: config, transport: transport, say: { _ in }).run()
                }
                XCTAssertEqual(world.undelivered, [])
                let w = try weights(out), l = try losses(out)
                // Gradients are summed in Float64 (GradientSum), so the grouping of micro-batches
                // over ranks cannot change them: equal bit for bit, stronger than the 1e-5 asked.
                XCTAssertEqual(w, reference, "\(family), \(ranks) ranks: final weights")
                XCTAssertEqual(l, referenceLosses, "\(family), \(ranks) ranks: loss curve")
                XCTAssertEqual(l.count, 12)
            }
        }
    }

    func testBatchThatDoesNotSplitAcrossRanksIsRejected() async throws {
        let world = EmbeddedWorld(size: 3)
        let config = try config(out: directory + "/bad")
        do {
            _ = try await world.run { transport in
                try await SFTStage(config: config, transport: transport, say: { _ in }).run()
            }
            XCTFail("16 sequences cannot split into micro-batches of 4 over 3 ranks")
        } catch {
            XCTAssertTrue(
                "\(error)".contains("must be a multiple of train.micro_batch_size × ranks (4 × 3)"), "\(error)")
        }
    }
}

/// `rm`: the reward head alone learns to prefer correct sums over the demonstrator's mistakes.
final class RewardModelTests: TemporaryDirectoryTestCase {
    func testRewardModelLearnsArithPreferences() async throws {
        let config = try SFTConfig(
            try rmSchema.resolve(
                file: nil,
                overrides: [
                    "name=rm", "out=\(directory)/rm", "resume=never", "data.task=arith", "data.eval_size=300",
                    "train.steps=250",
                    "train.max_length=16", "train.lr=1e-3", "eval.every=250", "checkpoint.every=0", "log.every=1000",
                ]))
        XCTAssertEqual(config.stageName, "rm")
        var initial: Double?
        var messages: [String] = []
        let result = try await SFTStage(
            config: config, transport: SingleProcessTransport(), say: { messages.append($0) }
        ).run()
        for m in messages where m.hasPrefix("step 0:") {
            initial = Double(m.components(separatedBy: "reward accuracy ")[1].dropLast()).map { $0 / 100 }
        }
        let final = try XCTUnwrap(result.rewardAccuracy)
        XCTAssertGreaterThan(
            final, try XCTUnwrap(initial) + 0.1, "held-out pairwise accuracy rises (\(initial!) → \(final))")
        XCTAssertNil(result.finalEval?.exactMatch, "no LM evaluation without the LM term")
        XCTAssertTrue(
            FileManager.default.fileExists(atPath: directory + "/rm/checkpoints/step-00000250/reward_head.safetensors"))
        // Relations between keys: rm needs pairs, and the LM weight is 0 or 1.
        XCTAssertThrowsError(try SFTConfig(try rmSchema.resolve(file: nil, overrides: []))) {
            XCTAssertTrue("\($0)".contains("data.prefs"), "\($0)")
        }
        XCTAssertThrowsError(
            try SFTConfig(try rmSchema.resolve(file: nil, overrides: ["data.task=arith", "hydra.lm_weight=0.5"])))
    }
}

/// `rm` with LoRA on the frozen trunk: it learns, and the checkpoint's merged model equals base + adapter.
final class LoRARewardModelTests: TemporaryDirectoryTestCase {
    func testLoRARewardModelLearnsAndSavesAMergedModel() async throws {
        let config = try SFTConfig(
            try rmSchema.resolve(
                file: nil,
                overrides: [
                    "name=rm", "out=\(directory)/rm", "resume=never", "data.task=arith", "data.eval_size=300",
                    "train.steps=150", "lora.rank=8",
                    "train.max_length=16", "train.lr=1e-3", "eval.every=150", "checkpoint.every=0", "log.every=1000",
                ]))
        var messages: [String] = []
        let result = try await SFTStage(
            config: config, transport: SingleProcessTransport(), say: { messages.append($0) }
        ).run()
        let initial =
            try XCTUnwrap(
                messages.first { $0.hasPrefix("step 0:") }.flatMap {
                    Double($0.components(separatedBy: "reward accuracy ")[1].dropLast())
                }) / 100
        XCTAssertGreaterThan(
            try XCTUnwrap(result.rewardAccuracy), initial + 0.1, "held-out accuracy rises with LoRA alone")
        let checkpoint = try XCTUnwrap(result.lastCheckpoint)
        let merged = try HFCheckpoint.load(directory: checkpoint)
        let base = try SFTStage.makeModel(config, tokenizer: ByteTokenizer(), seed: config.run.seed)
        let adapter = try PEFTAdapter.load(directory: checkpoint + "/adapter", modelConfig: base.config)
        let tokens: [Int32] = [256, 49, 50, 43, 51, 52, 61, 52, 54, 257]
        let a = try merged.inferenceHidden(tokens: tokens, batch: 1, length: tokens.count).array
        let b = try base.inferenceHidden(tokens: tokens, batch: 1, length: tokens.count, adapter: adapter).array
        XCTAssertLessThan(zip(a, b).map { abs($0 - $1) }.max()!, 1e-4, "merged model = base + adapter")
        XCTAssertNotEqual(base.weights.array, merged.weights.array, "the adapter moved away from zero")
    }
}

/// `rm` on K-wise rankings (InstructGPT): every ordered pair of a prompt's responses in one group,
/// and held-out reward histograms per prompt class.
final class RankingTests: TemporaryDirectoryTestCase {
    func writeRankings(_ path: String, _ range: Range<Int>) throws {
        let lines = range.map { k -> [String: Any] in
            let a = k % 100, b = (k * 7) % 100
            return [
                "prompt": "\(a)+\(b)=", "ranked": [String(a + b), String(a + b + 1), String(a + b + 10)],
                "open_ended": k % 2 == 0,
            ]
        }
        try JSONL.write(lines, to: path)
    }

    func testKWiseRankingsTrainAndWriteHistogramsPerClass() async throws {
        try writeRankings(directory + "/train.jsonl", 0..<600)
        try writeRankings(directory + "/eval.jsonl", 600..<680)
        let config = try SFTConfig(
            try rmSchema.resolve(
                file: nil,
                overrides: [
                    "name=rank", "out=\(directory)/rm", "resume=never", "data.prefs=\(directory)/train.jsonl",
                    "data.eval_prefs=\(directory)/eval.jsonl",
                    "train.steps=150", "train.max_length=16", "train.lr=1e-3", "hydra.pair_batch_size=16",
                    "rm.utility=bt",
                    "eval.every=150", "checkpoint.every=0", "log.every=1000",
                ]))
        var messages: [String] = []
        let result = try await SFTStage(
            config: config, transport: SingleProcessTransport(), say: { messages.append($0) }
        ).run()
        let initial =
            try XCTUnwrap(
                messages.first { $0.hasPrefix("step 0:") }.flatMap {
                    Double($0.components(separatedBy: "reward accuracy ")[1].dropLast())
                }) / 100
        let final = try XCTUnwrap(result.rewardAccuracy)
        XCTAssertGreaterThan(
            final, initial + 0.1,
            "pairwise accuracy over the 3 ordered pairs of each ranking rises (\(initial) → \(final))")
        let h = try RewardHistograms.read(run: directory + "/rm")
        XCTAssertEqual(h.step, 150)
        XCTAssertEqual(Set(h.counts.keys), ["closed", "open-ended"])
        XCTAssertEqual(h.counts["closed"]!.reduce(0, +), 40 * 3, "every response of the 40 closed held-out prompts")
        XCTAssertEqual(h.counts["open-ended"]!.reduce(0, +), 40 * 3)
        XCTAssertTrue(h.svg(title: "rm").contains("open-ended (n = 120"))
    }

    func testRankingLinesAreCheckedAndExpandIntoPairs() throws {
        let path = directory + "/r.jsonl"
        try "{\"prompt\": \"p\", \"ranked\": [\"a\", \"b\", \"c\"]}\n".write(
            toFile: path, atomically: true, encoding: .utf8)
        let lines = try JSONL.preferences(path: path)
        XCTAssertEqual(lines[0].responses, ["a", "b", "c"])
        XCTAssertEqual(lines[0].pairs.map { "\($0.chosen)>\($0.rejected)" }, ["a>b", "a>c", "b>c"])
        for bad in [
            "{\"prompt\": \"p\", \"ranked\": [\"a\"]}",
            "{\"prompt\": \"p\", \"ranked\": [\"a\", \"b\"], \"chosen\": \"a\"}",
            "{\"prompt\": \"p\", \"ranked\": [\"a\", \"b\", \"c\"], \"margin\": 1}",
        ] {
            try (bad + "\n").write(toFile: path, atomically: true, encoding: .utf8)
            XCTAssertThrowsError(try JSONL.preferences(path: path)) {
                XCTAssertTrue("\($0)".contains("r.jsonl:1"), "\($0)")
            }
        }
    }
}
