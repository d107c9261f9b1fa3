import Datasets
import Foundation
import Kernels
import Models
import Tokenizers

/// What training needs besides the weights to continue exactly where it stopped.
public struct TrainingState: Codable, Equatable, Sendable {
    public var formatVersion = 1
    public var stage: String
    public var step: Int            // optimizer steps done
    public var cursor: Int          // training examples consumed (DataStream position)
    public var optimizerStep: Int
    public var learningRate: Float  // the rate used by the last step
    public var rng: RNG             // stage's RNG (sampling); restored as is
    public var tokenizer: String    // "byte" or "tokenizer.json" (copied beside the model)
    public var worldSize: Int
    /// Hydra-SFT: preference pairs consumed.
    public var pairCursor: Int? = nil
    /// PPO: the KL coefficient (adaptive control moves it) and each trainable part's AdamW step.
    public var klBeta: Double? = nil
    public var optimizerSteps: [String: Int]? = nil

    public init(stage: String, step: Int, cursor: Int, optimizerStep: Int, learningRate: Float, rng: RNG, tokenizer: String, worldSize: Int,
                pairCursor: Int? = nil, klBeta: Double? = nil, optimizerSteps: [String: Int]? = nil) {
        self.stage = stage; self.step = step; self.cursor = cursor; self.optimizerStep = optimizerStep; self.learningRate = learningRate
        self.rng = rng; self.tokenizer = tokenizer; self.worldSize = worldSize
        self.pairCursor = pairCursor; self.klBeta = klBeta; self.optimizerSteps = optimizerSteps
    }
}

/// A checkpoint folder (design §6): a Hugging Face model folder (config.json, model.safetensors,
/// tokenizer.json when BPE) plus training_state.json and optimizer.safetensors. It is written to
/// a temporary folder and renamed, so a crash never leaves a half checkpoint as the newest.
public enum Checkpoints {
    public static func folderName(step: Int) -> String { String(format: "step-%08d", step) }

    /// `trunk` nil: the model is not written (LoRA stages write their adapter in `extra`; the
    /// frozen base stays where model.init_from names it).
    public static func save(directory: String, step: Int, trunk: (any CausalLM)?, optimizer: AdamW, state: TrainingState,
                            tokenizer: BPETokenizer?, keepLast: Int, extra: (String) throws -> Void = { _ in }) throws -> String {
        try saveFolder(directory: directory, step: step, keepLast: keepLast) { temporary in
            if let trunk { try HFCheckpoint.save(trunk, directory: temporary) }
            try writeCommon(temporary, optimizer: optimizer, state: state, tokenizer: tokenizer)
            try extra(temporary)
        }
    }

    /// The tokenizer (or the byte marker), the optimizer's moments and the training state.
    package static func writeCommon(_ temporary: String, optimizer: AdamW?, state: TrainingState, tokenizer: BPETokenizer?) throws {
        // The special tokens and chat template travel with the tokenizer.
        if let tokenizer { try tokenizer.save(into: temporary) }
        else { try ByteTokenizer.markerContents.write(toFile: (temporary as NSString).appendingPathComponent(ByteTokenizer.markerFile), atomically: true, encoding: .utf8) }
        if let optimizer {
            let moments = optimizer.layout.tensors.flatMap { t in
                [(name: "m." + t.name, shape: t.shape, data: UnsafePointer(optimizer.m.pointer + t.offset)),
                 (name: "v." + t.name, shape: t.shape, data: UnsafePointer(optimizer.v.pointer + t.offset))]
            }
            try SafeTensorsFile.write(path: (temporary as NSString).appendingPathComponent("optimizer.safetensors"), tensors: moments)
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(state).write(to: URL(fileURLWithPath: (temporary as NSString).appendingPathComponent("training_state.json")))
    }

    /// checkpoints/step-N written through a temporary folder and a rename, so a crash never leaves
    /// a half checkpoint as the newest; the newest `keepLast` are kept.
    public static func saveFolder(directory: String, step: Int, keepLast: Int, write: (String) throws -> Void) throws -> String {
        let fm = FileManager.default
        try fm.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let final = (directory as NSString).appendingPathComponent(folderName(step: step))
        let temporary = final + ".tmp-\(getpid())"
        try? fm.removeItem(atPath: temporary)
        try fm.createDirectory(atPath: temporary, withIntermediateDirectories: true)
        try write(temporary)
        if fm.fileExists(atPath: final) { try fm.removeItem(atPath: final) }
        try fm.moveItem(atPath: temporary, toPath: final)
        // Keep the newest `keepLast`; clear leftovers of interrupted saves.
        let all = try fm.contentsOfDirectory(atPath: directory)
        for name in all where name.contains(".tmp-") { try? fm.removeItem(atPath: (directory as NSString).appendingPathComponent(name)) }
        let complete = all.filter { $0.hasPrefix("step-") && !$0.contains(".tmp-") }.sorted()
        for name in complete.dropLast(keepLast) { try fm.removeItem(atPath: (directory as NSString).appendingPathComponent(name)) }
        return final
    }

    /// The newest complete checkpoint in `directory` (a run's checkpoints folder), if any.
    public static func newest(in directory: String) -> String? {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return nil }
        return names.filter { $0.hasPrefix("step-") && !$0.contains(".tmp-") }
            .filter { FileManager.default.fileExists(atPath: (directory as NSString).appendingPathComponent($0 + "/training_state.json")) }
            .sorted().last.map { (directory as NSString).appendingPathComponent($0) }
    }

    public static func loadState(_ checkpoint: String) throws -> TrainingState {
        let path = (checkpoint as NSString).appendingPathComponent("training_state.json")
        guard let data = FileManager.default.contents(atPath: path) else { throw TrainingError("\(path): cannot read") }
        do { return try JSONDecoder().decode(TrainingState.self, from: data) }
        catch { throw TrainingError("\(path): not a training state (\(error))") }
    }

    /// Restores the optimizer's moments from a checkpoint written by `save`.
    public static func loadOptimizer(_ checkpoint: String, into optimizer: AdamW, step: Int) throws {
        let file = try SafeTensorsFile(path: (checkpoint as NSString).appendingPathComponent("optimizer.safetensors"))
        var m = [Float](repeating: 0, count: optimizer.m.count), v = m
        for t in optimizer.layout.tensors {
            try m.withUnsafeMutableBufferPointer { try file.read("m." + t.name, into: $0.baseAddress! + t.offset, count: t.count) }
            try v.withUnsafeMutableBufferPointer { try file.read("v." + t.name, into: $0.baseAddress! + t.offset, count: t.count) }
        }
        try optimizer.restore(m: m, v: v, step: step)
    }
}

/// Writes named 1-D Float32 tensors to a safetensors file.
package func writeFloatTensors(path: String, _ columns: [(String, [Float])]) throws {
    var buffers = columns.map { ($0.0, FloatBuffer(count: max($0.1.count, 1))) }
    for (i, column) in columns.enumerated() { for (j, v) in column.1.enumerated() { buffers[i].1.pointer[j] = v } }
    try withExtendedLifetime(buffers) {
        try SafeTensorsFile.write(path: path, tensors: zip(columns, buffers).map { (name: $0.0.0, shape: [$0.0.1.count], data: UnsafePointer($0.1.1.pointer)) })
    }
    buffers.removeAll()
}
