import Foundation
import Kernels

/// Hugging Face GPT-2 model folders: `config.json` + `model.safetensors`, as written by
/// transformers' `save_pretrained` and read by `from_pretrained`.
public enum HFCheckpoint {
    /// Reads config.json. Fields follow transformers' GPT2Config; options this implementation does
    /// not compute are rejected by name rather than silently ignored.
    public static func readConfig(directory: String) throws -> GPT2Config {
        let path = (directory as NSString).appendingPathComponent("config.json")
        func fail(_ reason: String) -> ModelError { .checkpoint(path: path, reason: reason) }
        guard let data = FileManager.default.contents(atPath: path) else { throw fail("cannot read (missing?)") }
        guard let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else { throw fail("not a JSON object") }
        if let type = json["model_type"] as? String, type != "gpt2" {
            throw fail("model_type '\(type)' is not supported yet (only gpt2)")
        }
        func int(_ key: String, default value: Int? = nil) throws -> Int {
            if let v = json[key] as? Int { return v }
            if json[key] == nil || json[key] is NSNull, let value { return value }
            throw fail("'\(key)' must be an integer")
        }
        let activation = json["activation_function"] as? String ?? "gelu_new"
        guard ["gelu_new", "gelu_pytorch_tanh"].contains(activation) else {
            throw fail("activation_function '\(activation)' is not supported (gelu_new or gelu_pytorch_tanh)")
        }
        if let v = json["scale_attn_by_inverse_layer_idx"] as? Bool, v { throw fail("scale_attn_by_inverse_layer_idx = true is not supported") }
        if let v = json["scale_attn_weights"] as? Bool, !v { throw fail("scale_attn_weights = false is not supported") }
        if let v = json["tie_word_embeddings"] as? Bool, !v { throw fail("tie_word_embeddings = false (an untied LM head) is not supported") }
        let channels = try int("n_embd", default: 768)
        let config = GPT2Config(
            vocabSize: try int("vocab_size", default: 50257), contextLength: try int("n_positions", default: 1024),
            channels: channels, layers: try int("n_layer", default: 12), heads: try int("n_head", default: 12),
            innerSize: try int("n_inner", default: 4 * channels),
            layerNormEps: Float((json["layer_norm_epsilon"] as? Double) ?? 1e-5),
            bosTokenId: json["bos_token_id"] as? Int, eosTokenId: json["eos_token_id"] as? Int)
        do { try config.validate() } catch { throw fail("\(error)") }
        return config
    }

    public static func configJSON(_ c: GPT2Config) -> [String: Any] {
        var json: [String: Any] = [
            "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
            "vocab_size": c.vocabSize, "n_positions": c.contextLength, "n_embd": c.channels,
            "n_layer": c.layers, "n_head": c.heads, "n_inner": c.innerSize,
            "activation_function": "gelu_new", "layer_norm_epsilon": Double(c.layerNormEps),
            // This implementation has no dropout; say so, so training elsewhere behaves the same.
            "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0, "summary_first_dropout": 0.0,
            "initializer_range": 0.02, "tie_word_embeddings": true, "use_cache": true,
            "scale_attn_weights": true, "torch_dtype": "float32",
        ]
        if let bos = c.bosTokenId { json["bos_token_id"] = bos }
        if let eos = c.eosTokenId { json["eos_token_id"] = eos }
        return json
    }

    /// Loads a GPT-2 folder. Tensor names may carry the `transformer.` prefix (GPT2LMHeadModel) or
    /// not (GPT2Model); the causal-mask buffers old checkpoints store are skipped; a stored
    /// `lm_head.weight` must equal wte (GPT-2 ties them).
    public static func load(directory: String) throws -> GPT2Trunk {
        let config = try readConfig(directory: directory)
        let path = (directory as NSString).appendingPathComponent("model.safetensors")
        let file = try SafeTensorsFile(path: path)
        let trunk = try GPT2Trunk(config: config)
        var seen = Set<String>()
        var lmHead: String?
        for name in file.entries.keys {
            let local = name.hasPrefix("transformer.") ? String(name.dropFirst("transformer.".count)) : name
            if local.hasSuffix(".attn.bias") || local.hasSuffix(".attn.masked_bias") { continue }
            if local == "lm_head.weight" { lmHead = name; continue }
            guard let tensor = trunk.layout.tensors[local] else {
                throw ModelError.checkpoint(path: path, reason: "unexpected tensor '\(name)' for a GPT-2 model")
            }
            guard !seen.contains(local) else { throw ModelError.checkpoint(path: path, reason: "tensor '\(local)' appears twice") }
            let entry = file.entries[name]!
            guard entry.shape == tensor.shape else {
                throw ModelError.checkpoint(path: path, reason: "tensor '\(name)' has shape \(entry.shape), config.json implies \(tensor.shape)")
            }
            try file.read(name, into: trunk.weights.pointer + tensor.offset, count: tensor.count)
            seen.insert(local)
        }
        let missing = trunk.layout.tensors.tensors.map(\.name).filter { !seen.contains($0) }
        guard missing.isEmpty else {
            throw ModelError.checkpoint(path: path, reason: "missing tensors: \(missing.prefix(5).joined(separator: ", "))\(missing.count > 5 ? " and \(missing.count - 5) more" : "")")
        }
        if let lmHead {
            let values = try file.floats(lmHead)
            let wte = trunk.layout.tensors["wte.weight"]!
            guard values.count == wte.count, values.elementsEqual(UnsafeBufferPointer(start: trunk.weights.pointer + wte.offset, count: wte.count)) else {
                throw ModelError.checkpoint(path: path, reason: "'\(lmHead)' differs from wte: untied LM heads are not supported")
            }
        }
        return trunk
    }

    /// Writes config.json and model.safetensors (F32, `transformer.`-prefixed names, tied LM head
    /// omitted: exactly what GPT2LMHeadModel.save_pretrained produces).
    public static func save(_ trunk: GPT2Trunk, directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let configPath = (directory as NSString).appendingPathComponent("config.json")
        let json = try JSONSerialization.data(withJSONObject: configJSON(trunk.config), options: [.prettyPrinted, .sortedKeys])
        do { try json.write(to: URL(fileURLWithPath: configPath), options: .atomic) }
        catch { throw ModelError.checkpoint(path: configPath, reason: "cannot write: \(error.localizedDescription)") }
        let tensors = trunk.layout.tensors.tensors.map {
            (name: "transformer." + $0.name, shape: $0.shape, data: UnsafePointer(trunk.weights.pointer + $0.offset))
        }
        try SafeTensorsFile.write(path: (directory as NSString).appendingPathComponent("model.safetensors"),
                                  tensors: tensors, metadata: ["format": "pt"])
    }
}
