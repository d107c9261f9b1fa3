import Foundation
@testable import Tokenizers
import XCTest

final class TokenizerTests: XCTestCase {
    struct Case: Decodable { let text: String; let ids: [Int32]; let decoded: String }
    struct Cases: Decodable { let cases: [Case] }

    var fixtures: String { Bundle.module.resourceURL!.appendingPathComponent("Fixtures").path }

    /// Ids equal Hugging Face `tokenizers` on 240 strings (Fixtures/make_bpe_fixture.py).
    func testBPEIdsMatchHuggingFaceTokenizers() throws {
        let tokenizer = try Tokenizers.load(fixtures + "/bpe")
        let cases = try JSONDecoder().decode(Cases.self, from: Data(contentsOf: URL(fileURLWithPath: fixtures + "/bpe-cases.json"))).cases
        XCTAssertGreaterThanOrEqual(cases.count, 200)
        var mismatches = 0
        for c in cases {
            let ids = tokenizer.encode(c.text)
            if ids != c.ids {
                mismatches += 1
                XCTFail("\(c.text.debugDescription): ours \(ids), tokenizers \(c.ids)")
            }
            XCTAssertEqual(tokenizer.decode(c.ids, skipSpecialTokens: false), c.decoded, c.text.debugDescription)
        }
        XCTAssertEqual(mismatches, 0)
        XCTAssertEqual(tokenizer.vocabSize, 801)
        XCTAssertEqual(tokenizer.eosTokenId, 0)
    }

    func testSpecialTokensAreSkippedOnRequest() throws {
        let tokenizer = try Tokenizers.load(fixtures + "/bpe/tokenizer.json")
        let ids = tokenizer.encode("a<|endoftext|>b<|assistant|>")
        XCTAssertTrue(ids.contains(0))
        XCTAssertTrue(ids.contains(800))
        XCTAssertEqual(tokenizer.decode(ids, skipSpecialTokens: true), "ab<|assistant|>", "only special tokens are skipped")
    }

    func testPreTokenizerFollowsGPT2Regex() {
        func split(_ s: String) -> [String] { ByteLevelPreTokenizer.split(s).map { String(String.UnicodeScalarView($0)) } }
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
        XCTAssertThrowsError(try Tokenizers.load(path)) { XCTAssertTrue("\($0)".contains("'WordPiece' is not supported"), "\($0)") }
        XCTAssertThrowsError(try Tokenizers.load(dir + "/missing.json")) { XCTAssertTrue("\($0)".contains("missing.json"), "\($0)") }
    }
}
