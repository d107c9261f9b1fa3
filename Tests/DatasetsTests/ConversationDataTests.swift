import Datasets
import Foundation
import Tokenizers
import XCTest

/// TRL's conversational datasets through the tokenizer's chat template (the ChatML Qwen2-style
/// fixture of Tests/TokenizersTests/Fixtures): the SFT loss covers exactly the assistant turns.
final class ConversationDataTests: XCTestCase {
    var tokenizerFolder: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent(
            "TokenizersTests/Fixtures/qwen2-style"
        ).path
    }

    func write(_ lines: [String]) throws -> String {
        let path = NSTemporaryDirectory() + "conv-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).jsonl"
        try lines.joined(separator: "\n").write(toFile: path, atomically: true, encoding: .utf8)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }

    /// The mask printed against the rendered text: trained tokens are exactly the assistant
    /// replies with their end-of-turn, nothing of the system, user or role headers.
    func testSFTOnMessagesMasksExactlyTheAssistantTokens() throws {
        let tokenizer = try Tokenizers.load(tokenizerFolder)
        // List-form content goes to the template as is; this ChatML template concatenates strings, so
        // transformers raises on it, and so do we, naming the line.
        let path = try write([
            #"{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}, "#
                + #"{"role": "assistant", "content": "4"}, {"role": "user", "content": "and 3+3?"}, {"role": "#
                + #""assistant", "content": [{"type": "text", "text": "6"}]}]}"#
        ])
        let text = try write([
            #"{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}, "#
                + #"{"role": "assistant", "content": "4"}, {"role": "user", "content": "and 3+3?"}, {"role": "#
                + #""assistant", "content": "6"}]}"#
        ])
        XCTAssertThrowsError(
            try JSONL.sft(path: path, chat: tokenizer.chat).map {
                try SFTTokenization.tokenize($0, tokenizer: tokenizer, maxLength: 512)
            }
        ) {
            XCTAssertTrue("\($0)".contains(":1: "), "the template's error names the line: \($0)")
        }
        let example = try XCTUnwrap(try JSONL.sft(path: text, chat: tokenizer.chat).first)
        let tokenized = try SFTTokenization.tokenize(example, tokenizer: tokenizer, maxLength: 512)
        let sequence = tokenized.tokens + [tokenized.targets.last!]
        var trained = "", shown = ""
        for (t, id) in sequence.enumerated() {
            let piece = tokenizer.decode([id], skipSpecialTokens: false)
            let counts = t > 0 && tokenized.targets[t - 1] >= 0
            if counts { trained += piece }
            shown += counts ? "[\(piece)]" : piece
        }
        print("mask over the rendered conversation ([trained]):\n" + shown)
        XCTAssertEqual(trained, "4<|im_end|>\n6<|im_end|>\n", shown)
        XCTAssertEqual(
            tokenizer.decode(sequence, skipSpecialTokens: false),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
                + "<|im_start|>assistant\n4<|im_end|>\n<|im_start|>user\nand 3+3?<|im_end|>\n"
                + "<|im_start|>assistant\n6<|im_end|>\n"
        )
        XCTAssertEqual(example.completion, "6<|im_end|>\n")
        XCTAssertTrue(example.prompt.hasSuffix("<|im_start|>assistant\n"), "the prompt ends with the generation prompt")
    }

    func testPreferenceAndPromptRowsRenderWithTheGenerationPrompt() throws {
        let tokenizer = try Tokenizers.load(tokenizerFolder)
        let prefs = try write([
            #"{"prompt": [{"role": "user", "content": "Capital of France?"}], "chosen": [{"role": "assistant", "#
                + #""content": "Paris"}], "rejected": [{"role": "assistant", "content": "Rome"}]}"#
        ])
        let pair = try XCTUnwrap(try JSONL.preferences(path: prefs, chat: tokenizer.chat).first)
        XCTAssertEqual(pair.prompt, "<|im_start|>user\nCapital of France?<|im_end|>\n<|im_start|>assistant\n")
        XCTAssertEqual([pair.chosen, pair.rejected], ["Paris<|im_end|>\n", "Rome<|im_end|>\n"])
        let prompts = try write([
            #"{"prompt": [{"role": "user", "content": "Hi"}], "answer": "Hello"}"#, #"{"prompt": "plain text"}"#,
        ])
        let rows = try JSONL.prompts(path: prompts, chat: tokenizer.chat)
        XCTAssertEqual(rows.map(\.prompt), ["<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", "plain text"])
        // Without a chat template a conversation is an error naming the file, line and field.
        XCTAssertThrowsError(try JSONL.prompts(path: prompts, chat: nil)) {
            XCTAssertTrue(
                "\($0)".contains("\(prompts):1: 'prompt' is a conversation, which needs a chat template"), "\($0)")
        }
        let bad = try write([#"{"messages": [{"content": "no role"}]}"#])
        XCTAssertThrowsError(try JSONL.sft(path: bad, chat: tokenizer.chat)) {
            XCTAssertTrue("\($0)".contains(":1: messages[0] must be an object with a string 'role'"), "\($0)")
        }
    }
}
