import Foundation
import XCTest

@testable import Config
@testable import Training

final class ConfigTests: TemporaryDirectoryTestCase {

    func file(_ text: String) throws -> String {
        try FileManager.default.createDirectory(atPath: directory + "/sub", withIntermediateDirectories: true)
        let path = directory + "/sub/exp.yaml"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func assertError(
        _ yaml: String?, overrides: [String] = [], contains parts: [String], file: StaticString = #filePath,
        line: UInt = #line
    ) throws {
        let path = try yaml.map { try self.file($0) }
        XCTAssertThrowsError(try sftSchema.resolve(file: path, overrides: overrides), file: file, line: line) { error in
            for p in parts {
                XCTAssertTrue("\(error)".contains(p), "'\(error)' should contain '\(p)'", file: file, line: line)
            }
        }
    }

    /// Nesting thousands of levels deep is refused by line before Yams parses it (its recursive
    /// node building overflowed the stack: SIGSEGV); ordinary nesting, quotes and comments pass.
    func testDeepNestingIsRefusedBeforeParsing() throws {
        let deep = 6000
        try assertError(
            "train:\n  lr: " + String(repeating: "[", count: deep) + String(repeating: "]", count: deep) + "\n",
            contains: ["exp.yaml:2", "more than 64 nested [ ] or { }"])
        var mapping = ""
        for level in 0..<deep { mapping += String(repeating: " ", count: level) + "k\(level):\n" }
        try assertError(mapping, contains: ["exp.yaml:258", "nested deeper than 256 columns"])
        try assertError(
            "name: x\n" + String(repeating: "- ", count: deep) + "x\n", contains: ["exp.yaml:2", "nested deeper"])
        let fine = """
            name: "it's [not {a flow"  # a comment with [[[ and '
            note: it's plain [x]
            train:
              lr: 0.1
            """
        XCTAssertNoThrow(try YAMLNesting.check(fine, file: "f"))
        XCTAssertNoThrow(
            try YAMLNesting.check(String(repeating: "[", count: 64) + String(repeating: "]", count: 64), file: "f"))
        XCTAssertEqual(YAMLNesting.blockColumns("  - - x"), 6)
        XCTAssertEqual(YAMLNesting.blockColumns("  -x: 1"), 2, "a dash that starts a scalar is not a marker")
    }

    func testUnknownKeysNameFileLineAndSuggest() throws {
        try assertError(
            "name: x\ntrain:\n  lrr: 0.1\n",
            contains: ["exp.yaml:3", "unknown key 'train.lrr'", "did you mean 'train.lr'?"])
        try assertError("lr: 0.1\n", contains: ["unknown key 'lr'", "did you mean 'train.lr'?"])
        try assertError("trian:\n  lr: 0.1\n", contains: ["unknown key 'trian'", "did you mean 'train'?"])
        try assertError(
            nil, overrides: ["train.batchsize=4"],
            contains: ["override 'train.batchsize=4'", "did you mean 'train.batch_size'?"])
    }

    func testDuplicateAndMistypedKeys() throws {
        try assertError(
            "train:\n  lr: 0.1\n  lr: 0.2\n",
            contains: ["exp.yaml:3", "duplicate key 'train.lr' (first at", "exp.yaml:2"])
        try assertError(
            "train:\n  steps: many\n", contains: ["exp.yaml:2", "'train.steps' expects an integer, got 'many'"])
        try assertError("train:\n  steps: \"5\"\n", contains: ["expects an integer"])
        try assertError(
            "model:\n  preset: huge\n",
            contains: ["'model.preset' expects one of gpt2, qwen2.5-0.5b, small, smollm2-135m, tiny"])
        try assertError("train: 5\n", contains: ["'train' must be a mapping"])
        try assertError("train:\n  lr: [1, 2]\n", contains: ["'train.lr' expects a single value"])
        try assertError(nil, overrides: ["train.lr=fast"], contains: ["override 'train.lr=fast'", "expects a number"])
        try assertError(nil, overrides: ["train.lr"], contains: ["expected key.sub=value"])
    }

    func testLayeringPathsAndResolvedYAMLRoundTrip() throws {
        let path = try file("name: demo\ndata:\n  train: ../data/train.jsonl\ntrain:\n  lr: 0.002\n  steps: 7\n")
        let c = try sftSchema.resolve(file: path, overrides: ["train.steps=9", "data.eval=e.jsonl"])
        XCTAssertEqual(c[RunSettings.name], "demo")
        XCTAssertEqual(c[OptimizerSettings.lr], 0.002)
        XCTAssertEqual(c[OptimizerSettings.steps], 9, "overrides win over the file")
        XCTAssertEqual(c[OptimizerSettings.batchSize], 32, "defaults fill the rest")
        XCTAssertEqual(
            c[DataSettings.train].path, directory + "/data/train.jsonl",
            "file paths resolve against the config's folder")
        XCTAssertEqual(
            c[DataSettings.eval].path, FileManager.default.currentDirectoryPath + "/e.jsonl",
            "override paths against the working folder")
        XCTAssertEqual(c.sources["train.steps"], "override 'train.steps=9'")
        XCTAssertTrue(c.sources["train.lr"]!.hasSuffix("exp.yaml:5"))
        // The saved resolved config reads back to the same values.
        let saved = directory + "/resolved.yaml"
        try c.yaml.write(toFile: saved, atomically: true, encoding: .utf8)
        XCTAssertEqual(try sftSchema.resolve(file: saved, overrides: []).values, c.values)
    }

    func testRelationsBetweenKeysAreChecked() throws {
        let c = try sftSchema.resolve(
            file: nil, overrides: ["data.task=arith", "train.batch_size=30", "train.micro_batch_size=8"])
        let config = try SFTConfig(c)
        XCTAssertThrowsError(try config.accumulationSteps(worldSize: 1)) {
            XCTAssertTrue("\($0)".contains("multiple of"))
        }
        XCTAssertEqual(
            try SFTConfig(try sftSchema.resolve(file: nil, overrides: ["data.task=arith", "train.batch_size=32"]))
                .accumulationSteps(worldSize: 2), 2)
        XCTAssertThrowsError(try SFTConfig(try sftSchema.resolve(file: nil, overrides: []))) {
            XCTAssertTrue("\($0)".contains("set 'data.task' or 'data.train'"))
        }
        XCTAssertThrowsError(
            try SFTConfig(
                try sftSchema.resolve(file: nil, overrides: ["data.task=arith", "resume=/no/such/checkpoint"])))
    }
}
