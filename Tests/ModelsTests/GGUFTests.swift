import Foundation
import GGUF
import XCTest

@testable import Models

/// GGUF files read as llama.cpp's gguf-py writes and reads them (Fixtures/make_gguf_fixtures.py),
/// models as transformers computes them from the same files.
final class GGUFTests: XCTestCase {
    struct TypeCase: Decodable {
        let type: String
        let shape: [Int]
        let values: [Float]
    }
    struct TypeFixture: Decodable { let tensors: [String: TypeCase] }
    struct LogProbs: Decodable {
        let sequences: [[Int32]]
        let logprobs: [[Double]]
    }

    var typesFile: String { fixturesDirectory() + "/gguf-types.gguf" }

    /// Every supported tensor type dequantises to exactly gguf-py's values.
    func testEveryTensorTypeMatchesGGUFPyExactly() throws {
        let file = try GGUFFile(path: typesFile)
        let expected = try JSONDecoder().decode(
            TypeFixture.self, from: Data(contentsOf: URL(fileURLWithPath: fixturesDirectory() + "/gguf-types.json")))
        XCTAssertEqual(
            Set(expected.tensors.values.map(\.type)), Set(GGMLType.allCases.map(\.name)),
            "the fixture covers every type")
        for (name, want) in expected.tensors.sorted(by: { $0.key < $1.key }) {
            let info = try XCTUnwrap(file.tensor(name))
            XCTAssertEqual(info.type.name, want.type)
            XCTAssertEqual(info.shape, want.shape, name)
            let got = try file.floats(name)
            let differing = zip(got, want.values).filter { $0.0.bitPattern != $0.1.bitPattern }.count
            XCTAssertEqual(differing, 0, "\(name): \(differing) of \(got.count) values differ from gguf-py's")
            XCTAssertGreaterThan(Set(got).count, 8, "\(name) holds varied values")
        }
    }

    /// Metadata of every value type, nested arrays included, in file order.
    func testMetadataOfEveryValueType() throws {
        let file = try GGUFFile(path: typesFile)
        XCTAssertEqual(file.version, 3)
        XCTAssertEqual(file["test.u8"], .uint8(200))
        XCTAssertEqual(file["test.i8"], .int8(-100))
        XCTAssertEqual(file["test.u16"], .uint16(60000))
        XCTAssertEqual(file["test.i16"], .int16(-30000))
        XCTAssertEqual(file["test.u32"], .uint32(4_000_000_000))
        XCTAssertEqual(file["test.i32"], .int32(-2_000_000_000))
        XCTAssertEqual(file["test.f32"], .float32(0.1))
        XCTAssertEqual(file["test.bool"], .bool(true))
        XCTAssertEqual(file["test.string"], .string("héllo 🙂"))
        XCTAssertEqual(file["test.u64"], .uint64(1 << 63 + 5))
        XCTAssertEqual(file["test.i64"], .int64(-(1 << 62)))
        XCTAssertEqual(file["test.f64"], .float64(1e-300))
        XCTAssertEqual(file["test.strings"], .array(.string, [.string("a"), .string(""), .string("ü")]))
        XCTAssertEqual(file["test.ints"]?.array?.compactMap(\.int), [1, -2, 3])
        XCTAssertEqual(
            file["test.nested"], .array(.array, [.array(.int32, [.int32(1), .int32(2)]), .array(.int32, [.int32(3)])]))
        XCTAssertEqual(file["general.architecture"], .string("llama"))
        XCTAssertEqual(file.metadata.first?.key, "general.architecture", "file order")
        XCTAssertEqual(file.alignment, 32)
    }

    /// A `llama` file (Q/K rows permuted by the converter) and a `qwen2` file (not permuted), with
    /// tensors of every type: log-probs equal transformers' for the same GGUF within 1e-4.
    func testLlamaAndQwen2GGUFLogProbsMatchTransformers() throws {
        for name in ["llama-gguf", "qwen2-gguf"] {
            let trunk = try HFCheckpoint.load(directory: fixturesDirectory() + "/\(name).gguf")
            let golden = try JSONDecoder().decode(
                LogProbs.self,
                from: Data(contentsOf: URL(fileURLWithPath: fixturesDirectory() + "/\(name)-logprobs.json")))
            let scores = try trunk.scoreSequences(golden.sequences, batchSize: 2)
            var worst = 0.0
            for (ours, theirs) in zip(scores, golden.logprobs) {
                XCTAssertEqual(ours.count, theirs.count)
                for (a, b) in zip(ours, theirs) { worst = max(worst, abs(Double(a) - b)) }
            }
            XCTAssertLessThan(worst, 1e-4, name)
            let config = try XCTUnwrap(trunk.config as? LlamaConfig)
            XCTAssertEqual(
                [config.layers, config.channels, config.heads, config.kvHeads, config.innerSize], [2, 256, 4, 2, 256])
            XCTAssertEqual(config.tiedEmbeddings, name == "qwen2-gguf", "a file without output.weight ties the head")
            XCTAssertEqual(config.qkvBias, name == "qwen2-gguf")
        }
    }

    /// The row permutation and its inverse: llama.cpp's interleaving undone gives the rows back.
    func testRotaryRowPermutationRoundTrips() {
        var rows = (0..<(3 * 8 * 2)).map(Float.init)  // 3 heads of d = 8, 2 columns
        let original = rows
        rows.withUnsafeMutableBufferPointer {
            GGUFModel.unpermuteRotaryRows($0.baseAddress!, rows: 24, columns: 2, heads: 3, inverse: true)
        }
        XCTAssertNotEqual(rows, original)
        // Head 0, row 1 of the file is transformers' row 4 (second rotary half, i = 0).
        XCTAssertEqual(Array(rows[2..<4]), [8, 9])
        rows.withUnsafeMutableBufferPointer {
            GGUFModel.unpermuteRotaryRows($0.baseAddress!, rows: 24, columns: 2, heads: 3)
        }
        XCTAssertEqual(rows, original)
    }

    /// llama.cpp names ↔ transformers names, both ways, for every tensor of a model with biases.
    func testTensorNamesMapBothWays() throws {
        let file = try GGUFFile(path: fixturesDirectory() + "/qwen2-gguf.gguf")
        for info in file.tensors {
            let hf = try XCTUnwrap(GGUFModel.hfName(of: info.name), info.name)
            XCTAssertEqual(GGUFModel.ggufName(of: hf), info.name)
        }
        XCTAssertEqual(GGUFModel.hfName(of: "blk.3.attn_q.bias"), "layers.3.self_attn.q_proj.bias")
        XCTAssertEqual(GGUFModel.hfName(of: "blk.0.ffn_norm.weight"), "layers.0.post_attention_layernorm.weight")
        XCTAssertNil(GGUFModel.hfName(of: "blk.x.attn_q.weight"))
        XCTAssertNil(GGUFModel.hfName(of: "rope_freqs.weight"))
    }

    /// Truncated at every length, or with counts, lengths, types and offsets corrupted: always an
    /// error naming the file and the problem, never a crash.
    func testMalformedFilesGiveErrorsNotCrashes() throws {
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: typesFile)))
        let dir = NSTemporaryDirectory() + "gguf-bad-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func attempt(_ b: [UInt8], _ label: String) -> String? {
            let path = dir + "/bad.gguf"
            _ = FileManager.default.createFile(atPath: path, contents: Data(b))
            do {
                _ = try GGUFFile(path: path)
                return nil
            } catch {
                XCTAssertTrue("\(error)".hasPrefix(path), "\(label): \(error)")
                return "\(error)"
            }
        }
        func patched(_ offset: Int, _ value: UInt64, width: Int = 8) -> [UInt8] {
            var b = bytes
            for i in 0..<width { b[offset + i] = UInt8((value >> (8 * UInt64(i))) & 0xFF) }
            return b
        }
        // Every truncation before the end of the last tensor's data.
        let whole = try GGUFFile(path: typesFile)
        let end = whole.dataStart + whole.tensors.map { $0.offset + $0.byteCount }.max()!
        XCTAssertLessThanOrEqual(end, bytes.count)
        var refused = 0
        for n in 0..<end where attempt(Array(bytes[..<n]), "truncated to \(n)") != nil { refused += 1 }
        XCTAssertEqual(refused, end, "every truncation is refused")
        XCTAssertTrue(attempt(patched(0, 0x46554748, width: 4), "magic")?.contains("not a GGUF file") == true)
        XCTAssertTrue(attempt(patched(4, 1, width: 4), "version")?.contains("version 1") == true)
        XCTAssertTrue(attempt(patched(8, UInt64(1) << 60), "tensor count")?.contains("tensor count") == true)
        XCTAssertTrue(attempt(patched(16, UInt64(1) << 62), "metadata count")?.contains("metadata count") == true)
        XCTAssertTrue(attempt(patched(24, UInt64(1) << 50), "key length")?.contains("runs past the end") == true)
        // The first key's value type (after the 8-byte length and the key itself).
        let keyLength = Int(bytes[24])
        XCTAssertTrue(
            attempt(patched(32 + keyLength, 99, width: 4), "value type")?.contains("unknown value type 99") == true)
        // A tensor's type and offset: find the first tensor info by its name.
        let name = Array("t.F32".utf8)
        let at = try XCTUnwrap((0..<(bytes.count - name.count)).first { Array(bytes[$0..<($0 + name.count)]) == name })
        let typeOffset = at + name.count + 4 + 2 * 8
        XCTAssertTrue(attempt(patched(typeOffset, 6, width: 4), "tensor type")?.contains("Q5_0") == true)
        XCTAssertTrue(attempt(patched(typeOffset, 77, width: 4), "tensor type")?.contains("type 77") == true)
        XCTAssertTrue(
            attempt(patched(typeOffset + 4, 7), "offset")?.contains("not a multiple of the alignment") == true)
        XCTAssertTrue(
            attempt(patched(typeOffset + 4, UInt64(1) << 40), "offset")?.contains("outside the data section") == true)
        XCTAssertTrue(attempt(patched(at + name.count, 9, width: 4), "rank")?.contains("9 dimensions") == true)
        XCTAssertTrue(
            attempt(patched(at + name.count + 4, 0), "dimension")?.contains("dimension 0 out of range") == true)
        XCTAssertFalse(GGUFFile.isGGUF(path: fixturesDirectory() + "/llama-tiny/model.safetensors"))
        XCTAssertTrue(GGUFFile.isGGUF(path: typesFile))
    }

    /// A GGUF whose metadata disagrees with its tensors, or names what is not computed, is refused by name.
    func testInconsistentModelFilesAreRefusedByName() throws {
        let file = try GGUFFile(path: fixturesDirectory() + "/llama-gguf.gguf")
        XCTAssertEqual(try GGUFModel.configuration(file).layers, 2)
        XCTAssertThrowsError(try GGUFModel.load(try GGUFFile(path: typesFile))) {
            XCTAssertTrue("\($0)".contains("missing llama.embedding_length") || "\($0)".contains("token_embd"), "\($0)")
        }
    }
}
