import ArgumentParser
import Foundation
import GGUF
import Models
import Runs
import Tokenizers
import Training

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Describe a model folder or checkpoint: config, parameter counts, training step, files.")
    @Argument(help: "Model folder or checkpoint folder.")
    var path: String
    @Flag(help: "One JSON object instead of text.")
    var json = false

    func run() throws {
        // A truncated or hand-damaged file is reported, not described as if it were whole.
        let isCheckpoint = FileManager.default.fileExists(
            atPath: (path as NSString).appendingPathComponent("training_state.json"))
        if !GGUFFile.isGGUF(path: path),
            let problem = isCheckpoint ? Checkpoints.verify(path) : Checkpoints.verifyFiles(path)
        {
            throw CLIError("\(path) is damaged: \(problem)")
        }
        let config = try HFCheckpoint.readConfig(directory: path)
        let layout = config.parameterLayout
        var groups: [String: Int] = [:]
        for t in layout.tensors { groups[config.parameterGroup(of: t.name).rawValue, default: 0] += t.count }
        var info: [String: Any] = [
            "path": path, "model_type": config.modelType, "layers": config.layers, "heads": config.heads,
            "kv_heads": config.kvHeads,
            "channels": config.channels, "head_size": config.headSize, "inner": config.innerSize,
            "vocab": config.vocabSize, "context": config.contextLength,
            "parameters": layout.totalCount, "parameter_groups": groups,
        ]
        if let tok = try? Tokenizers.load(path) { info["tokenizer"] = tok.summary }
        if let state = try? Checkpoints.loadState(path) {
            info["stage"] = state.stage
            info["step"] = state.step
            info["examples_seen"] = state.cursor
            info["learning_rate"] = Double(state.learningRate)
            info["world_size"] = state.worldSize
        }
        let files = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        func size(_ name: String) -> Int {
            let attributes = try? FileManager.default.attributesOfItem(
                atPath: (path as NSString).appendingPathComponent(name))
            return attributes?[.size] as? Int ?? 0
        }
        info["files"] = Dictionary(uniqueKeysWithValues: files.map { ($0, size($0)) })
        if json {
            printJSONLine(info)
            return
        }
        print("\(path)")
        print(
            "  \(config.modelType): \(config.layers) layers, \(config.heads) heads of \(config.headSize) "
                + "(\(config.kvHeads) key/value), \(config.channels) wide (MLP \(config.innerSize)), vocab "
                + "\(config.vocabSize), context \(config.contextLength)"
        )
        print(
            "  parameters: \(layout.totalCount) — "
                + groups.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        if let t = info["tokenizer"] { print("  tokenizer: \(t)") }
        if let s = info["stage"] {
            print(
                "  training: \(s) step \(info["step"]!), \(info["examples_seen"]!) examples seen, lr "
                    + "\(info["learning_rate"]!)"
            )
        }
        for name in files.sorted() { print("  \(name)  \((info["files"] as! [String: Int])[name]!) bytes") }
    }
}
