import CFuzzer
import Config
import Datasets
import Foundation
import GGUF
import Models
import Roles
import Tokenizers
import Training

/// The parsers that a user's files or another rank's messages reach (issue 15), each fed whole
/// inputs: every thrown error is an accepted outcome, only a crash (a trap, an overflow, an
/// out-of-range index) is a finding. `scripts/fuzz.sh` builds this with `-sanitize=fuzzer
/// -DFUZZING` and runs each target under libFuzzer (RLHF_FUZZ_TARGET names it); the plain build
/// replays saved inputs (`rlhf-fuzz TARGET FILE…`), which is how the regression inputs in
/// Tests/Fuzz run in the test suite.
enum FuzzTarget: String, CaseIterable {
    case safetensors, tokenizer, jsonl, config, wire, gguf

    /// A file the path-based readers open: the input is written to it first.
    static let scratch = NSTemporaryDirectory() + "rlhf-fuzz-\(getpid())"

    func run(_ data: Data) {
        let fm = FileManager.default
        try? fm.createDirectory(atPath: Self.scratch, withIntermediateDirectories: true)
        func file(_ name: String) -> String {
            let path = Self.scratch + "/" + name
            _ = fm.createFile(atPath: path, contents: data)
            return path
        }
        switch self {
        case .safetensors:
            guard let f = try? SafeTensorsFile(path: file("model.safetensors")) else { return }
            for name in f.entries.keys.sorted() { _ = try? f.floats(name) }
        case .tokenizer:
            guard let t = try? BPETokenizer(path: file("tokenizer.json")) else { return }
            let ids = t.encode("Hello, world! 12 345 — ünïcödé\n\t<|im_end|>  x")
            _ = t.decode(ids, skipSpecialTokens: false)
            _ = try? t.chat?.render([], addGenerationPrompt: true)
        case .jsonl:
            let path = file("data.jsonl")
            for notes in [nil, DataNotes(allowReplacement: true, skipTooLong: true)] {
                _ = try? JSONL.sft(path: path, notes: notes)
                _ = try? JSONL.preferences(path: path, notes: notes)
                _ = try? JSONL.prompts(path: path, notes: notes)
            }
        case .config:
            let path = file("experiment.yaml")
            if let r = try? sftSchema.resolve(file: path, overrides: []) { _ = try? SFTConfig(r) }
            if let r = try? dpoSchema.resolve(file: path, overrides: []) { _ = try? DPOConfig(r) }
            if let r = try? ppoSchema.resolve(file: path, overrides: []) { _ = try? PPOConfig(r) }
        case .wire:
            RoleWireFuzzing.decodeEverything(data)
        case .gguf:
            guard let f = try? GGUFFile(path: file("model.gguf")) else { return }
            for t in f.tensors where t.count <= 1 << 22 { _ = try? f.floats(t.name) }
            _ = try? GGUFModel.configuration(f)
            _ = try? GGUFTokenizer.convert(f)
        }
    }
}

@main
struct FuzzMain {
    static func main() {
        #if FUZZING
            // libFuzzer runs as a library under our own main (SwiftPM links an executable's entry
            // point as main): RLHF_FUZZ_TARGET names the parser, the arguments are libFuzzer's.
            var argc = CommandLine.argc
            var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
            exit(
                LLVMFuzzerRunDriver(&argc, &argv) { bytes, size in
                    guard let bytes else { return 0 }
                    fuzzTarget.run(Data(bytes: bytes, count: size))
                    return 0
                })
        #else
            replay()
        #endif
    }

    /// `rlhf-fuzz TARGET FILE…`: each saved input through its parser once.
    static func replay() {
        let arguments = CommandLine.arguments.dropFirst()
        guard let name = arguments.first, let target = FuzzTarget(rawValue: name) else {
            print(
                "usage: rlhf-fuzz TARGET FILE… (targets: "
                    + "\(FuzzTarget.allCases.map(\.rawValue).joined(separator: ", "))); fuzzing itself: scripts/fuzz.sh"
            )
            exit(2)
        }
        var replayed = 0
        for path in arguments.dropFirst() {
            guard let data = FileManager.default.contents(atPath: path) else {
                print("cannot read \(path)")
                exit(1)
            }
            target.run(data)
            replayed += 1
        }
        try? FileManager.default.removeItem(atPath: FuzzTarget.scratch)
        print("\(target.rawValue): \(replayed) inputs replayed without a crash")
    }
}

/// The target this fuzzing process exercises, from RLHF_FUZZ_TARGET.
let fuzzTarget: FuzzTarget = {
    guard let name = ProcessInfo.processInfo.environment["RLHF_FUZZ_TARGET"], let target = FuzzTarget(rawValue: name)
    else {
        FileHandle.standardError.write(
            Data("set RLHF_FUZZ_TARGET to one of \(FuzzTarget.allCases.map(\.rawValue))\n".utf8))
        exit(2)
    }
    return target
}()
