import Foundation
import XCTest

/// Every saved fuzzing input (Tests/Fuzz/TARGET: seeds, and the inputs that once crashed a parser
/// before it was fixed) goes through its parser again on each test run, in the plain build of
/// rlhf-fuzz (scripts/fuzz.sh runs the fuzzer itself).
final class FuzzRegressionTests: CLITestCase {
    var inputs: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent(
            "Fuzz")
    }

    func testSavedInputsReplayWithoutACrash() throws {
        let fuzz = binary.deletingLastPathComponent().appendingPathComponent("rlhf-fuzz")
        XCTAssertTrue(FileManager.default.isExecutableFile(atPath: fuzz.path), "no rlhf-fuzz at \(fuzz.path)")
        let targets = try FileManager.default.contentsOfDirectory(atPath: inputs.path).sorted()
        XCTAssertEqual(targets, ["config", "gguf", "jsonl", "safetensors", "tokenizer", "wire"])
        for target in targets {
            let files = try FileManager.default.contentsOfDirectory(atPath: inputs.appendingPathComponent(target).path)
                .sorted()
                .map { inputs.appendingPathComponent(target).appendingPathComponent($0).path }
            XCTAssertFalse(files.isEmpty, "\(target) has no saved inputs")
            let (status, text) = try outcome(fuzz, [target] + files)
            XCTAssertEqual(status, 0, "\(target): \(text)")
            XCTAssertTrue(text.contains("\(target): \(files.count) inputs replayed without a crash"), text)
        }
    }
}
