import Foundation
import XCTest

/// A dataset with other field names, as Parquet (issue 29's check): Fixtures/alpaca-style.parquet
/// (instruction/output, made by Fixtures/make_parquet_fixture.py) converted by
/// scripts/parquet_to_jsonl.py gives Fixtures/alpaca-style.jsonl, from which SFT trains with
/// data.prompt_key and data.completion_key.
final class DataMappingTests: CLITestCase {
    var fixtures: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures").path
    }

    func testAParquetDatasetTrainsWithItsOwnFieldNames() throws {
        let jsonl = fixtures + "/alpaca-style.jsonl"
        // The converter again, where Python and pyarrow are installed (tests never need them).
        let probe = Process()
        probe.executableURL = URL(fileURLWithPath: "/bin/sh")
        probe.arguments = ["-c", "python3 -c 'import pyarrow' 2>/dev/null"]
        try probe.run()
        probe.waitUntilExit()
        if probe.terminationStatus == 0 {
            let script = URL(fileURLWithPath: fixtures).deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent().appendingPathComponent("scripts/parquet_to_jsonl.py").path
            let convert = Process()
            convert.executableURL = URL(fileURLWithPath: "/bin/sh")
            convert.arguments = [
                "-c",
                "python3 \(script) \(fixtures)/alpaca-style.parquet --out \(directory)/converted.jsonl > /dev/null",
            ]
            try convert.run()
            convert.waitUntilExit()
            XCTAssertEqual(convert.terminationStatus, 0)
            XCTAssertEqual(
                FileManager.default.contents(atPath: directory + "/converted.jsonl"),
                FileManager.default.contents(atPath: jsonl), "the converter writes the committed JSONL")
        }
        let sft = [
            "sft", "data.train=\(jsonl)", "model.preset=tiny", "tokenizer=byte", "train.steps=30",
            "train.batch_size=8", "train.micro_batch_size=8", "train.max_length=16", "train.lr=3e-3", "eval.every=0",
            "checkpoint.every=0", "log.every=1",
        ]
        let (_, refused) = try run(sft + ["out=\(directory)/plain"], expectExit: 1)
        XCTAssertTrue(refused.contains("\(jsonl):1: missing field 'prompt' + 'completion' (or 'text')"), refused)
        try run(sft + ["out=\(directory)/run", "data.prompt_key=instruction", "data.completion_key=output"])
        let losses = try String(contentsOfFile: directory + "/run/metrics.jsonl", encoding: .utf8)
            .split(separator: "\n").compactMap {
                (try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["loss"] as? Double
            }
        XCTAssertEqual(losses.count, 30)
        XCTAssertLessThan(losses.suffix(5).reduce(0, +) / 5, losses.prefix(5).reduce(0, +) / 5 * 0.8, "it learns")
    }
}
