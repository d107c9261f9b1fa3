import Foundation
import GGUF
import XCTest

@testable import Tokenizers

/// Tokenizers rebuilt from GGUF metadata (Fixtures/*.gguf, made by
/// Tests/ModelsTests/Fixtures/make_gguf_fixtures.py from the tokenizer.json fixtures here) encode
/// as the tokenizer.json they came from.
final class GGUFTokenizerTests: XCTestCase {
    struct Case: Decodable {
        let text: String
        let ids: [Int32]
        let decoded: String
    }
    struct Cases: Decodable { let cases: [Case] }
    var fixtures: String { Bundle.module.resourceURL!.appendingPathComponent("Fixtures").path }

    /// gpt2 with pre "smollm", "qwen2" and "gpt-2"; llama (SentencePiece scores → merges).
    func testGGUFTokenizersEncodeAsTheirTokenizerJSON() throws {
        for name in ["smollm2-style", "qwen2-style", "bpe", "sp"] {
            let tokenizer = try Tokenizers.load(fixtures + "/\(name).gguf")
            let cases = try JSONDecoder().decode(
                Cases.self, from: Data(contentsOf: URL(fileURLWithPath: fixtures + "/\(name)-cases.json"))
            ).cases
            var mismatches = 0
            for c in cases where tokenizer.encode(c.text) != c.ids {
                mismatches += 1
                if mismatches <= 3 {
                    XCTFail(
                        "\(name) \(c.text.debugDescription): ours \(tokenizer.encode(c.text)), tokenizer.json \(c.ids)")
                }
            }
            XCTAssertEqual(mismatches, 0, name)
            for c in cases.prefix(60) {
                XCTAssertEqual(tokenizer.decode(c.ids, skipSpecialTokens: false), c.decoded, name)
            }
        }
    }

    /// Special ids, BOS adding and the chat template come from the metadata.
    func testSpecialTokensAndChatTemplateFromMetadata() throws {
        let smol = try XCTUnwrap(try Tokenizers.load(fixtures + "/smollm2-style.gguf") as? BPETokenizer)
        XCTAssertEqual([smol.bosTokenId, smol.eosTokenId], [1, 2])
        XCTAssertEqual(smol.prefixTokens, [], "add_bos_token false")
        let text = try XCTUnwrap(smol.chat).render(
            [.object(JinjaObject([("role", .string("user")), ("content", .string("hi"))]))], addGenerationPrompt: false)
        XCTAssertEqual(text, "<|im_start|>user\nhi<|im_end|>\n")
        XCTAssertEqual(smol.encode("<|im_start|>")[0], 1, "control tokens are cut out of text")
        let sp = try XCTUnwrap(try Tokenizers.load(fixtures + "/sp.gguf") as? BPETokenizer)
        XCTAssertEqual(sp.prefixTokens, [1], "add_bos_token true")
    }

    /// Saved into a folder (as checkpoints and exports do), the converted tokenizer reloads as a
    /// tokenizer.json that encodes the same.
    func testConvertedTokenizerSavesAsTokenizerJSON() throws {
        let dir = NSTemporaryDirectory() + "gguf-tok-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for name in ["smollm2-style", "sp"] {
            try? FileManager.default.removeItem(atPath: dir + "/\(name)")
            try FileManager.default.createDirectory(atPath: dir + "/\(name)", withIntermediateDirectories: true)
            let converted = try XCTUnwrap(try Tokenizers.load(fixtures + "/\(name).gguf") as? BPETokenizer)
            try converted.save(into: dir + "/\(name)")
            let reloaded = try XCTUnwrap(try Tokenizers.load(dir + "/\(name)") as? BPETokenizer)
            let cases = try JSONDecoder().decode(
                Cases.self, from: Data(contentsOf: URL(fileURLWithPath: fixtures + "/\(name)-cases.json"))
            ).cases
            XCTAssertEqual(cases.filter { reloaded.encode($0.text) != $0.ids }.count, 0, name)
            XCTAssertEqual([reloaded.bosTokenId, reloaded.eosTokenId], [converted.bosTokenId, converted.eosTokenId])
            XCTAssertEqual(reloaded.vocabSize, converted.vocabSize)
            XCTAssertEqual(reloaded.prefixTokens, converted.prefixTokens)
            XCTAssertEqual(reloaded.config.chatTemplate, converted.config.chatTemplate)
        }
    }

    /// The other direction (rlhf export): each tokenizer.json fixture written as tokenizer.ggml
    /// metadata reads back encoding its cases as before; the byte tokenizer becomes 256 byte tokens.
    func testTokenizerJSONWrittenAsGGUFMetadataEncodesTheSame() throws {
        let dir = NSTemporaryDirectory() + "gguf-tok-out-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for name in ["bpe", "qwen2-style", "smollm2-style", "sp", "sp-legacy"] {
            let original = try Tokenizers.load(fixtures + "/" + name)
            var writer = GGUFWriter()
            for (key, value) in try GGUFTokenizer.metadata(for: original, vocabSize: original.vocabSize + 3) {
                writer.set(key, value)
            }
            try writer.write(to: dir + "/\(name).gguf")
            let tokenizer = try Tokenizers.load(dir + "/\(name).gguf")
            XCTAssertEqual(tokenizer.vocabSize, original.vocabSize + 3, "padded to the model's vocabulary")
            XCTAssertEqual(
                [tokenizer.bosTokenId, tokenizer.eosTokenId], [original.bosTokenId, original.eosTokenId], name)
            XCTAssertEqual(tokenizer.prefixTokens, original.prefixTokens, name)
            let cases = try JSONDecoder().decode(
                Cases.self, from: Data(contentsOf: URL(fileURLWithPath: fixtures + "/\(name)-cases.json"))
            ).cases
            // GGUF's llama tokenizer has one rule for the ▁ prefix, transformers' (Metaspace: none
            // added before a text that starts with a space); a legacy tokenizer.json adds it anyway.
            let wrong = cases.filter {
                tokenizer.encode($0.text) != $0.ids && !(name == "sp-legacy" && $0.text.hasPrefix(" "))
            }
            let shown = wrong.prefix(2).map { "\($0.text.debugDescription): \(tokenizer.encode($0.text)) vs \($0.ids)" }
            XCTAssertEqual(wrong.count, 0, "\(name): \(shown)")
        }
        var writer = GGUFWriter()
        for (key, value) in try GGUFTokenizer.metadata(for: ByteTokenizer(), vocabSize: 258) { writer.set(key, value) }
        try writer.write(to: dir + "/byte.gguf")
        let bytes = try Tokenizers.load(dir + "/byte.gguf")
        let text = "héllo, wörld 🙂 12+34"
        XCTAssertEqual(bytes.encode(text), ByteTokenizer().encode(text))
        XCTAssertEqual(bytes.decode(bytes.encode(text), skipSpecialTokens: true), text)
        XCTAssertEqual([bytes.bosTokenId, bytes.eosTokenId, bytes.prefixTokens.first], [256, 257, 256])
    }

    /// A file without a tokenizer, or with one we cannot rebuild, is refused by name.
    func testUnsupportedGGUFTokenizersAreRefusedByName() throws {
        let dir = NSTemporaryDirectory() + "gguf-tok-bad-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: fixtures + "/smollm2-style.gguf")))
        // Rename the pre-tokenizer "smollm" to "smolxx": an unknown pre-tokenizer.
        let word = Array("smollm".utf8)
        let at = try XCTUnwrap((0..<(bytes.count - word.count)).first { Array(bytes[$0..<($0 + word.count)]) == word })
        bytes.replaceSubrange((at + 4)..<(at + 6), with: Array("xx".utf8))
        FileManager.default.createFile(atPath: dir + "/x.gguf", contents: Data(bytes))
        XCTAssertThrowsError(try Tokenizers.load(dir + "/x.gguf")) {
            XCTAssertTrue("\($0)".contains("tokenizer.ggml.pre 'smolxx' is not supported"), "\($0)")
        }
    }
}
