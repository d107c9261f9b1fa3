import Foundation
import XCTest

@testable import Tokenizers

final class TokenizerTests: XCTestCase {
    struct Case: Decodable {
        let text: String
        let ids: [Int32]
        let decoded: String
    }
    struct Cases: Decodable { let cases: [Case] }

    var fixtures: String { Bundle.module.resourceURL!.appendingPathComponent("Fixtures").path }

    /// The GPT-2-style fixture (Fixtures/make_bpe_fixture.py): its size and special tokens.
    func testGPT2StyleVocabularyAndSpecialTokens() throws {
        let tokenizer = try Tokenizers.load(fixtures + "/bpe")
        XCTAssertEqual(tokenizer.vocabSize, 801)
        XCTAssertEqual(
            [tokenizer.bosTokenId, tokenizer.eosTokenId], [0, 0], "<|endoftext|>, from tokenizer_config.json")
    }

    /// GPT-2's pipeline (Fixtures/make_bpe_fixture.py) and the ones real model files use
    /// (Fixtures/make_hf_tokenizer_fixtures.py): ids and decoded text equal tokenizers' on 240 hard strings each.
    func testIdsAndDecodedTextMatchHuggingFaceTokenizers() throws {
        for name in ["bpe", "qwen2-style", "sp", "sp-legacy", "smollm2-style"] {
            let tokenizer = try Tokenizers.load(fixtures + "/" + name)
            let cases = try JSONDecoder().decode(
                Cases.self, from: Data(contentsOf: URL(fileURLWithPath: fixtures + "/\(name)-cases.json"))
            ).cases
            XCTAssertGreaterThanOrEqual(cases.count, 200)
            var mismatches = 0
            for c in cases {
                let ids = tokenizer.encode(c.text)
                if ids != c.ids {
                    mismatches += 1
                    if mismatches <= 5 {
                        XCTFail("\(name) \(c.text.debugDescription): ours \(ids), tokenizers \(c.ids)")
                    }
                }
                let decoded = tokenizer.decode(c.ids, skipSpecialTokens: false)
                if decoded != c.decoded {
                    XCTFail(
                        "\(name) decode \(c.text.debugDescription): ours \(decoded.debugDescription), tokenizers "
                            + "\(c.decoded.debugDescription)"
                    )
                }
            }
            XCTAssertEqual(mismatches, 0, name)
        }
    }

    /// Where Unicode scalars and Swift's Characters disagree (a space, digit or ▁ before combining
    /// marks: Fixtures/make_scalar_cases.py), the pre-tokenizers cut by scalars, as tokenizers does.
    func testPreTokenizersCutByScalarsNotCharacters() throws {
        struct ScalarCases: Decodable { let cases: [String: [Case]] }
        struct Case: Decodable { let text: String, ids: [Int32] }
        let all = try JSONDecoder().decode(
            ScalarCases.self, from: Data(contentsOf: URL(fileURLWithPath: fixtures + "/scalar-cases.json")))
        XCTAssertEqual(all.cases.keys.sorted(), ["bpe", "qwen2-style", "smollm2-style", "sp", "sp-legacy"])
        for (name, cases) in all.cases.sorted(by: { $0.key < $1.key }) {
            // The tokenizer.json, and the same tokenizer rebuilt from a GGUF file where there is one.
            let files = [name] + (name == "sp-legacy" ? [] : [name + ".gguf"])
            for file in files {
                let tokenizer = try Tokenizers.load(fixtures + "/" + file)
                for c in cases {
                    XCTAssertEqual(tokenizer.encode(c.text), c.ids, "\(file) \(c.text.unicodeScalars.map { $0.value })")
                }
            }
        }
    }

    /// Special tokens come from tokenizer_config.json, never from token names.
    func testSpecialTokensComeFromTheConfig() throws {
        let qwen = try XCTUnwrap(try Tokenizers.load(fixtures + "/qwen2-style") as? BPETokenizer)
        XCTAssertNil(qwen.bosTokenId, "Qwen2 has no BOS")
        XCTAssertEqual(qwen.eosTokenId, qwen.id(of: "<|im_end|>"))
        XCTAssertEqual(qwen.padTokenId, qwen.id(of: "<|endoftext|>"))
        XCTAssertEqual(qwen.prefixTokens, [])
        XCTAssertTrue(qwen.config.chatTemplate?.contains("<|im_start|>") == true)
        let sp = try XCTUnwrap(try Tokenizers.load(fixtures + "/sp") as? BPETokenizer)
        XCTAssertEqual([sp.bosTokenId, sp.eosTokenId], [1, 2])
        XCTAssertEqual(sp.prefixTokens, [1], "add_bos_token")
        let smol = try XCTUnwrap(try Tokenizers.load(fixtures + "/smollm2-style") as? BPETokenizer)
        XCTAssertEqual(smol.bosTokenId, smol.id(of: "<|im_start|>"))
        XCTAssertEqual(smol.prefixTokens, [], "a BOS that add_bos_token does not add")
        // A config naming a token the file lacks is an error naming both.
        let dir = NSTemporaryDirectory() + "tok-config-\(getpid())"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.copyItem(atPath: fixtures + "/sp", toPath: dir)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try #"{"eos_token": "<|eot|>"}"#.write(
            toFile: dir + "/tokenizer_config.json", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try Tokenizers.load(dir)) {
            XCTAssertTrue("\($0)".contains("eos_token '<|eot|>' is not a token of"), "\($0)")
        }
    }

    /// Canonically equivalent tokens stay distinct ("à" and "a" + U+0300 are two ids); Llama 3's
    /// Sequence post-processor adds its BOS; Metaspace decoding drops the first token's markers.
    func testExactTokensSequencePostProcessorAndMetaspaceDecoding() throws {
        let dir = NSTemporaryDirectory() + "tok-exact-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let json = [
            #"{"model": {"type": "BPE", "vocab": {"\u00e0": 0, "a\u0300": 1, "a": 2, "\u0300": 3, "<s>": 4, "#,
            #""\u2581": 5, "b": 6, "\u2581\u2581": 7}, "merges": ["a \u0300"]}, "added_tokens": [{"id": 4, "#,
            #""content": "<s>", "special": true}], "pre_tokenizer": {"type": "Metaspace", "replacement": "#,
            #""\u2581", "prepend_scheme": "always", "split": false}, "decoder": {"type": "Metaspace", "#,
            #""replacement": "\u2581", "prepend_scheme": "always"}, "post_processor": {"type": "#,
            #""Sequence", "processors": [{"type": "ByteLevel"}, {"type": "TemplateProcessing", "#,
            #""single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "#,
            #""A", "type_id": 0}}]}]}}"#,
        ].joined()
        try json
            .write(toFile: dir + "/tokenizer.json", atomically: true, encoding: .utf8)
        try #"{"bos_token": "<s>"}"#.write(toFile: dir + "/tokenizer_config.json", atomically: true, encoding: .utf8)
        let t = try XCTUnwrap(try Tokenizers.load(dir) as? BPETokenizer)
        XCTAssertEqual(t.encode("\u{e0}"), [5, 0])
        XCTAssertEqual(t.encode("a\u{300}"), [5, 1], "the decomposed form has its own id")
        XCTAssertEqual(t.prefixTokens, [4], "BOS from the TemplateProcessing inside a Sequence")
        XCTAssertEqual(
            t.decode([7, 6, 5, 6]), "b b", "every marker of the first token is dropped, later ones become spaces")
    }

    func testSpecialTokensAreSkippedOnRequest() throws {
        let tokenizer = try Tokenizers.load(fixtures + "/bpe/tokenizer.json")
        let ids = tokenizer.encode("a<|endoftext|>b<|assistant|>")
        XCTAssertTrue(ids.contains(0))
        XCTAssertTrue(ids.contains(800))
        XCTAssertEqual(
            tokenizer.decode(ids, skipSpecialTokens: true), "ab<|assistant|>", "only special tokens are skipped")
    }

    func testPreTokenizerFollowsGPT2Regex() {
        func split(_ s: String) -> [String] {
            ByteLevelPreTokenizer.split(s).map { String(String.UnicodeScalarView($0)) }
        }
        XCTAssertEqual(split("Hello world's  end\n"), ["Hello", " world", "'s", " ", " end", "\n"])
        XCTAssertEqual(split("a   b"), ["a", "  ", " b"])
        XCTAssertEqual(split("x\t\ty"), ["x", "\t", "\t", "y"])
        XCTAssertEqual(split("12+34 = 46!!"), ["12", "+", "34", " =", " 46", "!!"])
        XCTAssertEqual(split("it'S"), ["it", "'", "S"])
        XCTAssertEqual(split(" "), [" "])
    }

    func testByteTokenizerRoundTripsAnyText() {
        let t = ByteTokenizer()
        let text = "héllo 👩‍💻\n\t0"
        let ids = t.encode(text)
        XCTAssertEqual(ids.count, text.utf8.count)
        XCTAssertEqual(t.decode(ids + [ByteTokenizer.eos], skipSpecialTokens: true), text)
        XCTAssertEqual(t.decode([ByteTokenizer.bos] + ids, skipSpecialTokens: false), "<|bos|>" + text)
        XCTAssertEqual(t.vocabSize, 258)
    }

    func testUnsupportedTokenizerFilesAreRejectedByName() throws {
        let dir = NSTemporaryDirectory() + "tok-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/tokenizer.json"
        try #"{"model": {"type": "WordPiece", "vocab": {}}}"#.write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try Tokenizers.load(path)) {
            XCTAssertTrue("\($0)".contains("'WordPiece' is not supported"), "\($0)")
        }
        try #"{"model": {"type": "BPE", "vocab": {"a": 0}}, "pre_tokenizer": {"type": "Whitespace"}}"#.write(
            toFile: path, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try Tokenizers.load(path)) {
            XCTAssertTrue("\($0)".contains("pre_tokenizer type 'Whitespace' is not supported"), "\($0)")
        }
        try #"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}}"#.write(
            toFile: path, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try Tokenizers.load(path)) {
            XCTAssertTrue("\($0)".contains("merge 0 (a b) uses 'b', which is not in the vocabulary"), "\($0)")
        }
        XCTAssertThrowsError(try Tokenizers.load(dir + "/missing.json")) {
            XCTAssertTrue("\($0)".contains("missing.json"), "\($0)")
        }
    }
}
