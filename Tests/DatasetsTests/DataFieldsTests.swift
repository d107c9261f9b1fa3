import Datasets
import Foundation
import Tokenizers
import XCTest

/// Data as it comes (issue 29, point 2): field names mapped by data.*_key, JSON arrays as well as
/// JSONL, ShareGPT conversations; errors still name the file, the line or element, and the field
/// as the dataset names it.
final class DataFieldsTests: XCTestCase {
    var tokenizerFolder: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent(
            "TokenizersTests/Fixtures/qwen2-style"
        ).path
    }

    func write(_ text: String, ext: String = "jsonl") throws -> String {
        let path = NSTemporaryDirectory() + "fields-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).\(ext)"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }

    func notes(_ names: [String: String]) -> DataNotes { DataNotes(fields: DataFields(names)) }

    func testPromptsOfAJSONArrayWithOtherFieldNames() throws {
        // GSM8K-style: question/answer, exported by Hugging Face datasets as one JSON array.
        let path = try write(
            #"[{"question": "1+1=", "answer": "2", "level": 1}, {"question": "2+3=", "answer": "5", "level": 2}]"#,
            ext: "json")
        let rows = try JSONL.prompts(path: path, notes: notes(["prompt": "question"]))
        XCTAssertEqual(rows.map(\.prompt), ["1+1=", "2+3="])
        XCTAssertEqual(rows.map(\.answer), ["2", "5"])
        XCTAssertEqual(rows.map(\.source), ["\(path): element 1", "\(path): element 2"])
        XCTAssertEqual(rows[1].extras, ["level": "2"], "the other fields travel on, under their own names")
        // The same without the mapping: the error names the element and our field.
        XCTAssertThrowsError(try JSONL.prompts(path: path)) {
            XCTAssertEqual("\($0)", "\(path): element 1: missing field 'prompt'")
        }
    }

    func testDemonstrationsAndPairsUnderTheirOwnNames() throws {
        let sft = try write(#"{"instruction": "Say hi", "output": "hi", "solution": "hi"}"#)
        let mapped = notes(["prompt": "instruction", "completion": "output", "answer": "solution"])
        let example = try XCTUnwrap(try JSONL.sft(path: sft, notes: mapped).first)
        XCTAssertEqual([example.prompt, example.completion, example.answer], ["Say hi", "hi", "hi"])
        let prefs = try write(#"{"question": "q", "good": "a", "bad": "b"}"#)
        let pair = try XCTUnwrap(
            try JSONL.preferences(
                path: prefs, notes: notes(["prompt": "question", "chosen": "good", "rejected": "bad"])
            )
            .first)
        XCTAssertEqual([pair.prompt, pair.chosen, pair.rejected], ["q", "a", "b"])
        // A missing mapped field is named as the dataset names it, with its key.
        let short = try write(#"{"instruction": "Say hi"}"#)
        XCTAssertThrowsError(try JSONL.sft(path: short, notes: mapped)) {
            XCTAssertEqual("\($0)", "\(short):1: missing field 'output' (data.completion_key)")
        }
        // Both the mapped field and ours: which one is meant is not guessed.
        let both = try write(#"{"instruction": "x", "prompt": "y", "output": "z"}"#)
        XCTAssertThrowsError(try JSONL.sft(path: both, notes: mapped)) {
            XCTAssertTrue(
                "\($0)".contains(":1: the row has both 'instruction' (data.prompt_key) and 'prompt'"), "\($0)")
        }
        // Names may swap.
        let swapped = try write(#"{"prompt": "the answer", "completion": "the question"}"#)
        let s = try XCTUnwrap(
            try JSONL.sft(path: swapped, notes: notes(["prompt": "completion", "completion": "prompt"])).first)
        XCTAssertEqual([s.prompt, s.completion], ["the question", "the answer"])
    }

    func testShareGPTConversationsAreTRLMessages() throws {
        let tokenizer = try Tokenizers.load(tokenizerFolder)
        let shareGPT = try write(
            #"{"conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "2+2?"}, "#
                + #"{"from": "gpt", "value": "4"}]}"#)
        let messages = try write(
            #"{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}, "#
                + #"{"role": "assistant", "content": "4"}]}"#)
        let a = try XCTUnwrap(try JSONL.sft(path: shareGPT, chat: tokenizer.chat, notes: DataNotes()).first)
        let b = try XCTUnwrap(try JSONL.sft(path: messages, chat: tokenizer.chat).first)
        XCTAssertEqual(a.spans, b.spans)
        XCTAssertEqual(a.completion, b.completion)
        // A field of another name holding the turns, through data.messages_key.
        let dialog = try write(#"[{"dialog": [{"from": "human", "value": "2+2?"}, {"from": "gpt", "value": "4"}]}]"#)
        let c = try XCTUnwrap(
            try JSONL.sft(path: dialog, chat: tokenizer.chat, notes: notes(["messages": "dialog"])).first)
        XCTAssertEqual(c.completion, "4<|im_end|>\n")
        let odd = try write(#"{"conversations": [{"from": "narrator", "value": "Once"}]}"#)
        XCTAssertThrowsError(try JSONL.sft(path: odd, chat: tokenizer.chat)) {
            XCTAssertTrue("\($0)".contains(":1: messages[0].from 'narrator' is not a ShareGPT speaker"), "\($0)")
        }
    }

    func testAJSONArrayMustHoldObjects() throws {
        let path = try write(#"[{"prompt": "a"}, 3]"#, ext: "json")
        XCTAssertThrowsError(try JSONL.prompts(path: path)) {
            XCTAssertEqual("\($0)", "\(path): element 2: not a JSON object")
        }
        let broken = try write(#"[{"prompt": "a"}"#, ext: "json")
        XCTAssertThrowsError(try JSONL.prompts(path: broken)) { XCTAssertTrue("\($0)".hasPrefix("\(broken): ")) }
    }
}
