import Foundation
import Kernels

/// LoRA adapters in Hugging Face PEFT's format: `adapter_config.json` + `adapter_model.safetensors`
/// with tensors `<peft prefix><module path>.lora_{A,B}.weight`, A [r, in] and B [out, r], where the
/// family names the prefix and module paths (GPT-2: `base_model.model.transformer.h.{l}.attn.c_attn`,
/// Conv1D modules, fan_in_fan_out). The wrapped projections are read from the tensors present
/// rather than from `target_modules` patterns (GPT-2's "c_proj" matches two modules); options this
/// implementation does not compute are rejected by name.
public enum PEFTAdapter {
    public static func load(directory: String, modelConfig: any ModelConfiguration) throws -> LoRAAdapter {
        let (rank, alpha) = try readConfig(directory: directory)
        let weightsPath = (directory as NSString).appendingPathComponent("adapter_model.safetensors")
        let file = try SafeTensorsFile(path: weightsPath)
        let (targets, names) = try loraTensors(file, modelConfig: modelConfig)
        let adapter = try LoRAAdapter(
            config: LoRAConfig(rank: rank, alpha: alpha, targets: modelConfig.allLoRATargets.filter(targets.contains)),
            modelConfig: modelConfig)
        for tensor in adapter.layout.tensors {
            guard let name = names[tensor.name] else {
                throw ModelError.checkpoint(
                    path: weightsPath,
                    reason:
                        "missing '\(modelConfig.peftTensorPrefix + tensor.name)' (every layer must wrap the same "
                        + "projections)"
                )
            }
            guard file.entries[name]!.shape == tensor.shape else {
                throw ModelError.checkpoint(
                    path: weightsPath,
                    reason: "'\(name)' has shape \(file.entries[name]!.shape), expected \(tensor.shape)")
            }
            try file.read(name, into: adapter.weights.pointer + tensor.offset, count: tensor.count)
        }
        guard names.count == adapter.layout.tensors.count else {
            throw ModelError.checkpoint(path: weightsPath, reason: "layers wrap different projections; not supported")
        }
        try checkFinite(adapter.weights, layout: adapter.layout, path: weightsPath)
        return adapter
    }

    /// adapter_config.json's rank and α (rsLoRA's α√r folded in); options not computed here refused.
    static func readConfig(directory: String) throws -> (rank: Int, alpha: Float) {
        let configPath = (directory as NSString).appendingPathComponent("adapter_config.json")
        func fail(_ reason: String) -> ModelError { .checkpoint(path: configPath, reason: reason) }
        guard let data = FileManager.default.contents(atPath: configPath),
            let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
        else { throw fail("cannot read a JSON object") }
        guard (json["peft_type"] as? String) == "LORA" else {
            throw fail("peft_type '\(json["peft_type"] ?? "none")' is not LORA")
        }
        guard let rank = json["r"] as? Int, rank > 0 else { throw fail("'r' must be a positive integer") }
        var alpha = Float((json["lora_alpha"] as? Double) ?? Double(rank))
        if (json["use_rslora"] as? Bool) == true { alpha *= Float(rank).squareRoot() }  // scale α/√r = (α√r)/r
        if (json["use_dora"] as? Bool) == true { throw fail("use_dora = true is not supported") }
        for key in ["rank_pattern", "alpha_pattern"] {
            if let pattern = json[key] as? [String: Any], !pattern.isEmpty { throw fail("\(key) is not supported") }
        }
        for key in ["layers_to_transform", "modules_to_save"] where !(json[key] == nil || json[key] is NSNull) {
            throw fail("\(key) is not supported")
        }
        if let bias = json["bias"] as? String, bias != "none" {
            throw fail("bias = '\(bias)' is not supported (only none)")
        }
        if (json["lora_bias"] as? Bool) == true { throw fail("lora_bias = true is not supported") }
        return (rank, alpha)
    }

    /// The projections the file's LoRA tensors wrap, and each tensor's name by its module path.
    static func loraTensors(_ file: SafeTensorsFile, modelConfig: any ModelConfiguration) throws
        -> (targets: Set<LoRATarget>, names: [String: String])
    {
        let prefix = modelConfig.peftTensorPrefix
        func fail(_ reason: String) -> ModelError { .checkpoint(path: file.path, reason: reason) }
        // Every module path of the family, to find each tensor's layer and projection.
        var sites: [String: LoRATarget] = [:]
        for l in 0..<modelConfig.layers {
            for target in modelConfig.allLoRATargets {
                sites[modelConfig.loraModulePath(layer: l, target: target)] = target
            }
        }
        // The module path of every LoRA tensor; PEFT versions may keep the adapter name (".default").
        func local(_ name: String) -> String? {
            guard name.hasPrefix(prefix) else { return nil }
            return String(name.dropFirst(prefix.count)).replacingOccurrences(of: ".default.weight", with: ".weight")
        }
        var targets = Set<LoRATarget>()
        var names: [String: String] = [:]
        for name in file.entries.keys {
            guard let short = local(name), short.hasSuffix(".lora_A.weight") || short.hasSuffix(".lora_B.weight") else {
                throw fail("unexpected tensor '\(name)'")
            }
            names[short] = name
            let module = short.components(separatedBy: ".lora_")[0]  // h.3.attn.c_attn
            guard let target = sites[module] else {
                throw fail("tensor '\(name)' is not a LoRA site of this \(modelConfig.modelType) model")
            }
            targets.insert(target)
        }
        guard !targets.isEmpty else { throw fail("no LoRA tensors") }
        return (targets, names)
    }

    public static func save(_ adapter: LoRAAdapter, directory: String, baseModel: String = "") throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let config: [String: Any] = [
            "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": adapter.config.rank,
            "lora_alpha": Double(adapter.config.alpha),
            "target_modules": adapter.config.targets.map(\.name), "fan_in_fan_out": adapter.modelConfig.loraFanInFanOut,
            "lora_dropout": 0.0, "bias": "none",
            "use_rslora": false, "use_dora": false, "inference_mode": true, "base_model_name_or_path": baseModel,
            "init_lora_weights": true, "modules_to_save": NSNull(), "layers_to_transform": NSNull(),
        ]
        try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys])
            .write(
                to: URL(fileURLWithPath: (directory as NSString).appendingPathComponent("adapter_config.json")),
                options: .atomic)
        let prefix = adapter.modelConfig.peftTensorPrefix
        try withExtendedLifetime(adapter) {
            try SafeTensorsFile.write(
                path: (directory as NSString).appendingPathComponent("adapter_model.safetensors"),
                tensors: adapter.layout.tensors.map {
                    (name: prefix + $0.name, shape: $0.shape, data: UnsafePointer(adapter.weights.pointer + $0.offset))
                },
                metadata: ["format": "pt"])
        }
    }
}
