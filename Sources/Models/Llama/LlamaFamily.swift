import Foundation
import Kernels

extension LlamaConfig: ModelConfiguration {
    public var modelType: String { variant.rawValue }
    /// A sliding window shorter than max_position_embeddings caps the context.
    public var contextNote: String {
        contextLength < maxPositions
            ? " (sliding_window \(contextLength) < max_position_embeddings \(maxPositions); longer sequences need "
                + "sliding-window attention, which is not implemented)"
            : ""
    }
    public var eosTokenId: Int? { eosTokenIds.first }
    public var parameterLayout: TensorLayout { LlamaLayout(config: self).tensors }
    public var bf16OnlyRanges: [Range<Int>] { LlamaLayout(config: self).bf16OnlyRanges }

    public func parameterGroup(of name: String) -> ParameterGroup {
        name.hasPrefix("embed_tokens") || name.hasPrefix("lm_head")
            ? .embeddings
            : name == "norm.weight"
                ? .finalNorm
                : name.contains(".self_attn.") ? .attention : name.contains(".mlp.") ? .mlp : .blockNorms
    }

    public var loraProjections: [LoRAProjection] {
        let C = channels, I = innerSize
        let shapes = [(C, queryWidth), (C, kvWidth), (C, kvWidth), (queryWidth, C), (C, I), (C, I), (I, C)]
        return LlamaProjection.allCases.map {
            LoRAProjection($0.target, input: shapes[$0.slot].0, output: shapes[$0.slot].1)
        }
    }
    public func loraModulePath(layer: Int, target: LoRATarget) -> String {
        let module = LlamaProjection.allCases.first { $0.target == target }?.module ?? target.name
        return "layers.\(layer).\(module)"
    }
    public var peftTensorPrefix: String { "base_model.model.model." }
    public var loraFanInFanOut: Bool { false }  // nn.Linear modules

    public func withVocabulary(size: Int, bosTokenId: Int?, eosTokenId: Int?) -> any ModelConfiguration {
        var c = self
        c.vocabSize = size
        c.bosTokenId = bosTokenId
        c.eosTokenIds = eosTokenId.map { [$0] } ?? []
        return c
    }

    public func makeModel(weights: FloatBuffer?) throws -> any CausalLM {
        try LlamaTrunk(config: self, weights: weights)
    }

    public func hfConfigJSON() -> [String: Any] {
        var json: [String: Any] = [
            "architectures": [variant.architecture], "model_type": variant.rawValue,
            "vocab_size": vocabSize, "max_position_embeddings": maxPositions, "hidden_size": channels,
            "intermediate_size": innerSize, "num_hidden_layers": layers, "num_attention_heads": heads,
            "num_key_value_heads": kvHeads, "head_dim": headSize, "hidden_act": "silu",
            "rms_norm_eps": Double(rmsNormEps),
            "rope_theta": ropeTheta, "tie_word_embeddings": tiedEmbeddings, "attention_dropout": 0.0,
            "initializer_range": 0.02, "use_cache": true, "torch_dtype": "float32",
        ]
        switch variant {
        case .llama:
            json["attention_bias"] = qkvBias
            json["mlp_bias"] = mlpBias
        case .qwen2:
            json["use_sliding_window"] = slidingWindow != nil
            json["sliding_window"] = slidingWindow ?? NSNull()
        case .mistral: json["sliding_window"] = slidingWindow ?? NSNull()
        }
        if let s = ropeScaling {
            json["rope_scaling"] = [
                "rope_type": "llama3", "factor": s.factor, "low_freq_factor": s.lowFrequencyFactor,
                "high_freq_factor": s.highFrequencyFactor, "original_max_position_embeddings": s.originalContext,
            ]
        }
        if let bos = bosTokenId { json["bos_token_id"] = bos }
        if eosTokenIds.count == 1 {
            json["eos_token_id"] = eosTokenIds[0]
        } else if !eosTokenIds.isEmpty {
            json["eos_token_id"] = eosTokenIds
        }
        return json
    }

    /// `LlamaActivations`: per layer ln1, residual2, ln2, residual3 (C each), q and attention
    /// (H·d), k and v (G·d), gate, up and act (I each), two rstd, the LoRA rows (7 projections × r)
    /// and the probabilities [B, H, T, T]; the embedding and hidden rows; `LlamaBackwardScratch`
    /// (dResidual, dLn: C; dAttention, dq: H·d; dk, dv: G·d; dAct, dGate, dUp: I; dLoRA: r).
    public func trainingActivationBytes(batch: Int, tokens: Int, loraRank: Int, lmHead: Bool) -> Double {
        let m = Double(batch * tokens), C = Double(channels), I = Double(innerSize), r = Double(loraRank)
        let qw = Double(queryWidth), kw = Double(kvWidth)
        let perLayer = m * (4 * C + 2 * qw + 2 * kw + 3 * I + 2 + 7 * r) + Double(batch * heads * tokens * tokens)
        let scratch = m * (2 * C + 2 * qw + 2 * kw + 3 * I + max(r, 1)) + 2 * C + Double(tokens * tokens)
        let head = lmHead ? m * Double(vocabSize + 2) + Double(vocabSize) : 0
        return 4 * (Double(layers) * perLayer + m * (2 * C + 2) + scratch + head)
    }

    /// `LlamaBlockBuffers` (ln1, residual2, ln2, residual3: C; q, attention: H·d; k, v: G·d;
    /// gate, up, act: I; two rstd), the residual and hidden rows (C each) and a final rstd, the
    /// attention probabilities [B, H, T, T] and the LoRA branch rows (7 projections × r).
    public func inferenceActivationBytes(batch: Int, tokens: Int, loraRank: Int) -> Double {
        let m = Double(batch * tokens), C = Double(channels), I = Double(innerSize)
        let perRow = 6 * C + 2 * Double(queryWidth) + 2 * Double(kvWidth) + 3 * I + 3 + 7 * Double(max(loraRank, 1))
        return 4 * (m * perRow + Double(batch * heads * tokens * tokens))
    }

    /// What `forward` issues to sgemm, including the full T×T attention products.
    public func forwardFLOPs(batch b: Int, tokens t: Int) -> Double {
        let m = Double(b * t), C = Double(channels), I = Double(innerSize)
        let linear = 2 * m * (C * Double(queryWidth) * 2 + 2 * C * Double(kvWidth) + 3 * C * I)
        let attention = 4 * Double(b) * Double(t) * Double(t) * Double(queryWidth)
        return Double(layers) * (linear + attention) + 2 * m * C * Double(vocabSize)
    }
}

/// Reads transformers' config.json of the Llama-family architectures: defaults as transformers'
/// config classes have them; options this implementation does not compute refused by name.
enum LlamaConfigReader {
    static func read(_ json: [String: Any], path: String, variant: LlamaVariant) throws -> LlamaConfig {
        func fail(_ reason: String) -> ModelError { .checkpoint(path: path, reason: reason) }
        func present(_ key: String) -> Bool { !(json[key] == nil || json[key] is NSNull) }
        func int(_ key: String, _ fallback: Int? = nil) throws -> Int {
            if let v = json[key] as? Int { return v }
            if !present(key), let fallback { return fallback }
            throw fail("'\(key)' must be an integer\(present(key) ? "" : " (missing)")")
        }
        func number(_ key: String, _ fallback: Double, in dict: [String: Any]? = nil) throws -> Double {
            let value = (dict ?? json)[key]
            if value == nil || value is NSNull { return fallback }
            guard let v = value as? Double else { throw fail("'\(key)' must be a number") }
            return v
        }
        let activation = json["hidden_act"] as? String ?? "silu"
        guard activation == "silu" else { throw fail("hidden_act '\(activation)' is not supported (silu)") }
        if let p = json["attention_dropout"] as? Double, p != 0 {
            throw fail("attention_dropout \(p) is not supported (this implementation has no dropout; set 0)")
        }
        let heads = try int("num_attention_heads")
        let channels = try int("hidden_size")
        // Sliding windows: Mistral's applies whenever set; Qwen2's only with use_sliding_window.
        // MistralConfig's sliding_window defaults to 4096 when the key is absent; null means none.
        var window: Int?
        if variant == .mistral {
            window =
                json["sliding_window"] == nil ? 4096 : (present("sliding_window") ? try int("sliding_window") : nil)
        }
        if variant == .qwen2 && (json["use_sliding_window"] as? Bool) == true {
            window = present("sliding_window") ? try int("sliding_window") : nil
        }
        let (theta, scaling) = try rope(json, fail: fail)
        let eos: [Int]
        if let one = json["eos_token_id"] as? Int {
            eos = [one]
        } else if let list = json["eos_token_id"] as? [Int] {
            eos = list
        } else if present("eos_token_id") {
            throw fail("'eos_token_id' must be an integer or a list of integers")
        } else {
            eos = []
        }
        let config = LlamaConfig(
            variant: variant, vocabSize: try int("vocab_size"), maxPositions: try int("max_position_embeddings", 2048),
            channels: channels,
            layers: try int("num_hidden_layers"), heads: heads, kvHeads: try int("num_key_value_heads", heads),
            headSize: try int("head_dim", heads > 0 ? channels / heads : 0), innerSize: try int("intermediate_size"),
            rmsNormEps: Float(try number("rms_norm_eps", 1e-6)), ropeTheta: theta, ropeScaling: scaling,
            tiedEmbeddings: json["tie_word_embeddings"] as? Bool ?? false,
            qkvBias: variant == .qwen2 || (variant == .llama && json["attention_bias"] as? Bool == true),
            outputBias: variant == .llama && json["attention_bias"] as? Bool == true,
            mlpBias: variant == .llama && json["mlp_bias"] as? Bool == true,
            slidingWindow: window, bosTokenId: json["bos_token_id"] as? Int, eosTokenIds: eos)
        do { try config.validate() } catch { throw fail("\(error)") }
        return config
    }

    /// θ and the scaling, from `rope_parameters` (transformers 5) or `rope_theta` + `rope_scaling`
    /// (older files); scaling types other than llama3 are refused by name.
    static func rope(_ json: [String: Any], fail: (String) -> ModelError) throws -> (Double, Llama3RopeScaling?) {
        var parameters = json["rope_scaling"] as? [String: Any]
        var theta = json["rope_theta"] as? Double ?? 10000
        if let p = json["rope_parameters"] as? [String: Any] {
            guard p["rope_type"] != nil || p["rope_theta"] != nil else {
                throw fail(
                    "'rope_parameters' per layer type (\(p.keys.sorted().joined(separator: ", "))) is not supported")
            }
            parameters = p
            theta = p["rope_theta"] as? Double ?? theta
        }
        let type = parameters?["rope_type"] as? String ?? parameters?["type"] as? String ?? "default"
        switch type {
        case "default": return (theta, nil)
        case "llama3":
            guard let p = parameters, let factor = p["factor"] as? Double, let low = p["low_freq_factor"] as? Double,
                let high = p["high_freq_factor"] as? Double,
                let original = p["original_max_position_embeddings"] as? Int, high > low, factor > 0
            else {
                throw fail(
                    "rope type llama3 needs factor, low_freq_factor < high_freq_factor and "
                        + "original_max_position_embeddings"
                )
            }
            return (
                theta,
                Llama3RopeScaling(
                    factor: factor, lowFrequencyFactor: low, highFrequencyFactor: high, originalContext: original)
            )
        default:
            throw fail("rope type '\(type)' is not supported (default, llama3)")
        }
    }
}

/// Llama-family weights: `model.`-prefixed tensors (or bare LlamaModel names), an `lm_head.weight`
/// when untied; a stored head of a tied model must equal embed_tokens; old rotary buffers skipped.
enum LlamaWeightsReader {
    static func load(directory: String, config: any ModelConfiguration) throws -> any CausalLM {
        guard let config = config as? LlamaConfig else {
            throw ModelError.invalidConfig("\(directory): not a Llama-family configuration")
        }
        let weights = try HFWeights(directory: directory)
        // Every tensor named and shaped as config.json implies before the trunk is allocated, so a
        // config.json claiming a huge model beside small weights is refused, not zero-filled.
        try config.checkClaims(against: weights.entries.mapValues(\.entry.shape), path: weights.path)
        let tensors = LlamaLayout(config: config).tensors
        var placed: [(name: String, tensor: NamedTensor)] = []
        var seen = Set<String>(), tiedHead: String?
        for name in weights.entries.keys.sorted() {
            let local = name.hasPrefix("model.") ? String(name.dropFirst("model.".count)) : name
            if local.hasSuffix("rotary_emb.inv_freq") { continue }
            if local == "lm_head.weight" && config.tiedEmbeddings {
                tiedHead = name
                continue
            }
            guard let tensor = tensors[local] else {
                throw ModelError.checkpoint(
                    path: weights.path,
                    reason: "unexpected tensor '\(name)' for a \(config.variant.rawValue) model of this config.json")
            }
            guard !seen.contains(local) else {
                throw ModelError.checkpoint(path: weights.path, reason: "tensor '\(local)' appears twice")
            }
            let entry = weights.entries[name]!.entry
            guard entry.shape == tensor.shape else {
                throw ModelError.checkpoint(
                    path: weights.path,
                    reason: "tensor '\(name)' has shape \(entry.shape), config.json implies \(tensor.shape)")
            }
            placed.append((name, tensor))
            seen.insert(local)
        }
        let missing = tensors.tensors.map(\.name).filter { !seen.contains($0) }
        guard missing.isEmpty else {
            throw ModelError.checkpoint(
                path: weights.path,
                reason: "missing tensors: " + listing(missing)
            )
        }
        let trunk = try LlamaTrunk(config: config)
        for (name, tensor) in placed {
            try weights.read(name, into: trunk.weights.pointer + tensor.offset, count: tensor.count)
        }
        if let tiedHead {
            let values = try weights.floats(tiedHead), embedding = tensors["embed_tokens.weight"]!
            guard
                values.elementsEqual(
                    UnsafeBufferPointer(start: trunk.weights.pointer + embedding.offset, count: embedding.count))
            else {
                throw ModelError.checkpoint(
                    path: weights.path,
                    reason: "'\(tiedHead)' differs from embed_tokens but tie_word_embeddings is true")
            }
        }
        return trunk
    }
}

/// A Hugging Face architecture computed by the Llama trunk: config.json is read with the
/// variant's defaults and biases, the weights by transformers' Llama names.
public protocol LlamaArchitecture: ModelFamily {
    static var variant: LlamaVariant { get }
}

extension LlamaArchitecture {
    public static var modelType: String { variant.rawValue }
    public static var loraTargetNames: [String] { LlamaProjection.names }
    public static func configuration(hfConfig json: [String: Any], path: String) throws -> any ModelConfiguration {
        try LlamaConfigReader.read(json, path: path, variant: variant)
    }
    public static func load(directory: String, config: any ModelConfiguration) throws -> any CausalLM {
        try LlamaWeightsReader.load(directory: directory, config: config)
    }
}

/// Llama (Touvron et al. 2023; transformers' LlamaForCausalLM), incl. SmolLM2, TinyLlama, Llama 3.x.
public enum LlamaFamily: LlamaArchitecture {
    public static let variant = LlamaVariant.llama
    public static var presets: [String: any ModelConfiguration] { LlamaConfig.presets.mapValues { $0 } }
}

/// Qwen2 and Qwen2.5 (transformers' Qwen2ForCausalLM): the Llama trunk with q/k/v biases.
public enum Qwen2Family: LlamaArchitecture {
    public static let variant = LlamaVariant.qwen2
    public static var presets: [String: any ModelConfiguration] { LlamaConfig.qwen2Presets.mapValues { $0 } }
}

/// Mistral (transformers' MistralForCausalLM): the Llama trunk; a sliding window caps the context.
public enum MistralFamily: LlamaArchitecture {
    public static let variant = LlamaVariant.mistral
    public static var presets: [String: any ModelConfiguration] { [:] }
}
