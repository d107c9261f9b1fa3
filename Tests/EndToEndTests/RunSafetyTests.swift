import Foundation
import Models
import Runs
import XCTest

/// Nothing lost, nothing hidden (issue 15), through the built binary: a signal stops a run with a
/// checkpoint that resumes bit for bit, divergence stops before anything is written, damaged or
/// stale checkpoints never strand a run, changed settings are not continued silently, and bad
/// data is found before step 1.
final class RunSafetyTests: CLITestCase {
    func sft(out: String, steps: Int, extra: [String] = []) -> [String] {
        [
            "sft", "name=safety", "out=\(out)", "resume=never", "data.task=arith", "data.eval_size=50",
            "train.steps=\(steps)",
            "train.batch_size=16", "train.micro_batch_size=8", "train.max_length=16", "train.warmup_steps=2",
            "train.lr=3e-3",
            "eval.every=0", "checkpoint.every=0", "log.every=1",
        ] + extra
    }

    func bytes(_ path: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: path)) }

    /// The step and checkpoint a stopped run names, and the command it says continues it.
    func stopReport(_ log: String, signal: String) throws -> (step: Int, checkpoint: String, command: [String]) {
        let pattern = try NSRegularExpression(
            pattern: #"stopped by \#(signal)[^\n]* after sft step (\d+); checkpoint: (\S+)\n"#)
        let match = try XCTUnwrap(
            pattern.firstMatch(in: log, range: NSRange(log.startIndex..., in: log)),
            "no stop report: \(log.suffix(1500))")
        let step = Int(log[Range(match.range(at: 1), in: log)!])!,
            checkpoint = String(log[Range(match.range(at: 2), in: log)!])
        let line = try XCTUnwrap(
            log.split(separator: "\n").first { $0.hasPrefix("to continue from it: rlhf ") }, "no resume command: \(log)"
        )
        let command = line.dropFirst("to continue from it: rlhf ".count).split(separator: " ").map(String.init)
        return (step, checkpoint, command)
    }

    /// SIGTERM mid-run: the step in flight finishes, a checkpoint of it is written, the process
    /// exits 143 and prints the command that continues; that command ends where an uninterrupted
    /// run ends, bit for bit.
    func testSIGTERMCheckpointsAndTheResumeEqualsAnUninterruptedRun() throws {
        let steps = 120
        try run(sft(out: directory + "/whole", steps: steps))
        let cut = directory + "/cut"
        let p = try start(binary.path, sft(out: cut, steps: steps), log: directory + "/cut.log")
        try waitForTraining(cut, process: p)
        // Held still while the signal is queued, so the run cannot reach its end first.
        kill(p.processIdentifier, SIGSTOP)
        XCTAssertTrue(p.isRunning, "the run ended before it could be signalled")
        kill(p.processIdentifier, SIGTERM)
        kill(p.processIdentifier, SIGCONT)
        p.waitUntilExit()
        let log = log(directory + "/cut.log")
        XCTAssertEqual(p.terminationStatus, 128 + SIGTERM, log)
        let report = try stopReport(log, signal: "SIGTERM")
        XCTAssertLessThan(report.step, steps, "the run was stopped before its end")
        XCTAssertEqual(report.checkpoint, cut + "/checkpoints/step-" + String(format: "%08d", report.step))
        XCTAssertTrue(FileManager.default.fileExists(atPath: report.checkpoint + "/training_state.json"))
        XCTAssertEqual(report.command.last, "resume=\(report.checkpoint)")
        let (_, notes) = try run(report.command)
        XCTAssertTrue(notes.contains("resuming from \(report.checkpoint)"), notes)
        let end = "/checkpoints/step-" + String(format: "%08d", steps)
        for file in ["model.safetensors", "optimizer.safetensors"] {
            XCTAssertEqual(
                try bytes(cut + end + "/" + file), try bytes(directory + "/whole" + end + "/" + file),
                "\(file) after stop + resume")
        }
    }

    /// A run resumed with a learning rate of 1e3 diverges: it stops with `rank 0 (sft, step s): …`,
    /// exits non-zero, writes no metrics line for the bad step, and names the last good
    /// checkpoint — step 4, not step s − 1, whose weights are the ones that gave the bad loss.
    func testDivergenceStopsWithTheRankStepAndLastGoodCheckpoint() throws {
        let out = directory + "/diverged"
        try run(sft(out: out, steps: 4, extra: ["checkpoint.every=2"]))
        let (_, stderr) = try run(
            sft(out: out, steps: 200, extra: ["checkpoint.every=2", "train.lr=1e3"]).map {
                $0 == "resume=never" ? "resume=auto" : $0
            },
            expectExit: 1)
        let pattern = try NSRegularExpression(
            pattern:
                #"rank 0 \(sft, step (\d+)\): [^\n]*training diverged, nothing more is written; the last good "#
                + #"checkpoint is (\S+) "#
        )
        let match = try XCTUnwrap(
            pattern.firstMatch(in: stderr, range: NSRange(stderr.startIndex..., in: stderr)), stderr)
        let step = Int(stderr[Range(match.range(at: 1), in: stderr)!])!
        XCTAssertGreaterThan(step, 5, "step 5 trains from step 4's good weights")
        XCTAssertEqual(String(stderr[Range(match.range(at: 2), in: stderr)!]), out + "/checkpoints/step-00000004")
        let metrics = try String(contentsOfFile: out + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(metrics.count, step - 1, "a line per good step, none for the diverged one")
        XCTAssertFalse(metrics.joined().contains("null"), "no non-finite value was logged")
    }

    /// A damaged newest checkpoint is passed over for the previous intact one, a dead process's
    /// temporary folder is removed, and both are said; a changed model setting is refused (the
    /// run's config.yaml untouched) unless resume: force; fewer steps than done is an error.
    func testResumeFallsBackCleansUpAndRefusesChangedSettings() throws {
        let out = directory + "/resumed"
        try run(sft(out: out, steps: 6, extra: ["checkpoint.every=2", "checkpoint.keep_last=3"]))
        let checkpoints = out + "/checkpoints"
        let damaged = checkpoints + "/step-00000006/model.safetensors"
        try bytes(damaged).prefix(1000).write(to: URL(fileURLWithPath: damaged))
        let stale = checkpoints + "/step-00000008.tmp-\(Int32.max)"  // above any pid_max: no such process
        try FileManager.default.createDirectory(atPath: stale, withIntermediateDirectories: true)
        let resumeArguments = sft(out: out, steps: 8, extra: ["checkpoint.every=2", "checkpoint.keep_last=3"]).map {
            $0 == "resume=never" ? "resume=auto" : $0
        }
        let (_, notes) = try run(resumeArguments)
        XCTAssertTrue(
            notes.contains("removed \(stale), left by an interrupted save of a process that is gone"), notes)
        XCTAssertTrue(
            notes.contains("warning: passing over the damaged checkpoint \(checkpoints)/step-00000006 ("), notes)
        XCTAssertTrue(notes.contains("resuming from \(checkpoints)/step-00000004"), notes)
        XCTAssertFalse(FileManager.default.fileExists(atPath: stale))
        XCTAssertNil(Checkpoints.verify(checkpoints + "/step-00000008"))

        let config = try String(contentsOfFile: out + "/config.yaml", encoding: .utf8)
        let (_, refused) = try run(resumeArguments + ["model.preset=small", "train.steps=10"], expectExit: 1)
        XCTAssertTrue(refused.contains("was trained with other settings: model.preset: tiny → small"), refused)
        XCTAssertEqual(
            try String(contentsOfFile: out + "/config.yaml", encoding: .utf8), config,
            "a refused resume leaves config.yaml as it was")
        let (_, fewer) = try run(resumeArguments + ["train.steps=3"], expectExit: 1)
        XCTAssertTrue(fewer.contains("'train.steps' is 3, but \(checkpoints)/step-00000008 has already done 8"), fewer)
        let (_, forced) = try run(
            resumeArguments.map { $0 == "resume=auto" ? "resume=force" : $0 } + ["data.eval_size=60", "train.steps=10"])
        XCTAssertTrue(
            forced.contains(
                "warning: resume: force continues \(checkpoints)/step-00000008 with changed settings: "
                    + "data.eval_size: 50 → 60"
            ), forced)
        XCTAssertNil(Checkpoints.verify(checkpoints + "/step-00000010"))
    }

    /// An example longer than train.max_length is found at load, before step 1, naming its file
    /// and line; data.skip_too_long drops it and says how many and where.
    func testTooLongExampleIsFoundBeforeStepOne() throws {
        let data = directory + "/sft.jsonl"
        try [
            "{\"prompt\": \"1+1=\", \"completion\": \"2\"}",
            "{\"prompt\": \"\(String(repeating: "9", count: 80))\", \"completion\": \"9\"}",
            "{\"prompt\": \"2+2=\", \"completion\": \"4\"}",
        ].joined(separator: "\r\n").write(toFile: data, atomically: true, encoding: .utf8)
        let arguments = [
            "sft", "name=long", "out=\(directory)/long", "resume=never", "data.train=\(data)", "train.steps=2",
            "train.batch_size=2",
            "train.micro_batch_size=2", "train.max_length=32", "eval.every=0", "checkpoint.every=0",
        ]
        let (_, stderr) = try run(arguments, expectExit: 1)
        XCTAssertTrue(stderr.contains("sft.jsonl:2: 82 tokens exceed train.max_length (32)"), stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory + "/long/metrics.jsonl"), "no step ran")
        let (_, skipped) = try run(arguments + ["data.skip_too_long=true"])
        XCTAssertTrue(
            skipped.contains("data.skip_too_long: skipped 1 example(s) longer than train.max_length (\(data):2)"),
            skipped)
    }

    /// Tools that load weights report non-finite tensors by name instead of crashing on NaN logits.
    func testScoreRefusesNonFiniteWeightsByName() throws {
        let model = directory + "/model"
        try run(["init", "--preset", "tiny", "--out", model])
        let trunk = try HFCheckpoint.load(directory: model)
        trunk.weights.pointer[trunk.parameterLayout.tensors[1].offset] = .nan
        try HFCheckpoint.save(trunk, directory: model)
        let input = directory + "/in.jsonl"
        try "{\"tokens\": [1, 2, 3]}\n".write(toFile: input, atomically: true, encoding: .utf8)
        let (_, stderr) = try run(["score", "--model", model, "--input", input], expectExit: 1)
        XCTAssertTrue(
            stderr.contains("non-finite weights (NaN or infinity) in \(trunk.parameterLayout.tensors[1].name) (1 of "),
            stderr)
    }
}
