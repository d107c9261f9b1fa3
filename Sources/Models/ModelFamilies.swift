import Foundation
import GGUF
import Kernels

/// A model family: how its Hugging Face config.json and weights are read. A new family is a folder
/// of its own (configuration, trunk, passes) plus one line in `ModelFamilies.all`.
public protocol ModelFamily {
    /// Hugging Face's `model_type` ("gpt2").
    static var modelType: String { get }
    /// Named shapes for `model.preset` and `rlhf init --preset`.
    static var presets: [String: any ModelConfiguration] { get }
    /// The projections LoRA can wrap, by PEFT's module names, in the family's order.
    static var loraTargetNames: [String] { get }
    /// Parses config.json (`path` names it in errors); options the family does not compute are
    /// refused by name rather than ignored.
    static func configuration(hfConfig json: [String: Any], path: String) throws -> any ModelConfiguration
    /// Reads the weights of the Hugging Face folder `directory` into a model of `config`.
    static func load(directory: String, config: any ModelConfiguration) throws -> any CausalLM
}

/// The registry of model families, keyed by Hugging Face's `model_type`.
public enum ModelFamilies {
    public static var all: [any ModelFamily.Type] {
        [GPT2Family.self, LlamaFamily.self, Qwen2Family.self, MistralFamily.self]
    }

    public static func family(modelType: String) -> (any ModelFamily.Type)? { all.first { $0.modelType == modelType } }

    public static var presetNames: [String] { Set(all.flatMap { $0.presets.keys }).sorted() }

    /// The preset `name` of the family `family` (a model_type: gpt2, llama).
    public static func preset(_ name: String, family modelType: String = GPT2Family.modelType) throws
        -> any ModelConfiguration
    {
        guard let family = family(modelType: modelType) else {
            throw ModelError.invalidConfig(
                "unknown model family '\(modelType)'; families are \(all.map { $0.modelType }.joined(separator: ", "))")
        }
        guard let config = family.presets[name] else {
            throw ModelError.invalidConfig(
                "\(modelType) has no preset '\(name)'; its presets are "
                    + "\(family.presets.keys.sorted().joined(separator: ", "))"
            )
        }
        return config
    }

    /// A preset named `family/preset` (`llama/smollm2-135m`), or a bare name of GPT-2's (`small`).
    public static func preset(qualified name: String) throws -> any ModelConfiguration {
        let parts = name.split(separator: "/", maxSplits: 1).map(String.init)
        return parts.count == 2 ? try preset(parts[1], family: parts[0]) : try preset(name)
    }

    /// The families that have presets (`rlhf init --family`, `model.family`).
    public static var presetFamilies: [String] { all.filter { !$0.presets.isEmpty }.map { $0.modelType } }
}

/// Hugging Face model folders (`config.json` + `model.safetensors`) of any registered family, as
/// transformers' `save_pretrained` writes them and `from_pretrained` reads them; a GGUF file
/// (llama.cpp's format) is accepted wherever a folder is.
public enum HFCheckpoint {
    /// Reads config.json and hands it to the family its `model_type` names (gpt2 when absent,
    /// as in the oldest GPT-2 folders); for a GGUF file, its metadata.
    public static func readConfig(directory: String) throws -> any ModelConfiguration {
        if GGUFFile.isGGUF(path: directory) { return try GGUFModel.configuration(GGUFFile(path: directory)) }
        let path = (directory as NSString).appendingPathComponent("config.json")
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ModelError.checkpoint(path: path, reason: "cannot read (missing?)")
        }
        guard let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw ModelError.checkpoint(path: path, reason: "not a JSON object")
        }
        let type = json["model_type"] as? String ?? GPT2Family.modelType
        guard let family = ModelFamilies.family(modelType: type) else {
            throw ModelError.checkpoint(
                path: path,
                reason:
                    "model_type '\(type)' is not supported yet (supported: "
                    + "\(ModelFamilies.all.map { $0.modelType }.joined(separator: ", ")))"
            )
        }
        return try family.configuration(hfConfig: json, path: path)
    }

    /// Loads a model folder of any registered family.
    /// Loads a model folder of any registered family; weights that are not all finite (a run
    /// that diverged) are an error naming the tensors, not NaN logits later.
    public static func load(directory: String) throws -> any CausalLM {
        let model: any CausalLM
        if GGUFFile.isGGUF(path: directory) {
            model = try GGUFModel.load(GGUFFile(path: directory))
        } else {
            let config = try readConfig(directory: directory)
            guard let family = ModelFamilies.family(modelType: config.modelType) else {
                throw ModelError.checkpoint(path: directory, reason: "model_type '\(config.modelType)' has no family")
            }
            model = try family.load(directory: directory, config: config)
        }
        try checkFinite(model.weights, layout: model.parameterLayout, path: directory)
        return model
    }

    /// Writes config.json and model.safetensors (F32) as the family's `save_pretrained` would.
    public static func save(_ model: any CausalLM, directory: String) throws {
        try model.requireFP32Weights(for: "save \(directory)")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let configPath = (directory as NSString).appendingPathComponent("config.json")
        let json = try JSONSerialization.data(
            withJSONObject: model.config.hfConfigJSON(),
            options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        do { try json.write(to: URL(fileURLWithPath: configPath), options: .atomic) } catch {
            throw ModelError.checkpoint(path: configPath, reason: "cannot write: \(error.localizedDescription)")
        }
        try withExtendedLifetime(model) {
            try SafeTensorsFile.write(
                path: (directory as NSString).appendingPathComponent("model.safetensors"),
                tensors: model.hfTensors(), metadata: ["format": "pt"])
        }
    }
}

/// Throws when `weights` hold NaN or infinity, naming the first tensors that do.
func checkFinite(_ weights: FloatBuffer, layout: TensorLayout, path: String) throws {
    var bad: [String] = []
    for t in layout.tensors {
        var count = 0
        for i in t.offset..<(t.offset + t.count) where !weights.pointer[i].isFinite { count += 1 }
        if count > 0 { bad.append("\(t.name) (\(count) of \(t.count))") }
    }
    guard !bad.isEmpty else { return }
    let shown = bad.prefix(5).joined(separator: ", ") + (bad.count > 5 ? " and \(bad.count - 5) more tensors" : "")
    throw ModelError.checkpoint(
        path: path, reason: "non-finite weights (NaN or infinity) in \(shown): the run that wrote them diverged")
}
