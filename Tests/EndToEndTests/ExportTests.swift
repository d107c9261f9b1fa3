import Foundation
import Kernels
import Models
import XCTest

/// `rlhf export`: the GGUF bytes are those gguf-py and transformers accepted, and an adapter is
/// merged into both formats.
final class ExportTests: CLITestCase {
    var fixtures: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent(
            "ModelsTests/Fixtures"
        ).path
    }

    func sha256(_ path: String) throws -> String {
        let p = Process(), out = Pipe()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
        p.arguments = [path]
        p.standardOutput = out
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return String(text.prefix(64))
    }

    /// Fixtures/make_gguf_fixtures.py --rlhf exported these, had gguf-py read them and transformers
    /// score them (≤ 1e-4 from `rlhf score`), and recorded their sha256: a fresh export is the same bytes.
    func testExportsAreTheBytesTransformersAccepted() throws {
        struct Entry: Decodable {
            let source: String
            let type: String
            let tokenizer: String?
            let sha256: String
            let max_logprob_error: Double
        }
        let record = try JSONDecoder().decode(
            [String: Entry].self, from: Data(contentsOf: URL(fileURLWithPath: fixtures + "/gguf-export.json")))
        XCTAssertEqual(Set(record.values.map(\.type)), ["f32", "f16", "q8_0"])
        for (name, e) in record.sorted(by: { $0.key < $1.key }) {
            XCTAssertLessThan(e.max_logprob_error, 1e-4, name)
            let out = directory + "/\(name).gguf"
            try run(
                ["export", "--model", fixtures + "/" + e.source, "--format", "gguf", "--type", e.type, "--out", out]
                    + (e.tokenizer.map { ["--tokenizer", $0] } ?? []))
            XCTAssertEqual(try sha256(out), e.sha256, name)
        }
    }

    /// A LoRA adapter (PEFT's format) is merged: the HF folder and the F32 GGUF score as the base
    /// model with the adapter does, and hold the same weights.
    func testAdapterIsMergedIntoBothFormats() throws {
        let base = try HFCheckpoint.load(directory: fixtures + "/mistral-tiny")
        let adapter = try LoRAAdapter(
            config: LoRAConfig(rank: 4, alpha: 8, targets: ["all-linear"]), modelConfig: base.config)
        var rng = RNG(seed: 11)
        for i in 0..<adapter.weights.count { adapter.weights[i] = (2 * rng.uniform() - 1) * 0.3 }
        try PEFTAdapter.save(adapter, directory: directory + "/adapter")
        try "# the adapter's own card\n".write(
            toFile: directory + "/adapter/README.md", atomically: true, encoding: .utf8)
        try run([
            "export", "--model", fixtures + "/mistral-tiny", "--adapter", directory + "/adapter", "--tokenizer", "none",
            "--format", "hf", "--out", directory + "/merged",
        ])
        try run([
            "export", "--model", fixtures + "/mistral-tiny", "--adapter", directory + "/adapter", "--tokenizer", "none",
            "--format", "gguf", "--out", directory + "/merged.gguf",
        ])
        let hf = try HFCheckpoint.load(directory: directory + "/merged"),
            gguf = try HFCheckpoint.load(directory: directory + "/merged.gguf")
        XCTAssertTrue(hf.weights.buffer.elementsEqual(gguf.weights.buffer))
        XCTAssertFalse(hf.weights.buffer.elementsEqual(base.weights.buffer), "the adapter changed the weights")
        let sequences: [[Int32]] = [[1, 5, 9, 40, 3, 7], [90, 2, 2, 61]]
        let expected = try base.scoreSequences(sequences, adapter: adapter)
        let merged = try hf.scoreSequences(sequences)
        for (a, b) in zip(expected.joined(), merged.joined()) { XCTAssertEqual(a, b, accuracy: 1e-5) }
        XCTAssertGreaterThan(
            zip(expected.joined(), try base.scoreSequences(sequences).joined()).map { abs($0 - $1) }.max()!, 1e-3,
            "the adapter matters for these sequences")
        // The folder's model card names the base model and the adapter, and carries the adapter's card.
        let card = try String(contentsOfFile: directory + "/merged/README.md", encoding: .utf8)
        XCTAssertTrue(
            card.hasPrefix("---\nbase_model: \"\(fixtures)/mistral-tiny\"\nlibrary_name: transformers\n"), card)
        XCTAssertTrue(card.contains("the LoRA adapter \(directory)/adapter merged into the weights"), card)
        XCTAssertTrue(card.hasSuffix("## The adapter's card\n\n# the adapter's own card\n\n"), card)
        // --type is a GGUF option.
        try run(
            [
                "export", "--model", fixtures + "/mistral-tiny", "--format", "hf", "--type", "q8_0", "--out",
                directory + "/x",
            ], expectExit: 64)
    }
}
