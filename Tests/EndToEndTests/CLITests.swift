import Foundation
import Models
import XCTest

/// Runs the built `rlhf` binary the way a user does.
class CLITestCase: XCTestCase {
    var directory = ""
    override func setUp() {
        directory = NSTemporaryDirectory() + "rlhf-e2e-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: directory) }

    var binary: URL {
        // The test bundle and the rlhf product are built into the same folder.
        var folder = Bundle.main.bundleURL
        if folder.pathExtension == "xctest" { folder.deleteLastPathComponent() }
        return folder.appendingPathComponent("rlhf")
    }

    /// The environment for spawned processes, without the variables an MPI initialisation in this
    /// test process leaves behind (other tests start an MPI singleton here): inherited by mpirun
    /// or by rlhf they would make it believe it is already part of a job.
    static var cleanEnvironment: [String: String] {
        ProcessInfo.processInfo.environment.filter { key, _ in
            !["OMPI_", "PMIX_", "OPAL_", "ORTE_", "PMI_"].contains { key.hasPrefix($0) }
        }
    }

    @discardableResult
    func run(_ arguments: [String], expectExit status: Int32 = 0, environment extra: [String: String] = [:]) throws -> (
        stdout: String, stderr: String
    ) {
        let process = Process()
        process.environment = Self.cleanEnvironment.merging(extra) { _, new in new }
        process.executableURL = binary
        process.arguments = arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile(),
            stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let result = (String(decoding: stdout, as: UTF8.self), String(decoding: stderr, as: UTF8.self))
        XCTAssertEqual(process.terminationStatus, status, "rlhf \(arguments.joined(separator: " ")): \(result.1)")
        return result
    }

    /// Starts a process and returns it running, with its output collected into files.
    func start(_ executable: String, _ arguments: [String], log: String) throws -> Process {
        let p = Process()
        p.environment = Self.cleanEnvironment
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = arguments
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let handle = FileHandle(forWritingAtPath: log)!
        p.standardOutput = handle
        p.standardError = handle
        try p.run()
        return p
    }

    /// Waits until training has logged a step, so every rank is inside the loop.
    func waitForTraining(_ out: String, process: Process) throws {
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline && process.isRunning {
            if let text = try? String(contentsOfFile: out + "/metrics.jsonl", encoding: .utf8),
                text.contains("\"loss\"")
            {
                return
            }
            usleep(50_000)
        }
        XCTFail("training did not start within 60 s")
    }

    /// The pid of the rank process `rank` of a job whose command line contains `marker`.
    func rankProcess(_ rank: Int, marker: String) -> pid_t? {
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int32(entry),
                let cmdline = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline"),
                String(decoding: cmdline, as: UTF8.self).contains(marker),
                let environ = FileManager.default.contents(atPath: "/proc/\(entry)/environ")
            else { continue }
            let variables = String(decoding: environ, as: UTF8.self).split(separator: "\0")
            if variables.contains("OMPI_COMM_WORLD_RANK=\(rank)")
                && !String(decoding: cmdline, as: UTF8.self).hasPrefix("mpirun")
            {
                return pid
            }
        }
        return nil
    }
    /// Runs a program to its end with stdout and stderr together, without expectations.
    func outcome(_ executable: URL, _ arguments: [String], in folder: URL? = nil) throws -> (
        status: Int32, output: String
    ) {
        let p = Process()
        p.executableURL = executable
        p.arguments = arguments
        if let folder { p.currentDirectoryURL = folder }
        p.environment = Self.cleanEnvironment
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return (p.terminationStatus, text)
    }

    /// A process's log so far.
    func log(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }
}

final class CLITests: CLITestCase {
    /// A binary built for a newer CPU than the one it runs on stops before main with a clear
    /// message, not SIGILL (the CPU's lack simulated by RLHF_PRETEND_CPU_LACKS).
    /// Results on stdout (one JSON line), progress and notes on stderr, and both, as shown, in the
    /// run folder's log.txt.
    func testResultsOnStdoutProgressOnStderrAndBothInTheRunsLog() throws {
        let out = directory + "/run"
        let (stdout, stderr) = try run([
            "sft", "data.task=arith", "data.eval_size=10", "model.preset=tiny", "tokenizer=byte", "train.steps=6",
            "train.batch_size=8", "train.micro_batch_size=8", "train.max_length=16", "eval.every=3",
            "eval.max_examples=10", "log.every=1", "out=\(out)",
        ])
        let lines = stdout.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, stdout)
        let result = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as? [String: Any])
        XCTAssertEqual(result["run"] as? String, out)
        XCTAssertTrue(stderr.contains("step 6/6 loss"), stderr)
        XCTAssertTrue(stderr.contains("sft: run folder \(out)"), stderr)
        let log = try String(contentsOfFile: out + "/log.txt", encoding: .utf8)
        XCTAssertEqual(log, stderr + stdout)
    }

    /// eval.command runs on each checkpoint (a hard-linked copy: `ls` counts its files) and its JSON
    /// line joins metrics.jsonl at the checkpoint's step; a failing command stops the run by name.
    func testTheEvalCommandScoresEachCheckpointIntoTheMetrics() throws {
        let out = directory + "/run"
        let sft = [
            "sft", "data.task=arith", "data.eval_size=10", "model.preset=tiny", "tokenizer=byte", "train.steps=6",
            "train.batch_size=8", "train.micro_batch_size=8", "train.max_length=16", "eval.every=0",
            "checkpoint.every=3", "checkpoint.keep_last=1",
        ]
        let command = #"echo "progress"; echo "{\"files\": $(ls {checkpoint} | wc -l), \"seen\": $RLHF_STEP}""#
        let (_, stderr) = try run(sft + ["out=\(out)", "eval.command=\(command)"])
        let lines = try String(contentsOfFile: out + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
            .compactMap { try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            .filter { $0["seen"] != nil }
        XCTAssertEqual(lines.map { $0["step"] as? Int }, [3, 6], stderr)
        for line in lines {
            XCTAssertEqual(line["seen"] as? Int, line["step"] as? Int)
            XCTAssertGreaterThan(line["files"] as? Int ?? 0, 3, "the checkpoint's files")
        }
        XCTAssertTrue(stderr.contains("step 3: eval.command files "), stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/eval-command/step-3"), "the copy is removed")
        for (k, (bad, why)) in [("exit 3", "exited with status 3"), ("echo hi", "must be a JSON object of numbers")]
            .enumerated()
        {
            let (_, err) = try run(sft + ["out=\(directory)/bad\(k)", "eval.command=\(bad)"], expectExit: 1)
            XCTAssertTrue(err.contains("eval.command '\(bad)' at step 3"), err)
            XCTAssertTrue(err.contains(why), err)
        }
    }

    /// `rlhf --version` names the version, the commit, the CPU level and the libraries it runs on.
    func testVersionNamesTheBuildAndTheLibraries() throws {
        let lines = try run(["--version"]).stdout.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.count, 5, "\(lines)")
        XCTAssertTrue(lines[0].hasPrefix("rlhf 0."), lines[0])
        XCTAssertTrue(lines[0].contains("(commit "), lines[0])
        XCTAssertTrue(lines[1].hasPrefix("built for -target-cpu "), lines[1])
        XCTAssertTrue(lines[2].hasPrefix("OpenBLAS 0."), lines[2])
        XCTAssertTrue(lines[3].contains("MPI"), lines[3])
        XCTAssertTrue(lines[4].hasPrefix("oneDNN 2."), lines[4])
    }

    func testABinaryBuiltForANewerCPURefusesClearly() throws {
        let (_, stderr) = try run(
            ["--help"], expectExit: 3,
            environment: [
                "RLHF_PRETEND_CPU_LACKS":
                    "avx avx2 fma bmi2 avx512f avx512bw avx512dq avx512vl avx512vnni avx512bf16 avx512vbmi"
            ])
        XCTAssertTrue(
            stderr.contains("this rlhf binary was built for the CPU 'native'") && stderr.contains("this CPU lacks avx"),
            stderr)
        XCTAssertTrue(stderr.contains("RLHF_TARGET_CPU=x86-64-v3"), "it says how to build for an older CPU: \(stderr)")
        try run(["--help"])  // and runs where nothing is lacking
    }

    func testInitThenScoreMatchesTheLibrary() throws {
        XCTAssertTrue(FileManager.default.isExecutableFile(atPath: binary.path), "no rlhf binary at \(binary.path)")
        let model = directory + "/model"
        try run(["init", "--preset", "tiny", "--seed", "3", "--out", model])
        let sequences: [[Int32]] = [[256, 72, 105], [256, 1, 2, 3, 4, 5, 6, 7, 8, 257], [9, 9]]
        let input = directory + "/in.jsonl"
        try sequences.map { "{\"tokens\": \($0)}" }.joined(separator: "\n").write(
            toFile: input, atomically: true, encoding: .utf8)
        let (stdout, stderr) = try run(["score", "--model", model, "--input", input, "--batch-size", "2"])
        XCTAssertTrue(stderr.contains("OpenBLAS core="), "prints the BLAS kernel and threads: \(stderr)")
        let lines = stdout.split(separator: "\n")
        XCTAssertEqual(lines.count, sequences.count)
        let expected = try HFCheckpoint.load(directory: model).scoreSequences(sequences)
        for (line, reference) in zip(lines, expected) {
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
            let logProbs = (object["logprobs"] as! [Double]).map(Float.init)
            // Batching changes padding and so sgemm shapes: equal to rounding, not bit for bit.
            XCTAssertEqual(logProbs.count, reference.count)
            for (a, b) in zip(logProbs, reference) { XCTAssertEqual(a, b, accuracy: 1e-5) }
            XCTAssertEqual(object["sum"] as! Double, logProbs.reduce(0.0) { $0 + Double($1) }, accuracy: 1e-9)
        }
    }

    func testScoreRejectsBadLinesNamingFileAndLine() throws {
        let model = directory + "/model"
        try run(["init", "--preset", "tiny", "--out", model])
        let input = directory + "/bad.jsonl"
        try "{\"tokens\": [1, 2]}\n{\"tokens\": [1, 999]}\n".write(toFile: input, atomically: true, encoding: .utf8)
        let (_, stderr) = try run(["score", "--model", model, "--input", input], expectExit: 1)
        XCTAssertTrue(stderr.contains("bad.jsonl:2: token 999 is not an id in 0..<258"), stderr)
        let (_, missing) = try run(["score", "--model", directory + "/nowhere", "--input", input], expectExit: 1)
        XCTAssertTrue(missing.contains("nowhere/config.json"), missing)
    }

    /// A negative number after a space is the option's value, refused by name (it was read as an
    /// unknown flag, "missing value"); a batch of 0 is refused instead of accepted.
    func testSamplingAndBatchOptionsAreCheckedByName() throws {
        for (arguments, message) in [
            (["--temperature", "-1"], "--temperature must be 0 (greedy) or positive, got -1.0"),
            (["--top-k", "-5"], "--top-k must be 0 (off) or positive, got -5"),
            (["--top-p", "0"], "--top-p must be in (0, 1], got 0.0"),
            (["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
            (["--max-new-tokens", "-3"], "--max-new-tokens must be at least 1, got -3"),
        ] {
            let (_, stderr) = try run(
                ["generate", "--model", directory + "/m", "--prompt", "x"] + arguments, expectExit: 64)
            XCTAssertTrue(stderr.contains(message), "\(arguments): \(stderr)")
        }
        let (_, score) = try run(
            ["score", "--model", directory + "/m", "--input", "-", "--batch-size", "-2"], expectExit: 64)
        XCTAssertTrue(score.contains("--batch-size must be at least 1, got -2"), score)
    }
}
