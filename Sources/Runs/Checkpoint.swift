import Config
import Datasets
import Foundation
import Kernels
import Models
import Tokenizers

/// What training needs besides the weights to continue exactly where it stopped.
public struct TrainingState: Codable, Equatable, Sendable {
    public var formatVersion = 1
    public var stage: String
    public var step: Int  // optimizer steps done
    public var cursor: Int  // training examples consumed (DataStream position)
    public var optimizerStep: Int
    public var learningRate: Float  // the rate used by the last step
    public var rng: RNG  // stage's RNG (sampling); restored as is
    public var tokenizer: String  // "byte" or "tokenizer.json" (copied beside the model)
    public var worldSize: Int
    /// Hydra-SFT: preference pairs consumed.
    public var pairCursor: Int? = nil
    /// PPO: the KL coefficient (adaptive control moves it) and each trainable part's AdamW step.
    public var klBeta: Double? = nil
    public var optimizerSteps: [String: Int]? = nil

    /// The settings that shape the model and the data when the checkpoint was written
    /// (`ResumeSettings`): a resume with other values is refused unless `resume: force`.
    public var settings: [String: String]? = nil

    /// The divergence guard's memory at this step (so a resumed run judges steps as the
    /// uninterrupted one would).
    public var divergence: DivergenceMemory? = nil

    /// PPO: the held-out score before the first iteration (ifeval's instruction accuracy), so a
    /// resumed run still reports where training started.
    public var startingScore: Double? = nil

    /// A field no run could have written (a hand-edited or damaged file), or nil.
    var problem: String? {
        if step < 1 { return "step \(step) is not ≥ 1" }
        if cursor < 0 || optimizerStep < 0 || (pairCursor ?? 0) < 0 { return "a negative cursor or optimizer step" }
        if worldSize < 1 { return "world size \(worldSize) is not ≥ 1" }
        if !learningRate.isFinite || !(klBeta ?? 0).isFinite { return "a non-finite learning rate or KL coefficient" }
        return nil
    }

    public init(
        stage: String, step: Int, cursor: Int, optimizerStep: Int, learningRate: Float, rng: RNG, tokenizer: String,
        worldSize: Int,
        pairCursor: Int? = nil, klBeta: Double? = nil, optimizerSteps: [String: Int]? = nil,
        settings: [String: String]? = nil,
        startingScore: Double? = nil
    ) {
        self.stage = stage
        self.step = step
        self.cursor = cursor
        self.optimizerStep = optimizerStep
        self.learningRate = learningRate
        self.rng = rng
        self.tokenizer = tokenizer
        self.worldSize = worldSize
        self.pairCursor = pairCursor
        self.klBeta = klBeta
        self.optimizerSteps = optimizerSteps
        self.settings = settings
        self.startingScore = startingScore
    }
}

/// What a stage's divergence guard has learned so far: the first loss, the running mean and the
/// streak of exactly-zero gradients (Training's DivergenceGuard), saved with each checkpoint.
public struct DivergenceMemory: Codable, Equatable, Sendable {
    public var first: Double?
    public var mean: Double?
    public var zeroGradientStreak = 0
    public init() {}
}

/// A checkpoint folder (docs/architecture.md §6): a Hugging Face model folder (config.json, model.safetensors,
/// tokenizer.json when BPE) plus training_state.json and optimizer.safetensors. It is written to
/// a temporary folder and renamed, so a crash never leaves a half checkpoint as the newest.
public enum Checkpoints {
    public static func folderName(step: Int) -> String { String(format: "step-%08d", step) }

    /// `trunk` nil: the model is not written (LoRA stages write their adapter in `extra`; the
    /// frozen base stays where model.init_from names it).
    public static func save(
        directory: String, step: Int, trunk: (any CausalLM)?, optimizer: AdamW, state: TrainingState,
        tokenizer: BPETokenizer?, keepLast: Int, extra: (String) throws -> Void = { _ in }
    ) throws -> String {
        try saveFolder(directory: directory, step: step, keepLast: keepLast) { temporary in
            if let trunk { try HFCheckpoint.save(trunk, directory: temporary) }
            try writeCommon(temporary, optimizer: optimizer, state: state, tokenizer: tokenizer)
            try extra(temporary)
        }
    }

    /// The tokenizer (or the byte marker), the optimizer's moments and the training state.
    package static func writeCommon(
        _ temporary: String, optimizer: AdamW?, state: TrainingState, tokenizer: BPETokenizer?
    ) throws {
        // The special tokens and chat template travel with the tokenizer.
        if let tokenizer {
            try tokenizer.save(into: temporary)
        } else {
            try ByteTokenizer.markerContents.write(
                toFile: (temporary as NSString).appendingPathComponent(ByteTokenizer.markerFile), atomically: true,
                encoding: .utf8)
        }
        if let optimizer {
            let moments = optimizer.layout.tensors.flatMap { t in
                [
                    (name: "m." + t.name, shape: t.shape, data: UnsafePointer(optimizer.m.pointer + t.offset)),
                    (name: "v." + t.name, shape: t.shape, data: UnsafePointer(optimizer.v.pointer + t.offset)),
                ]
            }
            try SafeTensorsFile.write(
                path: (temporary as NSString).appendingPathComponent("optimizer.safetensors"), tensors: moments)
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(state).write(
            to: URL(fileURLWithPath: (temporary as NSString).appendingPathComponent("training_state.json")))
    }

    /// checkpoints/step-N written through a temporary folder and a rename, so a crash never leaves
    /// a half checkpoint as the newest; the newest `keepLast` are kept.
    public static func saveFolder(directory: String, step: Int, keepLast: Int, write: (String) throws -> Void) throws
        -> String
    {
        let fm = FileManager.default
        try fm.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let final = (directory as NSString).appendingPathComponent(folderName(step: step))
        let temporary = final + ".tmp-\(getpid())"
        try? fm.removeItem(atPath: temporary)
        do {
            try fm.createDirectory(atPath: temporary, withIntermediateDirectories: true)
            try write(temporary)
            try writeManifest(temporary)
            if fm.fileExists(atPath: final) { try fm.removeItem(atPath: final) }
            try fm.moveItem(atPath: temporary, toPath: final)
        } catch {
            // A full disk must not leave a half folder behind for the next attempt to trip over.
            try? fm.removeItem(atPath: temporary)
            throw TrainingError("writing checkpoint \(final) failed, the previous ones are kept: \(error)")
        }
        // Keep the newest `keepLast`; clear leftovers of interrupted saves.
        let all = try fm.contentsOfDirectory(atPath: directory)
        for name in all where name.contains(".tmp-") {
            try? fm.removeItem(atPath: (directory as NSString).appendingPathComponent(name))
        }
        let complete = all.filter { $0.hasPrefix("step-") && !$0.contains(".tmp-") }.sorted()
        for name in complete.dropLast(keepLast) {
            try fm.removeItem(atPath: (directory as NSString).appendingPathComponent(name))
        }
        return final
    }

    /// The newest complete checkpoint in `directory` (a run's checkpoints folder), if any.
    public static func newest(in directory: String) -> String? { complete(in: directory).last }

    /// The newest complete checkpoint of a step ≤ `step`.
    public static func newest(in directory: String, atMost step: Int) -> String? {
        complete(in: directory).last { path in
            let name = (path as NSString).lastPathComponent
            return Int(name.dropFirst("step-".count)).map { $0 <= step } ?? false
        }
    }

    /// Complete checkpoints (renamed into place, with a training state), oldest first.
    static func complete(in directory: String) -> [String] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return [] }
        return names.filter { $0.hasPrefix("step-") && !$0.contains(".tmp-") }
            .filter {
                FileManager.default.fileExists(
                    atPath: (directory as NSString).appendingPathComponent($0 + "/training_state.json"))
            }
            .sorted().map { (directory as NSString).appendingPathComponent($0) }
    }

    /// The newest checkpoint that `verify` passes, and each newer one it passed over with why.
    public static func newestIntact(in directory: String) -> (
        checkpoint: String?, damaged: [(path: String, problem: String)]
    ) {
        var damaged: [(String, String)] = []
        for candidate in complete(in: directory).reversed() {
            guard let problem = verify(candidate) else { return (candidate, damaged) }
            damaged.append((candidate, problem))
        }
        return (nil, damaged)
    }

    /// What is wrong with a checkpoint folder, or nil: its training state must decode with sane
    /// fields, every file its manifest lists must be there at its size, every safetensors file in
    /// it (and in its subfolders) must have a valid header whose tensors lie inside the file (a
    /// truncated file fails this), and every JSON file must parse.
    public static func verify(_ checkpoint: String) -> String? {
        do {
            let state = try loadState(checkpoint)
            if let bad = state.problem { return "\(checkpoint)/training_state.json: \(bad)" }
        } catch { return "\(error)" }
        return verifyManifest(checkpoint) ?? verifyFiles(checkpoint)
    }

    /// The manifest of a checkpoint folder: every file it was written with and its size, so that a
    /// file deleted or cut short later marks the checkpoint damaged (it is passed over on resume)
    /// rather than failing every resume that picks it.
    static let manifestFile = "files.json"

    static func writeManifest(_ folder: String) throws {
        let fm = FileManager.default
        var sizes: [String: Int] = [:]
        for name in fm.subpaths(atPath: folder) ?? [] {
            let path = (folder as NSString).appendingPathComponent(name)
            var isDirectory: ObjCBool = false
            guard fm.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue else { continue }
            sizes[name] = (try fm.attributesOfItem(atPath: path)[.size] as? NSNumber)?.intValue ?? 0
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(sizes).write(
            to: URL(fileURLWithPath: (folder as NSString).appendingPathComponent(manifestFile)))
    }

    /// A file the manifest lists that is missing or of another size, or nil (also for checkpoints
    /// written before manifests).
    static func verifyManifest(_ folder: String) -> String? {
        let path = (folder as NSString).appendingPathComponent(manifestFile)
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        guard let sizes = try? JSONDecoder().decode([String: Int].self, from: data) else {
            return "\(path): not a list of files and sizes"
        }
        for (name, size) in sizes.sorted(by: { $0.key < $1.key }) {
            let file = (folder as NSString).appendingPathComponent(name)
            guard let attributes = try? FileManager.default.attributesOfItem(atPath: file) else {
                return "\(file) is missing (the checkpoint was written with it)"
            }
            let now = (attributes[.size] as? NSNumber)?.intValue ?? -1
            if now != size { return "\(file) has \(now) bytes; it was written with \(size)" }
        }
        return nil
    }

    /// What is wrong with the safetensors and JSON files of a folder (a model or a checkpoint), or nil.
    public static func verifyFiles(_ folder: String) -> String? {
        let fm = FileManager.default
        for name in (fm.subpaths(atPath: folder) ?? []).sorted() {
            let path = (folder as NSString).appendingPathComponent(name)
            if name.hasSuffix(".safetensors") {
                do { _ = try SafeTensorsFile(path: path) } catch { return "\(error)" }
            } else if name.hasSuffix(".json") {
                guard let data = fm.contents(atPath: path), (try? JSONSerialization.jsonObject(with: data)) != nil
                else { return "\(path): not valid JSON" }
            }
        }
        return nil
    }

    /// Removes `step-N.tmp-PID` folders whose process is gone (a kill during a save); returns them.
    public static func removeStaleTemporaries(in directory: String) -> [String] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return [] }
        return names.sorted().compactMap { name in
            guard let range = name.range(of: ".tmp-"), let pid = Int32(name[range.upperBound...]) else { return nil }
            guard pid != getpid(), kill(pid, 0) != 0, errno == ESRCH else { return nil }
            let path = (directory as NSString).appendingPathComponent(name)
            return (try? FileManager.default.removeItem(atPath: path)) != nil ? path : nil
        }
    }

    public static func loadState(_ checkpoint: String) throws -> TrainingState {
        let path = (checkpoint as NSString).appendingPathComponent("training_state.json")
        guard let data = FileManager.default.contents(atPath: path) else { throw TrainingError("\(path): cannot read") }
        do { return try JSONDecoder().decode(TrainingState.self, from: data) } catch {
            throw TrainingError("\(path): not a training state (\(error))")
        }
    }

    /// Restores the optimizer's moments from a checkpoint written by `save`.
    public static func loadOptimizer(_ checkpoint: String, into optimizer: AdamW, step: Int) throws {
        let file = try SafeTensorsFile(path: (checkpoint as NSString).appendingPathComponent("optimizer.safetensors"))
        var m = [Float](repeating: 0, count: optimizer.m.count), v = m
        for t in optimizer.layout.tensors {
            try m.withUnsafeMutableBufferPointer {
                try file.read("m." + t.name, into: $0.baseAddress! + t.offset, count: t.count)
            }
            try v.withUnsafeMutableBufferPointer {
                try file.read("v." + t.name, into: $0.baseAddress! + t.offset, count: t.count)
            }
        }
        try optimizer.restore(m: m, v: v, step: step)
    }
}

/// Writes named 1-D Float32 tensors to a safetensors file.
package func writeFloatTensors(path: String, _ columns: [(String, [Float])]) throws {
    var buffers = columns.map { ($0.0, FloatBuffer(count: max($0.1.count, 1))) }
    for (i, column) in columns.enumerated() { for (j, v) in column.1.enumerated() { buffers[i].1.pointer[j] = v } }
    try withExtendedLifetime(buffers) {
        try SafeTensorsFile.write(
            path: path,
            tensors: zip(columns, buffers).map {
                (name: $0.0.0, shape: [$0.0.1.count], data: UnsafePointer($0.1.1.pointer))
            })
    }
    buffers.removeAll()
}
