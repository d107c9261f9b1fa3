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

    func testMetricsTruncationOnResume() throws {
        let folder = try RunFolder(path: directory + "/r")
        for step in 1...5 { try folder.appendMetrics(["step": step, "loss": Double(step)]) }
        try folder.truncateMetrics(afterStep: 3)
        let steps = try JSONL.objects(path: folder.metrics).map { $0.object["step"] as! Int }
        XCTAssertEqual(steps, [1, 2, 3])
    }
}
