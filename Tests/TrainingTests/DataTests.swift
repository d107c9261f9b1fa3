import Foundation
import Kernels
import Tokenizers
import XCTest

@testable import Datasets
@testable import Training

final class DataTests: TemporaryDirectoryTestCase {

    func write(_ text: String) throws -> String {
        let path = directory + "/d.jsonl"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func testReadersNameFileLineAndField() throws {
        let good = try write("{\"prompt\": \"1+1=\", \"completion\": \"2\"}\n\n{\"text\": \"hello\"}\n")
        XCTAssertEqual(try JSONL.sft(path: good).map(\.completion), ["2", "hello"])
        XCTAssertEqual(try JSONL.sft(path: good)[1].source, good + ":3")
        func fails(_ text: String, _ message: String, reader: (String) throws -> Any = { try JSONL.sft(path: $0) })
            throws
        {
            let path = try write(text)
            XCTAssertThrowsError(try reader(path)) {
                XCTAssertTrue("\($0)".contains(message), "'\($0)' should contain '\(message)'")
            }
        }
        try fails("{\"prompt\": \"a\", \"completion\": \"b\"}\n{oops\n", "d.jsonl:2: not a JSON object")
        try fails("{\"prompt\": \"a\"}\n", "d.jsonl:1: missing field 'completion'")
        try fails("{\"prompt\": \"a\", \"completion\": 3}\n", "d.jsonl:1: field 'completion' must be a string")
        try fails("{\"text\": \"a\", \"prompt\": \"b\"}\n", "not both")
        try fails(
            "{\"prompt\": \"p\", \"chosen\": \"a\"}\n", "d.jsonl:1: missing field 'rejected'",
            reader: { try JSONL.preferences(path: $0) })
        try fails(
            "{\"prompt\": \"p\", \"chosen\": \"a\", \"rejected\": \"b\", \"margin\": \"big\"}\n",
            "field 'margin' must be a number",
            reader: { try JSONL.preferences(path: $0) })
        try fails("{\"answer\": \"1\"}\n", "missing field 'prompt'", reader: { try JSONL.prompts(path: $0) })
        let prefs = try write(
            "{\"prompt\": \"p\", \"chosen\": \"a\", \"rejected\": \"b\", \"margin\": 1.5, \"open_ended\": true, "
                + "\"task\": \"t\"}\n"
        )
        XCTAssertEqual(try JSONL.preferences(path: prefs).first?.margin, 1.5)
        XCTAssertEqual(try JSONL.preferences(path: prefs).first?.openEnded, true)
    }

    /// A file saved on Windows (CRLF line ends) reads line by line, and errors keep their line numbers.
    /// data.*_key applies to data files: with a built-in task, or empty, it is refused at load; PPO,
    /// which reads no pairs, has no data.chosen_key.
    func testFieldKeysAreCheckedAtLoad() throws {
        let refused: [([String], String)] = [
            (["data.task=arith", "data.prompt_key=question"], "data.prompt_key names a field of data files"),
            (["data.train=x.jsonl", "data.completion_key="], "data.completion_key is empty"),
        ]
        for (overrides, expected) in refused {
            XCTAssertThrowsError(try SFTConfig(try sftSchema.resolve(file: nil, overrides: overrides))) {
                XCTAssertTrue("\($0)".contains(expected), "\($0)")
            }
        }
        let mapped = try SFTConfig(
            try sftSchema.resolve(
                file: nil, overrides: ["data.train=x.jsonl", "eval.every=0", "data.prompt_key=instruction"]))
        XCTAssertEqual(mapped.data.fields.renamed, ["prompt": "instruction"])
        XCTAssertThrowsError(try ppoSchema.resolve(file: nil, overrides: ["data.chosen_key=good"])) {
            XCTAssertTrue("\($0)".contains("unknown key 'data.chosen_key'"), "\($0)")
        }
    }

    func testCRLFFilesReadLineByLine() throws {
        let path = try write("{\"prompt\": \"1+1=\", \"completion\": \"2\"}\r\n{\"text\": \"hello\"}\r\n")
        XCTAssertEqual(try JSONL.sft(path: path).map(\.completion), ["2", "hello"])
        XCTAssertEqual(try JSONL.sft(path: path)[1].source, path + ":2")
        let bad = try write("{\"text\": \"a\"}\r\n{oops\r\n")
        XCTAssertThrowsError(try JSONL.sft(path: bad)) {
            XCTAssertTrue("\($0)".contains("d.jsonl:2: not a JSON object"), "\($0)")
        }
    }

    func testTokenizationMasksThePromptAndRejectsTooLongExamples() throws {
        let t = ByteTokenizer()
        let e = try SFTTokenization.tokenize(SFTExample(prompt: "1+2=", completion: "3"), tokenizer: t, maxLength: 16)
        // [BOS] 1 + 2 = 3 [EOS]: inputs drop the last token, targets drop the first.
        XCTAssertEqual(e.tokens, [256] + "1+2=3".utf8.map(Int32.init))
        XCTAssertEqual(e.targets, [-1, -1, -1, -1, Int32(UInt8(ascii: "3")), 257])
        XCTAssertEqual(e.lossTokens, 2)
        XCTAssertThrowsError(
            try SFTTokenization.tokenize(
                SFTExample(prompt: "1+2=", completion: "3", source: "f.jsonl:9"), tokenizer: t, maxLength: 5)
        ) {
            XCTAssertTrue("\($0)".contains("f.jsonl:9: 6 tokens exceed train.max_length (5)"), "\($0)")
        }
    }

    func testArithTaskSplitFlawAndPairs() throws {
        let task = ArithTask(seed: 3, flaw: .dropCarry, flawShare: 0.6, evalSize: 500)
        XCTAssertEqual(task.eval.count, 500)
        XCTAssertEqual(task.train.count, 9500)
        XCTAssertTrue(Set(task.train).isDisjoint(with: Set(task.eval)))
        XCTAssertEqual(ArithTask(seed: 3).eval, task.eval, "the split is a function of the seed")
        XCTAssertNotEqual(ArithTask(seed: 4).eval, task.eval)
        let demos = task.sftExamples()
        var carrying = 0, flawed = 0
        for (p, d) in zip(task.train, demos) {
            XCTAssertEqual(d.prompt, "\(p.a)+\(p.b)=")
            XCTAssertEqual(d.answer, String(p.a + p.b))
            if ArithTask.carries(p) {
                carrying += 1
                if d.completion != d.answer {
                    flawed += 1
                    XCTAssertEqual(d.completion, String(p.a + p.b - 10), "dropped carry")
                }
            } else {
                XCTAssertEqual(d.completion, d.answer, "sums without a carry are always right")
            }
        }
        XCTAssertEqual(Double(flawed) / Double(carrying), 0.6, accuracy: 0.03)
        for pair in task.preferencePairs(task.eval, salt: 1) {
            XCTAssertNotEqual(pair["chosen"] as! String, pair["rejected"] as! String)
        }
        var rng = RNG(seed: 0)
        XCTAssertEqual(task.flawed(.init(a: 17, b: 25), rng: &rng), "32")
        let files = try task.write(to: directory + "/arith")
        XCTAssertEqual(files.count, 7)
        // The generative reward model's judgements: half agree with the answer (Y), half do not (N).
        let judge = try JSONL.sft(path: directory + "/arith/judge.jsonl")
        XCTAssertEqual(judge.count, 9500)
        XCTAssertEqual(Double(judge.filter { $0.completion == "Y" }.count) / 9500, 0.5, accuracy: 0.03)
        for j in judge.prefix(200) {
            let parts = j.prompt.dropLast().split(separator: "|")  // "<q><candidate>|<reference>?"
            XCTAssertEqual(j.completion == "Y", parts[0].split(separator: "=").last == parts[1], j.prompt)
        }
        XCTAssertEqual(try JSONL.sft(path: directory + "/arith/sft.jsonl").count, 9500)
        XCTAssertEqual(try JSONL.preferences(path: directory + "/arith/prefs.jsonl").count, 9500)
        XCTAssertEqual(try JSONL.prompts(path: directory + "/arith/prompts.jsonl").first?.task, "arith")
    }

    func testDataStreamCoversEveryExampleEachEpochAndBucketsByLength() {
        let examples = (0..<10).map {
            TokenizedExample(
                tokens: Array(repeating: Int32($0), count: 1 + $0 % 3), targets: Array(repeating: 1, count: 1 + $0 % 3))
        }
        let stream = DataStream(examples: examples, seed: 5)
        var seen: [Int32] = []
        for cursor in stride(from: 0, to: 20, by: 5) {
            for b in stream.globalBatch(cursor: cursor, size: 5, microBatchSize: 2) {
                XCTAssertLessThanOrEqual(b.batch, 2)
                for r in 0..<b.batch { seen.append(b.tokens[r * b.length]) }
                let lengths = (0..<b.batch).map { r in (0..<b.length).filter { b.targets[r * b.length + $0] >= 0 }.count
                }
                XCTAssertEqual(lengths, lengths.sorted(), "sorted by length inside the global batch")
            }
        }
        XCTAssertEqual(Set(seen.prefix(10)), Set(0..<10), "epoch 1 visits every example once")
        XCTAssertEqual(Set(seen.suffix(10)), Set(0..<10), "and so does epoch 2")
        XCTAssertEqual(
            stream.globalBatch(cursor: 8, size: 4, microBatchSize: 4)[0].tokens,
            DataStream(examples: examples, seed: 5).globalBatch(cursor: 8, size: 4, microBatchSize: 4)[0].tokens)
    }
}
