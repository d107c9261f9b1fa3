import Cluster
import Config
import Datasets
import Foundation
import Kernels
import XCTest

@testable import Runs
@testable import Training

/// The pieces behind issue 15's guarantees, one by one: the divergence rules, the agreement on a
/// stop signal, the resume command, the settings a resume must keep, checkpoint verification and
/// clean-up, JSON without NaN, and what data loading notices.
final class RunGuardTests: TemporaryDirectoryTestCase {
    func testDivergenceGuardRules() throws {
        // A fallen loss with an ordinary bump passes: 0.3 is over 10× the recent mean (≈ 0.02 after
        // 60 steps at 0.01), but below 10× where the run started (train.loss_spike needs both).
        var guardrail = DivergenceGuard(spikeFactor: 10, maxGradNorm: 0, checkpoints: directory)
        for (step, loss) in ([5.0] + Array(repeating: 0.01, count: 60) + [0.3]).enumerated() {
            try guardrail.check(step: step + 1, loss: loss, gradNorm: 1)
        }
        // A jump above 10× both stops, naming the values.
        var spiking = DivergenceGuard(spikeFactor: 10, maxGradNorm: 0, checkpoints: directory)
        try spiking.check(step: 1, loss: 2, gradNorm: 1)
        try spiking.check(step: 2, loss: 1.8, gradNorm: 1)
        XCTAssertThrowsError(try spiking.check(step: 3, loss: 1e4, gradNorm: 1)) { error in
            XCTAssertTrue(
                "\(error)".hasPrefix(
                    "loss 1e+04 is over 10× both the running mean 1.98 and the first step's 2 (train.loss_spike"),
                "\(error)")
            XCTAssertTrue("\(error)".contains("no checkpoint before it is known good"), "\(error)")
        }
        // 0 turns the spike rule off; non-finite values and train.max_grad_norm_abort still stop.
        var off = DivergenceGuard(spikeFactor: 0, maxGradNorm: 50, checkpoints: directory)
        try off.check(step: 1, loss: 1, gradNorm: 1)
        try off.check(step: 2, loss: 1e6, gradNorm: 49)
        XCTAssertThrowsError(try off.check(step: 3, loss: .nan, gradNorm: 1)) {
            XCTAssertTrue("\($0)".hasPrefix("loss is nan: training diverged"), "\($0)")
        }
        XCTAssertThrowsError(try off.check(step: 3, loss: 1, gradNorm: .infinity)) {
            XCTAssertTrue("\($0)".hasPrefix("the gradient norm is inf"), "\($0)")
        }
        XCTAssertThrowsError(try off.check(step: 3, loss: 1, gradNorm: 51)) {
            XCTAssertTrue("\($0)".hasPrefix("the gradient norm 51 exceeds train.max_grad_norm_abort 50"), "\($0)")
        }
        // No gradient to check (a head-only reward model): only the loss rules apply.
        var headOnly = DivergenceGuard(spikeFactor: 10, maxGradNorm: 50, checkpoints: directory)
        for step in 1...5 { try headOnly.check(step: step, loss: 0.69, gradNorm: nil) }
        // An exactly zero gradient at a real loss: once is chance, three times in a row is a
        // saturated model; at a loss far below the first (a memorised batch) it is not.
        var saturating = DivergenceGuard(spikeFactor: 10, maxGradNorm: 0, checkpoints: directory)
        try saturating.check(step: 1, loss: 0.69, gradNorm: 1)
        try saturating.check(step: 2, loss: 0.69, gradNorm: 0)
        try saturating.check(step: 3, loss: 0.69, gradNorm: 0.5)
        try saturating.check(step: 4, loss: 0.01, gradNorm: 0)
        try saturating.check(step: 5, loss: 0.01, gradNorm: 0)
        try saturating.check(step: 6, loss: 0.01, gradNorm: 0)
        try saturating.check(step: 7, loss: 0.7, gradNorm: 0)
        try saturating.check(step: 8, loss: 0.7, gradNorm: 0)
        XCTAssertThrowsError(try saturating.check(step: 9, loss: 0.7, gradNorm: 0)) {
            XCTAssertTrue(
                "\($0)".hasPrefix("the gradient vanished (norm 0 for 3 steps, at loss 0.7): the model saturated"),
                "\($0)")
        }
        // The memory travels with the checkpoint: a guard rebuilt from it judges the next step alike.
        var resumed = DivergenceGuard(spikeFactor: 10, maxGradNorm: 0, checkpoints: directory, memory: spiking.memory)
        XCTAssertThrowsError(try resumed.check(step: 3, loss: 1e4, gradNorm: 1))
    }

    /// A signal seen by one rank (here rank 1 only) is every rank's answer, after the same step.
    func testEveryRankAgreesOnAStopSignal() async throws {
        let world = EmbeddedWorld(size: 3)
        let quiet = try await world.run { try await StopRequest.agreed($0, local: nil) }
        XCTAssertEqual(quiet, [nil, nil, nil])
        let stopped = try await world.run { try await StopRequest.agreed($0, local: $0.rank == 1 ? SIGUSR1 : nil) }
        XCTAssertEqual(stopped, Array(repeating: StopSignal(number: SIGUSR1, ranks: [1]), count: 3))
        XCTAssertEqual(stopped[0]?.name, "SIGUSR1")
        XCTAssertEqual(stopped[0]?.exitStatus, 128 + SIGUSR1)
        // The process-wide flag the handlers set is what a rank reports by default.
        defer { StopRequest.simulate(nil) }
        StopRequest.simulate(SIGTERM)
        let local = try await world.run { try await StopRequest.agreed($0) }
        XCTAssertEqual(local[2], StopSignal(number: SIGTERM, ranks: [0, 1, 2]))
    }

    func testResumeCommandKeepsTheUsersArgumentsAndNamesTheCheckpoint() {
        let stopped = RunStopped(
            signal: StopSignal(number: SIGTERM, ranks: [1]), stage: "sft", step: 7,
            checkpoint: "/r/checkpoints/step-00000007")
        XCTAssertEqual(
            stopped.description,
            "stopped by SIGTERM (it reached rank 1) after sft step 7; checkpoint: /r/checkpoints/step-00000007")
        XCTAssertEqual(
            stopped.resumeCommand(arguments: [
                "/bin/rlhf", "sft", "--config", "my run.yaml", "resume=never", "train.lr=1e-3",
            ]),
            "rlhf sft --config 'my run.yaml' train.lr=1e-3 resume=/r/checkpoints/step-00000007")
        XCTAssertNil(
            RunStopped(signal: stopped.signal, stage: "sft", step: 7, checkpoint: nil).resumeCommand(arguments: [
                "rlhf", "sft",
            ]))
    }

    func testResumeSettingsAreTheModelAndDataOnes() throws {
        let base = try sftSchema.resolve(file: nil, overrides: [])
        let changed = try sftSchema.resolve(
            file: nil,
            overrides: [
                "model.preset=small", "train.lr=5e-4", "data.seed=2", "train.batch_size=64", "data.eval=e.jsonl",
            ])
        XCTAssertEqual(
            ResumeSettings.changes(saved: ResumeSettings.of(base), now: ResumeSettings.of(changed)),
            ["data.seed: 1 → 2", "model.preset: tiny → small", "train.batch_size: 32 → 64"],
            "the learning rate and the held-out data may change on resume; the model, training data and batch may not")
        // PPO's rollouts depend on how many ranks sample them: a stage adds that as an extra setting.
        XCTAssertEqual(
            ResumeSettings.changes(
                saved: ResumeSettings.of(base, extra: ["ranks rolling out": "2"]),
                now: ResumeSettings.of(base, extra: ["ranks rolling out": "1"])), ["ranks rolling out: 2 → 1"])
        // Unless the run is the same at any number (a checkpoint that recorded a count, or "any").
        for saved in ["2", "any (set)"] {
            XCTAssertEqual(
                ResumeSettings.changes(
                    saved: ResumeSettings.of(base, extra: ["ranks rolling out": saved]),
                    now: ResumeSettings.of(base, extra: ["ranks rolling out": "any (set)"])), [])
        }
        // A run that is not continues only the same count, not one written by any.
        XCTAssertEqual(
            ResumeSettings.changes(
                saved: ResumeSettings.of(base, extra: ["ranks rolling out": "any (set)"]),
                now: ResumeSettings.of(base, extra: ["ranks rolling out": "2"])), ["ranks rolling out: any (set) → 2"])
        // A key an older checkpoint lacks is unchanged while it holds its default.
        var older = ResumeSettings.of(base)
        older["data.skip_too_long"] = nil
        XCTAssertEqual(
            ResumeSettings.changes(saved: older, now: ResumeSettings.of(base), defaults: ResumeSettings.defaults(base)),
            [])
        let state = TrainingState(
            stage: "sft", step: 3, cursor: 96, optimizerStep: 3, learningRate: 1e-3, rng: RNG(seed: 1),
            tokenizer: "byte",
            worldSize: 1, settings: ResumeSettings.of(base))
        XCTAssertThrowsError(try ResumeSettings.check(checkpoint: "c", state: state, config: changed, resume: .auto)) {
            XCTAssertTrue(
                "\($0)".hasPrefix(
                    "c was trained with other settings: data.seed: 1 → 2; model.preset: tiny → small; "
                        + "train.batch_size: 32 → 64."
                ), "\($0)")
            XCTAssertTrue("\($0)".hasSuffix("or set resume: force to continue anyway"), "\($0)")
        }
        XCTAssertEqual(
            try ResumeSettings.check(checkpoint: "c", state: state, config: changed, resume: .force),
            "warning: resume: force continues c with changed settings: data.seed: 1 → 2; model.preset: tiny → small; "
                + "train.batch_size: 32 → 64"
        )
        XCTAssertNil(try ResumeSettings.check(checkpoint: "c", state: state, config: base, resume: .auto))
        // Data files are known by name and size: a copy elsewhere is the same data, an edit is not.
        for (folder, text) in [("a", "0123456789"), ("b", "0123456789"), ("c", "01234567890")] {
            try FileManager.default.createDirectory(atPath: directory + "/" + folder, withIntermediateDirectories: true)
            try text.write(toFile: directory + "/\(folder)/train.jsonl", atomically: true, encoding: .utf8)
        }
        XCTAssertEqual(ResumeSettings.describeFile(directory + "/a/train.jsonl"), "train.jsonl (10 bytes)")
        XCTAssertEqual(
            ResumeSettings.describeFile(directory + "/b/train.jsonl"),
            ResumeSettings.describeFile(directory + "/a/train.jsonl"))
        XCTAssertNotEqual(
            ResumeSettings.describeFile(directory + "/c/train.jsonl"),
            ResumeSettings.describeFile(directory + "/a/train.jsonl"))
    }

    /// verify() catches what a run could not have written; stale temporary folders of dead
    /// processes go, this process's own stays.
    func testCheckpointVerificationAndStaleTemporaries() throws {
        let good = directory + "/step-00000002", bad = directory + "/step-00000004"
        for (path, cursor) in [(good, 64), (bad, -5)] {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            let state = TrainingState(
                stage: "sft", step: 2, cursor: cursor, optimizerStep: 2, learningRate: 1e-3, rng: RNG(seed: 1),
                tokenizer: "byte", worldSize: 1)
            try JSONEncoder().encode(state).write(to: URL(fileURLWithPath: path + "/training_state.json"))
        }
        try Data("{\"a\": ".utf8).write(to: URL(fileURLWithPath: good + "/config.json"))
        XCTAssertEqual(Checkpoints.verify(good), good + "/config.json: not valid JSON")
        try Data("{}".utf8).write(to: URL(fileURLWithPath: good + "/config.json"))
        XCTAssertNil(Checkpoints.verify(good))
        XCTAssertEqual(Checkpoints.verify(bad), bad + "/training_state.json: a negative cursor or optimizer step")
        let (found, damaged) = Checkpoints.newestIntact(in: directory)
        XCTAssertEqual(found, good)
        XCTAssertEqual(damaged.map(\.path), [bad])
        XCTAssertEqual(Checkpoints.newest(in: directory, atMost: 3), good)

        let dead = directory + "/step-00000006.tmp-\(Int32.max)", mine = directory + "/step-00000008.tmp-\(getpid())"
        for path in [dead, mine] {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        }
        XCTAssertEqual(Checkpoints.removeStaleTemporaries(in: directory), [dead])
        XCTAssertTrue(FileManager.default.fileExists(atPath: mine))
    }

    /// A checkpoint lists the files it was written with: one deleted or cut short later makes it
    /// damaged, so resume passes over it to the one before instead of failing on it every time.
    func testACheckpointMissingAFileIsPassedOver() throws {
        let checkpoints = directory + "/checkpoints"
        var written: [String] = []
        for step in [2, 4] {
            written.append(
                try Checkpoints.saveFolder(directory: checkpoints, step: step, keepLast: 5) { folder in
                    let state = TrainingState(
                        stage: "sft", step: step, cursor: 8, optimizerStep: step, learningRate: 1e-3,
                        rng: RNG(seed: 1), tokenizer: "byte", worldSize: 1)
                    try JSONEncoder().encode(state).write(to: URL(fileURLWithPath: folder + "/training_state.json"))
                    try Data(repeating: 7, count: 64).write(to: URL(fileURLWithPath: folder + "/optimizer.bin"))
                })
        }
        XCTAssertNil(Checkpoints.verify(written[1]))
        XCTAssertEqual(Checkpoints.newestIntact(in: checkpoints).checkpoint, written[1])
        try Data(repeating: 7, count: 10).write(to: URL(fileURLWithPath: written[1] + "/optimizer.bin"))
        XCTAssertEqual(
            Checkpoints.verify(written[1]), written[1] + "/optimizer.bin has 10 bytes; it was written with 64")
        try FileManager.default.removeItem(atPath: written[1] + "/optimizer.bin")
        XCTAssertEqual(
            Checkpoints.verify(written[1]),
            written[1] + "/optimizer.bin is missing (the checkpoint was written with it)")
        let (found, damaged) = Checkpoints.newestIntact(in: checkpoints)
        XCTAssertEqual(found, written[0])
        XCTAssertEqual(damaged.map(\.path), [written[1]])
    }

    /// A save that fails partway (a full disk) names the checkpoint, keeps the earlier ones and
    /// leaves no temporary folder for the next attempt to trip over.
    func testAFailedSaveNamesTheCheckpointAndLeavesNoTemporaryFolder() throws {
        struct DiskFull: Error, CustomStringConvertible { var description: String { "No space left on device" } }
        let first = try Checkpoints.saveFolder(directory: directory, step: 1, keepLast: 3) { _ in }
        XCTAssertThrowsError(
            try Checkpoints.saveFolder(directory: directory, step: 2, keepLast: 3) { temporary in
                try Data(repeating: 0, count: 10).write(to: URL(fileURLWithPath: temporary + "/model.safetensors"))
                throw DiskFull()
            }
        ) { error in
            XCTAssertEqual(
                "\(error)",
                "writing checkpoint \(directory)/step-00000002 failed, the previous ones are kept: No space left on "
                    + "device"
            )
        }
        XCTAssertEqual(
            try FileManager.default.contentsOfDirectory(atPath: directory), [(first as NSString).lastPathComponent])
    }

    /// A PPO prompt must leave room for ppo.max_new_tokens within train.max_length: found at load
    /// with its file and line.
    func testPPOPromptsAreCheckedAgainstTheResponseBudget() throws {
        let cfg = try PPOConfig(
            try ppoSchema.resolve(
                file: nil,
                overrides: ["model.init_from=/sft", "data.task=arith", "train.max_length=16", "ppo.max_new_tokens=8"]))
        let fits = PPOPrompt(tokens: Array(repeating: 1, count: 8), answer: nil)
        XCTAssertEqual(try PPOData.fitting(fits, source: "p.jsonl:1", cfg).tokens.count, 8)
        XCTAssertThrowsError(
            try PPOData.fitting(PPOPrompt(tokens: Array(repeating: 1, count: 9), answer: nil), source: "p.jsonl:2", cfg)
        ) {
            XCTAssertEqual(
                $0 as? TooLongExample,
                TooLongExample(
                    source: "p.jsonl:2", tokens: 17, maxLength: 16, note: "the prompt's 9 + ppo.max_new_tokens 8"))
        }
    }

    func testJSONHasNoNaN() throws {
        let safe = RunFolder.jsonSafe([
            "a": Double.nan, "b": ["c": -Double.infinity, "d": 1.5], "e": [Float.nan, 2] as [Any], "f": "x",
        ])
        let text = String(
            decoding: try JSONSerialization.data(withJSONObject: safe, options: [.sortedKeys]), as: UTF8.self)
        XCTAssertEqual(text, #"{"a":null,"b":{"c":null,"d":1.5},"e":[null,2],"f":"x"}"#)
    }

    /// Invalid UTF-8 is an error naming the line unless replacement is allowed, which is counted;
    /// pairs with identical responses are reported.
    func testDataNotesInvalidUTF8AndIdenticalPairs() throws {
        let path = directory + "/prefs.jsonl"
        var bytes = Data("{\"prompt\": \"p\", \"chosen\": \"a\", \"rejected\": \"b\"}\r\n{\"prompt\": \"q".utf8)
        bytes.append(contentsOf: [0xFF, 0xFE])
        bytes.append(Data("\", \"chosen\": \"same\", \"rejected\": \"same\"}\n".utf8))
        try bytes.write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try JSONL.preferences(path: path)) {
            XCTAssertTrue(
                "\($0)".hasPrefix(
                    path + ":2: invalid UTF-8; convert the file to UTF-8, or set data.allow_replacement: true"), "\($0)"
            )
        }
        let notes = DataNotes(allowReplacement: true)
        let pairs = try JSONL.preferences(path: path, notes: notes)
        XCTAssertEqual(pairs.count, 2)
        XCTAssertEqual(pairs[1].prompt, "q\u{FFFD}\u{FFFD}")
        XCTAssertEqual(
            notes.report,
            [
                "data.allow_replacement: 1 line(s) had invalid UTF-8, read with U+FFFD in its place (\(path):2)",
                "warning: 1 preference pair(s) have identical responses and train nothing (\(path):2)",
            ])
    }

    func testSkippingTooLongExamplesCountsThemAndKeepsTheRest() throws {
        let notes = DataNotes(skipTooLong: true)
        let kept = try notes.keepingFitting([1, 50, 2]) { n -> Int in
            guard n < 10 else { throw TooLongExample(source: "f:\(n)", tokens: n, maxLength: 10) }
            return n
        }
        XCTAssertEqual(kept, [1, 2])
        XCTAssertEqual(notes.report, ["data.skip_too_long: skipped 1 example(s) longer than train.max_length (f:50)"])
        XCTAssertThrowsError(
            try DataNotes().keepingFitting([50]) { n -> Int in
                throw TooLongExample(source: "f:1", tokens: n, maxLength: 10)
            }
        ) {
            XCTAssertEqual(
                "\($0)",
                "f:1: 50 tokens exceed train.max_length (10); shorten or drop it, raise train.max_length, or set "
                    + "data.skip_too_long: true"
            )
        }
    }
}
