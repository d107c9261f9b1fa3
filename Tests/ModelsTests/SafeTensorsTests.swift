import Foundation
import Kernels
import Models
import XCTest

final class SafeTensorsTests: XCTestCase {
    var directory = ""
    override func setUp() { directory = temporaryDirectory(name) }
    override func tearDown() { try? FileManager.default.removeItem(atPath: directory) }

    /// Writes a file from a header string and data bytes; `declaredLength` overrides the prefix.
    func write(header: String, data: [UInt8] = [], declaredLength: UInt64? = nil) -> String {
        var bytes = Data()
        withUnsafeBytes(of: (declaredLength ?? UInt64(header.utf8.count)).littleEndian) { bytes.append(contentsOf: $0) }
        bytes.append(contentsOf: Array(header.utf8))
        bytes.append(contentsOf: data)
        let path = directory + "/t\(UInt32.random(in: 0...UInt32.max)).safetensors"
        _ = FileManager.default.createFile(atPath: path, contents: bytes)
        return path
    }

    func assertFails(_ path: String, containing text: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try SafeTensorsFile(path: path), file: file, line: line) { error in
            XCTAssertTrue(
                "\(error)".contains(text), "error '\(error)' should mention '\(text)'", file: file, line: line)
            XCTAssertTrue("\(error)".contains(path), "error should name the file", file: file, line: line)
        }
    }

    func testMalformedFilesGiveClearErrors() {
        let truncated = directory + "/short.safetensors"
        _ = FileManager.default.createFile(atPath: truncated, contents: Data([1, 2, 3]))
        assertFails(truncated, containing: "truncated")
        assertFails(write(header: "{}", declaredLength: 1000), containing: "exceeds the file")
        assertFails(write(header: "{}", declaredLength: UInt64.max), containing: "exceeds the file")
        assertFails(write(header: "{not json"), containing: "not valid JSON")
        assertFails(
            write(header: #"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, data: [0, 0, 0, 0]),
            containing: "outside the data section")
        assertFails(
            write(
                header: #"{"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#,
                data: Array(repeating: 0, count: 8)),
            containing: "outside the data section")
        assertFails(
            write(
                header: #"{"w":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}"#,
                data: Array(repeating: 0, count: 8)),
            containing: "unsupported dtype 'I64'")
        assertFails(
            write(
                header: #"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
                data: Array(repeating: 0, count: 8)),
            containing: "needs 12 bytes but data_offsets span 8")
        assertFails(
            write(
                header: #"{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}"#,
                data: Array(repeating: 0, count: 8)),
            containing: "overflows")
        assertFails(
            write(header: #"{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}}"#), containing: "invalid dimension")
        assertFails(
            write(header: #"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0.5,4]}}"#, data: [0, 0, 0, 0]),
            containing: "two integers")
    }

    func testF32RoundTripAndHalfPrecisionConversion() throws {
        let values: [Float] = [1.5, -2, 0.25, 65504]
        let path = directory + "/f32.safetensors"
        try values.withUnsafeBufferPointer { p in
            try SafeTensorsFile.write(
                path: path, tensors: [(name: "w", shape: [2, 2], data: p.baseAddress!)], metadata: ["format": "pt"])
        }
        let file = try SafeTensorsFile(path: path)
        XCTAssertEqual(try file.floats("w"), values)
        XCTAssertEqual(file.entries["w"]?.shape, [2, 2])
        XCTAssertEqual(file.metadata["format"], "pt")

        // The same values as F16 and BF16, bytes built by hand (all exactly representable).
        var f16: [UInt8] = [], bf16: [UInt8] = []
        for v in values {
            withUnsafeBytes(of: Float16(v).bitPattern.littleEndian) { f16.append(contentsOf: $0) }
            withUnsafeBytes(of: UInt16(v.bitPattern >> 16).littleEndian) { bf16.append(contentsOf: $0) }
        }
        let halves = write(
            header:
                #"{"h":{"dtype":"F16","shape":[4],"data_offsets":[0,8]},"b":{"dtype":"BF16","shape":[4],"#
                + #""data_offsets":[8,16]}}"#,
            data: f16 + bf16)
        let mixed = try SafeTensorsFile(path: halves)
        XCTAssertEqual(try mixed.floats("h"), values)
        XCTAssertEqual(try mixed.floats("b"), values.map { Float(bitPattern: $0.bitPattern & 0xFFFF_0000) })
    }

    func testModelFolderErrorsNameTheTensor() throws {
        let trunk = try randomTrunk()
        try HFCheckpoint.save(trunk, directory: directory)
        let path = directory + "/model.safetensors"
        let file = try SafeTensorsFile(path: path)
        // Rewrite the folder without one tensor, then with an unexpected one, then a wrong shape.
        func rewrite(_ edit: (inout [(name: String, shape: [Int], data: [Float])]) -> Void) throws {
            var tensors = try file.entries.keys.sorted().map {
                (name: $0, shape: file.entries[$0]!.shape, data: try file.floats($0))
            }
            edit(&tensors)
            let buffers = tensors.map { FloatBuffer($0.data) }
            try SafeTensorsFile.write(
                path: path,
                tensors: zip(tensors, buffers).map { (name: $0.name, shape: $0.shape, data: UnsafePointer($1.pointer)) }
            )
        }
        let originals = try file.entries.keys.sorted().map {
            (name: $0, shape: file.entries[$0]!.shape, data: try file.floats($0))
        }
        try rewrite { $0.removeAll { $0.name == "transformer.h.1.ln_2.bias" } }
        XCTAssertThrowsError(try HFCheckpoint.load(directory: directory)) {
            XCTAssertTrue("\($0)".contains("missing tensors: h.1.ln_2.bias"), "\($0)")
        }
        try rewrite { $0 = originals + [(name: "transformer.h.0.extra", shape: [1], data: [0])] }
        XCTAssertThrowsError(try HFCheckpoint.load(directory: directory)) {
            XCTAssertTrue("\($0)".contains("unexpected tensor 'transformer.h.0.extra'"), "\($0)")
        }
        try rewrite { t in
            t = originals
            let i = t.firstIndex { $0.name == "transformer.ln_f.weight" }!
            t[i] = (name: t[i].name, shape: [2, 8], data: t[i].data)
        }
        XCTAssertThrowsError(try HFCheckpoint.load(directory: directory)) {
            XCTAssertTrue("\($0)".contains("has shape [2, 8]"), "\($0)")
        }
    }
}
