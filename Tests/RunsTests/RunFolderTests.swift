import Datasets
import Foundation
import Kernels
import XCTest

@testable import Runs

final class RunFolderTests: XCTestCase {
    var directory = ""
    override func setUp() {
        directory = NSTemporaryDirectory() + "rlhf-runfolder-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: directory) }

    /// A fake complete checkpoint (what `newest` looks for, with a state `verify` accepts).
    func checkpoint(_ run: String, step: Int) throws -> String {
        let path = "\(directory)/runs/\(run)/checkpoints/\(Checkpoints.folderName(step: step))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        let state = TrainingState(
            stage: "sft", step: step, cursor: 0, optimizerStep: step, learningRate: 1e-3, rng: RNG(seed: 1),
            tokenizer: "byte", worldSize: 1)
        try JSONEncoder().encode(state).write(to: URL(fileURLWithPath: path + "/training_state.json"))
        return path
    }

    func testAutoNeverAndPath() throws {
        let date = Date(timeIntervalSince1970: 1_800_000_000)
        let fresh = try RunFolder.choose(name: "exp", out: "", resume: .auto, workingDirectory: directory, now: date)
        XCTAssertNil(fresh.checkpoint)
        XCTAssertEqual(fresh.folder.path, directory + "/runs/exp-20270115-080000")
        XCTAssertTrue(fresh.message.contains("no earlier run named exp"))

        _ = try checkpoint("exp-20260101-000000", step: 30)
        let newest = try checkpoint("exp-20260102-000000", step: 20)
        _ = try checkpoint("exp-20260102-000000", step: 10)
        _ = try checkpoint("exp2-20260103-000000", step: 99)  // another name
        try FileManager.default.createDirectory(
            atPath: directory + "/runs/exp-20260104-000000/checkpoints/step-00000050.tmp-1",
            withIntermediateDirectories: true)  // an interrupted save
        let auto = try RunFolder.choose(name: "exp", out: "", resume: .auto, workingDirectory: directory, now: date)
        XCTAssertEqual(auto.checkpoint, newest)
        XCTAssertEqual(auto.folder.path, directory + "/runs/exp-20260102-000000", "continues in the run it resumes")

        let never = try RunFolder.choose(name: "exp", out: "", resume: .never, workingDirectory: directory, now: date)
        XCTAssertNil(never.checkpoint)
        XCTAssertEqual(never.message, "starting fresh (resume: never)")

        let old = directory + "/runs/exp-20260101-000000/checkpoints/step-00000030"
        let byPath = try RunFolder.choose(
            name: "exp", out: "", resume: .from(old), workingDirectory: directory, now: date)
        XCTAssertEqual(byPath.checkpoint, old)
        XCTAssertEqual(byPath.folder.path, directory + "/runs/exp-20260101-000000")
    }

    /// A fresh start in an `out` folder an earlier run wrote to moves that run's outputs into
    /// previous-<time> (it appended to its metrics.jsonl and added a second events file before);
    /// files a run does not write stay, and a folder with no earlier run is left alone.
    func testAFreshStartSetsTheEarlierRunAside() throws {
        let date = Date(timeIntervalSince1970: 1_800_000_000), out = directory + "/out"
        let untouched = try RunFolder.choose(
            name: "x", out: out, resume: .never, workingDirectory: directory, now: date)
        XCTAssertEqual(untouched.message, "starting fresh (resume: never)")
        let first = try RunFolder(path: out)
        for step in 1...3 { try first.appendMetrics(["step": step, "loss": 1.0]) }
        try "notes".write(toFile: out + "/mine.txt", atomically: true, encoding: .utf8)
        try FileManager.default.createDirectory(
            atPath: out + "/checkpoints/step-00000002", withIntermediateDirectories: true)
        let events = try FileManager.default.contentsOfDirectory(atPath: out).filter { $0.hasPrefix("events.out") }
        XCTAssertEqual(events.count, 1)

        let again = try RunFolder.choose(name: "x", out: out, resume: .never, workingDirectory: directory, now: date)
        let aside = out + "/previous-20270115-080000"
        XCTAssertEqual(again.message, "starting fresh (resume: never); the earlier run's files moved to \(aside)")
        let left = try FileManager.default.contentsOfDirectory(atPath: out).sorted()
        XCTAssertEqual(left, ["checkpoints", "mine.txt", "previous-20270115-080000"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out + "/checkpoints"), [])
        XCTAssertEqual(try JSONL.objects(path: aside + "/metrics.jsonl").count, 3, "nothing is lost")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: aside + "/checkpoints"), ["step-00000002"])
        XCTAssertTrue(FileManager.default.fileExists(atPath: aside + "/" + events[0]))
        // resume: auto finds no checkpoint left in the folder and starts fresh without moving again.
        let auto = try RunFolder.choose(name: "x", out: out, resume: .auto, workingDirectory: directory, now: date)
        XCTAssertEqual(auto.message, "starting fresh: no checkpoint in \(out)")
    }

    func testMetricsTruncationOnResume() throws {
        let folder = try RunFolder(path: directory + "/r")
        for step in 1...5 { try folder.appendMetrics(["step": step, "loss": Double(step)]) }
        try folder.truncateMetrics(afterStep: 3)
        let steps = try JSONL.objects(path: folder.metrics).map { $0.object["step"] as! Int }
        XCTAssertEqual(steps, [1, 2, 3])
    }
}
