import Foundation
import Kernels

/// GPT-2's LoRA projections, by their Hugging Face module paths inside a block, in the order an
/// adapter stores them.
enum GPT2Projection: Int, CaseIterable {
    case attentionQKV  // attn.c_attn  C → 3C
    case attentionOutput  // attn.c_proj  C → C
    case mlpUp  // mlp.c_fc     C → I
    case mlpDown  // mlp.c_proj   I → C

    var target: LoRATarget { [.attentionQKV, .attentionOutput, .mlpUp, .mlpDown][rawValue] }
    /// Index of the projection in an adapter's sites of one layer.
    var slot: Int { rawValue }
}

extension LoRATarget {
    public static let attentionQKV: LoRATarget = "attn.c_attn"
    public static let attentionOutput: LoRATarget = "attn.c_proj"
    public static let mlpUp: LoRATarget = "mlp.c_fc"
    public static let mlpDown: LoRATarget = "mlp.c_proj"
}

extension GPT2Config: ModelConfiguration {
    public var modelType: String { GPT2Family.modelType }
    public var kvHeads: Int { heads }
    public var parameterLayout: TensorLayout { GPT2Layout(config: self).tensors }
    public var bf16OnlyRanges: [Range<Int>] { GPT2Layout(config: self).bf16OnlyRanges }

    public func parameterGroup(of name: String) -> ParameterGroup {
        name.hasPrefix("wte") || name.hasPrefix("wpe")
            ? .embeddings
            : name.hasPrefix("ln_f")
                ? .finalNorm
                : name.contains(".attn.") ? .attention : name.contains(".mlp.") ? .mlp : .blockNorms
    }

    public var loraProjections: [LoRAProjection] {
        [
            LoRAProjection(.attentionQKV, input: channels, output: 3 * channels),
            LoRAProjection(.attentionOutput, input: channels, output: channels),
            LoRAProjection(.mlpUp, input: channels, output: innerSize),
            LoRAProjection(.mlpDown, input: innerSize, output: channels),
        ]
    }
    public func loraModulePath(layer: Int, target: LoRATarget) -> String { "h.\(layer).\(target.name)" }
    public var peftTensorPrefix: String { "base_model.model.transformer." }
    public var loraFanInFanOut: Bool { true }  // Conv1D modules

    public func withVocabulary(size: Int, bosTokenId: Int?, eosTokenId: Int?) -> any ModelConfiguration {
        var c = self
        c.vocabSize = size
        c.bosTokenId = bosTokenId
        c.eosTokenId = eosTokenId
        return c
    }

    public func makeModel(weights: FloatBuffer?) throws -> any CausalLM {
        try GPT2Trunk(config: self, weights: weights)
    }

    public func hfConfigJSON() -> [String: Any] {
        var json: [String: Any] = [
            "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
            "vocab_size": vocabSize, "n_positions": contextLength, "n_embd": channels,
            "n_layer": layers, "n_head": heads, "n_inner": innerSize,
            "activation_function": "gelu_new", "layer_norm_epsilon": Double(layerNormEps),
            // This implementation has no dropout; say so, so training elsewhere behaves the same.
            "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0, "summary_first_dropout": 0.0,
            "initializer_range": 0.02, "tie_word_embeddings": true, "use_cache": true,
            "scale_attn_weights": true, "torch_dtype": "float32",
        ]
        if let bos = bosTokenId { json["bos_token_id"] = bos }
        if let eos = eosTokenId { json["eos_token_id"] = eos }
        return json
    }

    /// `GPT2Activations`: per layer ln1, attention, residual2, ln2, residual3 (C each), qkv (3C),
    /// fc and gelu (I each), two means and two rstd, the LoRA rows (4 projections × r) and the
    /// probabilities [B, H, T, T]; the embeddings and hidden rows; `BackwardScratch` (dResidual,
    /// dLn, dAttention: C; dQKV: 3C; dGelu, dFc: I; dLoRA: r).
    public func trainingActivationBytes(batch: Int, tokens: Int, loraRank: Int, lmHead: Bool) -> Double {
        let m = Double(batch * tokens), C = Double(channels), I = Double(innerSize), r = Double(loraRank)
        let perLayer = m * (8 * C + 2 * I + 4 + 4 * r) + Double(batch * heads * tokens * tokens)
        let scratch = m * (6 * C + 2 * I + max(r, 1)) + 2 * max(C, I) + Double(tokens * tokens)
        let head = lmHead ? m * Double(vocabSize + 2) + Double(vocabSize) : 0
        return 4 * (Double(layers) * perLayer + m * (2 * C + 3) + scratch + head)
    }

    /// `inferenceHidden`'s buffers: residual, ln1, attention, residual2, ln2, residual3, hidden
    /// (C each), qkv (3C), fc and gelu (I each), mean and rstd, the attention probabilities
    /// [B, H, T, T] and the LoRA branch rows (4 projections × r).
    public func inferenceActivationBytes(batch: Int, tokens: Int, loraRank: Int) -> Double {
        let m = Double(batch * tokens), C = Double(channels), I = Double(innerSize)
        let perRow = 10 * C + 2 * I + 2 + 4 * Double(max(loraRank, 1))
        return 4 * (m * perRow + Double(batch * heads * tokens * tokens))
    }

    /// What `forward` issues to sgemm, including the full T×T attention products.
    public func forwardFLOPs(batch b: Int, tokens t: Int) -> Double {
        let m = Double(b * t), C = Double(channels), I = Double(innerSize)
        let linear = 2 * m * (C * 3 * C + C * C + 2 * C * I)
        let attention = 4 * Double(b) * Double(t) * Double(t) * C
        return Double(layers) * (linear + attention) + 2 * m * C * Double(vocabSize)
    }
}

/// GPT-2 (Radford et al. 2019; transformers' `GPT2LMHeadModel`).
public enum GPT2Family: ModelFamily {
    public static let modelType = "gpt2"
    public static var presets: [String: any ModelConfiguration] { GPT2Config.presets.mapValues { $0 } }
    public static var loraTargetNames: [String] { GPT2Projection.allCases.map(\.target.name) }

    /// Fields follow transformers' GPT2Config; options this implementation does not compute are
    /// rejected by name rather than silently ignored.
    public static func configuration(hfConfig json: [String: Any], path: String) throws -> any ModelConfiguration {
        func fail(_ reason: String) -> ModelError { .checkpoint(path: path, reason: reason) }
        func int(_ key: String, default value: Int? = nil) throws -> Int {
            if let v = json[key] as? Int {
                // Sizes are products of these: beyond 2³¹ they could overflow before the weights are compared.
                guard v <= Int(Int32.max) else { throw fail("'\(key)' \(v) is beyond 2³¹") }
                return v
            }
            if json[key] == nil || json[key] is NSNull, let value { return value }
            throw fail("'\(key)' must be an integer")
        }
        let activation = json["activation_function"] as? String ?? "gelu_new"
        guard ["gelu_new", "gelu_pytorch_tanh"].contains(activation) else {
            throw fail("activation_function '\(activation)' is not supported (gelu_new or gelu_pytorch_tanh)")
        }
        if let v = json["scale_attn_by_inverse_layer_idx"] as? Bool, v {
            throw fail("scale_attn_by_inverse_layer_idx = true is not supported")
        }
        if let v = json["scale_attn_weights"] as? Bool, !v { throw fail("scale_attn_weights = false is not supported") }
        if let v = json["tie_word_embeddings"] as? Bool, !v {
            throw fail("tie_word_embeddings = false (an untied LM head) is not supported")
        }
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

    /// Tensor names may carry the `transformer.` prefix (GPT2LMHeadModel) or not (GPT2Model); the
    /// causal-mask buffers old checkpoints store are skipped; a stored `lm_head.weight` must equal
    /// wte (GPT-2 ties them).
    public static func load(directory: String, config: any ModelConfiguration) throws -> any CausalLM {
        guard let config = config as? GPT2Config else {
            throw ModelError.invalidConfig("\(directory): not a GPT-2 configuration")
        }
        let path = (directory as NSString).appendingPathComponent("model.safetensors")
        let file = try SafeTensorsFile(path: path)
        // Shapes checked against config.json before the layout is built or the trunk allocated (a huge
        // claim is refused).
        try config.checkClaims(against: file.entries, path: path)
        let layout = GPT2Layout(config: config)
        var placed: [(name: String, tensor: NamedTensor)] = []
        var seen = Set<String>()
        var lmHead: String?
        for name in file.entries.keys {
            let local = name.hasPrefix("transformer.") ? String(name.dropFirst("transformer.".count)) : name
            if local.hasSuffix(".attn.bias") || local.hasSuffix(".attn.masked_bias") { continue }
            if local == "lm_head.weight" {
                lmHead = name
                continue
            }
            guard let tensor = layout.tensors[local] else {
                throw ModelError.checkpoint(path: path, reason: "unexpected tensor '\(name)' for a GPT-2 model")
            }
            guard !seen.contains(local) else {
                throw ModelError.checkpoint(path: path, reason: "tensor '\(local)' appears twice")
            }
            let entry = file.entries[name]!
            guard entry.shape == tensor.shape else {
                throw ModelError.checkpoint(
                    path: path, reason: "tensor '\(name)' has shape \(entry.shape), config.json implies \(tensor.shape)"
                )
            }
            placed.append((name, tensor))
            seen.insert(local)
        }
        let missing = layout.tensors.tensors.map(\.name).filter { !seen.contains($0) }
        guard missing.isEmpty else {
            throw ModelError.checkpoint(
                path: path,
                reason: "missing tensors: " + listing(missing)
            )
        }
        let trunk = try GPT2Trunk(config: config)
        for (name, tensor) in placed {
            try file.read(name, into: trunk.weights.pointer + tensor.offset, count: tensor.count)
        }
        if let lmHead {
            let values = try file.floats(lmHead)
            let wte = trunk.layout.tensors["wte.weight"]!
            guard values.count == wte.count,
                values.elementsEqual(UnsafeBufferPointer(start: trunk.weights.pointer + wte.offset, count: wte.count))
            else {
                throw ModelError.checkpoint(
                    path: path, reason: "'\(lmHead)' differs from wte: untied LM heads are not supported")
            }
        }
        return trunk
    }
}
