import Foundation
import GGUF
import Kernels

/// Llama-family models in llama.cpp's GGUF files: the configuration from the `{arch}.*` metadata,
/// the tensors under llama.cpp's names (`blk.N.attn_q.weight`) mapped to transformers' names, the
/// rows of Q and K put back in transformers' order for `llama`-arch files, whose converter
/// interleaves the rotary halves (`LlamaModel.permute` in llama.cpp's convert_hf_to_gguf.py);
/// NEOX-rope architectures (qwen2) are stored unpermuted. Quantised tensors become Float32.
public enum GGUFModel {
    /// llama.cpp architectures read by the Llama trunk (Mistral files use `llama`).
    static let architectures: [String: LlamaVariant] = ["llama": .llama, "qwen2": .qwen2]

    /// transformers' name (without `model.`) of each llama.cpp tensor name, per layer.
    static let layerNames: [(gguf: String, hf: String)] = [
        ("attn_norm.weight", "input_layernorm.weight"), ("ffn_norm.weight", "post_attention_layernorm.weight"),
        ("attn_q", "self_attn.q_proj"), ("attn_k", "self_attn.k_proj"), ("attn_v", "self_attn.v_proj"),
        ("attn_output", "self_attn.o_proj"),
        ("ffn_gate", "mlp.gate_proj"), ("ffn_up", "mlp.up_proj"), ("ffn_down", "mlp.down_proj"),
    ]
    static let globalNames: [String: String] = [
        "token_embd.weight": "embed_tokens.weight", "output_norm.weight": "norm.weight",
        "output.weight": "lm_head.weight",
    ]

    /// The transformers name of llama.cpp tensor `name`, or nil when it is not one of a Llama model's.
    static func hfName(of name: String) -> String? {
        if let global = globalNames[name] { return global }
        let parts = name.split(separator: ".", maxSplits: 2).map(String.init)
        guard parts.count == 3, parts[0] == "blk", let layer = Int(parts[1]), String(layer) == parts[1] else {
            return nil
        }
        for (gguf, hf) in layerNames {
            if parts[2] == gguf { return "layers.\(layer).\(hf)" }
            if parts[2].hasPrefix(gguf + "."), !gguf.hasSuffix(".weight") {
                return "layers.\(layer).\(hf)" + parts[2].dropFirst(gguf.count)
            }
        }
        return nil
    }

    /// llama.cpp's name of transformers' `name` (the inverse of `hfName`).
    static func ggufName(of name: String) -> String? {
        if let global = globalNames.first(where: { $0.value == name })?.key { return global }
        let parts = name.split(separator: ".", maxSplits: 2).map(String.init)
        guard parts.count == 3, parts[0] == "layers", let layer = Int(parts[1]) else { return nil }
        for (gguf, hf) in layerNames {
            if parts[2] == hf { return "blk.\(layer).\(gguf)" }
            if parts[2].hasPrefix(hf + "."), !hf.hasSuffix(".weight") {
                return "blk.\(layer).\(gguf)" + parts[2].dropFirst(hf.count)
            }
        }
        return nil
    }

    /// The configuration a GGUF file describes; `path` names the file in errors.
    public static func configuration(_ file: GGUFFile) throws -> LlamaConfig {
        func fail(_ reason: String) -> ModelError { .checkpoint(path: file.path, reason: reason) }
        guard let arch = file["general.architecture"]?.string else { throw fail("no general.architecture") }
        guard let variant = architectures[arch] else {
            throw fail(
                "architecture '\(arch)' is not supported (\(architectures.keys.sorted().joined(separator: ", ")))")
        }
        func int(_ key: String, _ fallback: Int? = nil) throws -> Int {
            guard let value = file["\(arch).\(key)"] else {
                if let fallback { return fallback }
                throw fail("missing \(arch).\(key)")
            }
            guard let v = value.int else { throw fail("\(arch).\(key) must be an integer, got \(value.summary)") }
            return v
        }
        func number(_ key: String, _ fallback: Double) throws -> Double {
            guard let value = file["\(arch).\(key)"] else { return fallback }
            guard let v = value.double else { throw fail("\(arch).\(key) must be a number, got \(value.summary)") }
            return v
        }
        try refuseRopeScaling(file, arch: arch)
        guard let embedding = file.tensor("token_embd.weight"), embedding.dimensions.count == 2 else {
            throw fail("no 2-D token_embd.weight")
        }
        let channels = try int("embedding_length"), heads = try int("attention.head_count")
        guard heads > 0 else { throw fail("\(arch).attention.head_count must be positive") }
        let headSize = try int("attention.key_length", channels / heads)
        let rotary = try int("rope.dimension_count", headSize)
        guard rotary == headSize else {
            throw fail(
                "\(arch).rope.dimension_count \(rotary) ≠ head size \(headSize): partial rotary is not supported")
        }
        let tokens = file["tokenizer.ggml.tokens"]?.array?.count
        let bos = file["tokenizer.ggml.bos_token_id"]?.int, eos = file["tokenizer.ggml.eos_token_id"]?.int
        let theta = try number("rope.freq_base", 10000)
        let config = LlamaConfig(
            variant: variant, vocabSize: try int("vocab_size", tokens ?? embedding.dimensions[1]),
            maxPositions: try int("context_length"), channels: channels, layers: try int("block_count"), heads: heads,
            kvHeads: try int("attention.head_count_kv", heads), headSize: headSize,
            innerSize: try int("feed_forward_length"),
            rmsNormEps: Float(try number("attention.layer_norm_rms_epsilon", 1e-5)),
            ropeTheta: theta, ropeScaling: try ropeFactors(file, theta: theta, headSize: headSize),
            tiedEmbeddings: file.tensor("output.weight") == nil,
            qkvBias: file.tensor("blk.0.attn_q.bias") != nil, outputBias: file.tensor("blk.0.attn_output.bias") != nil,
            mlpBias: file.tensor("blk.0.ffn_up.bias") != nil, bosTokenId: bos, eosTokenIds: eos.map { [$0] } ?? [])
        do { try config.validate() } catch { throw fail("\(error)") }
        try checkBiases(config, path: file.path)
        return config
    }

    /// Rope scaling in GGUF metadata (linear, yarn) is not computed: refused. (Llama 3.1's llama3
    /// scaling comes as the rope_freqs tensor instead: `ropeFactors`.)
    static func refuseRopeScaling(_ file: GGUFFile, arch: String) throws {
        if let scaling = file["\(arch).rope.scaling.type"]?.string, scaling != "none" {
            throw ModelError.checkpoint(
                path: file.path, reason: "\(arch).rope.scaling.type '\(scaling)' is not supported")
        }
    }

    /// Llama 3.1's rope_freqs.weight, as llama.cpp's converter writes transformers' llama3 rope
    /// scaling: a divisor r_i of each rotary frequency f_i = θ^(−2i/d) (1 for short wavelengths,
    /// `factor` for long ones, 1/((1−s)/factor + s) between). The llama3 parameters that give them are
    /// recovered (low_freq_factor 1, as every Llama 3.x has; factor, high_freq_factor and the original
    /// context from the divisors) and checked against every divisor; nil without the tensor.
    static func ropeFactors(_ file: GGUFFile, theta: Double, headSize: Int) throws -> Llama3RopeScaling? {
        guard let info = file.tensor("rope_freqs.weight") else { return nil }
        func fail(_ reason: String) -> ModelError {
            .checkpoint(path: file.path, reason: "rope_freqs.weight: " + reason)
        }
        let n = headSize / 2
        guard info.shape == [n] else { throw fail("shape \(info.shape), the head size \(headSize) implies [\(n)]") }
        var factors = [Float](repeating: 0, count: n)
        try factors.withUnsafeMutableBufferPointer { try file.read(info.name, into: $0.baseAddress!, count: n) }
        guard factors.allSatisfy({ $0.isFinite && $0 >= 1 }) else { throw fail("a divisor is not a number ≥ 1") }
        let base = (0..<n).map { 1 / Foundation.pow(theta, Double(2 * $0) / Double(headSize)) }
        let factor = Double(factors.max() ?? 1)
        guard factor > 1 else { return nil }  // all 1: no scaling
        // s_i from each divisor between 1 and `factor`; with low_freq_factor 1, L/λ_i = 1 + s_i·(b − 1).
        let between = (0..<n).filter { factors[$0] > 1 && Double(factors[$0]) < factor }
        guard let first = between.first, let last = between.last, first != last else {
            throw fail("fewer than two divisors between 1 and \(factor): the llama3 parameters cannot be recovered")
        }
        func smooth(_ i: Int) -> Double { (1 / Double(factors[i]) - 1 / factor) / (1 - 1 / factor) }
        let (l1, l2) = (2 * Double.pi / base[first], 2 * Double.pi / base[last])
        let k = (l1 - l2) / (l2 * smooth(last) - l1 * smooth(first))
        let scaling = Llama3RopeScaling(
            factor: factor, lowFrequencyFactor: 1, highFrequencyFactor: 1 + k,
            originalContext: Int((l1 * (1 + smooth(first) * k)).rounded()))
        let scaled = scaling.scale(base.map(Float.init))
        for i in 0..<n where abs(Double(Float(base[i])) / Double(scaled[i]) / Double(factors[i]) - 1) > 1e-4 {
            throw fail("divisor \(i) (\(factors[i])) is not llama3 rope scaling's (recovered: \(scaling))")
        }
        return scaling
    }

    /// The attention biases must be a layout transformers has: q/k/v for qwen2; all or none for llama.
    static func checkBiases(_ config: LlamaConfig, path: String) throws {
        guard config.variant != .qwen2 || config.qkvBias else {
            throw ModelError.checkpoint(
                path: path, reason: "a qwen2 model has q/k/v biases, but blk.0.attn_q.bias is missing")
        }
        guard config.variant != .llama || config.qkvBias == config.outputBias else {
            throw ModelError.checkpoint(
                path: path,
                reason:
                    "attention biases on q/k/v but not on the output (or the reverse) are not a transformers Llama "
                    + "layout"
            )
        }
    }

    /// Reads every tensor of `file` into a new trunk: names mapped, shapes checked against the
    /// configuration, Q/K rows un-interleaved for `llama` files.
    public static func load(_ file: GGUFFile) throws -> any CausalLM {
        let config = try configuration(file)
        func fail(_ reason: String) -> ModelError { .checkpoint(path: file.path, reason: reason) }
        // Every tensor named and shaped as the metadata implies before the trunk is allocated, so
        // a small file claiming a huge model is refused rather than zero-filling its memory.
        let layout = LlamaLayout(config: config).tensors
        var placed: [(info: GGUFTensorInfo, local: String, tensor: NamedTensor)] = []
        var seen = Set<String>()
        for info in file.tensors where info.name != "rope_freqs.weight" {  // read into the configuration
            guard let local = hfName(of: info.name), let tensor = layout[local] else {
                throw fail("unexpected tensor '\(info.name)' for a \(config.variant.rawValue) model of this metadata")
            }
            guard info.shape == tensor.shape else {
                throw fail(
                    "tensor '\(info.name)' (\(local)) has shape \(info.shape), the metadata implies \(tensor.shape)")
            }
            guard seen.insert(local).inserted else { throw fail("tensor '\(info.name)' is a second copy of \(local)") }
            placed.append((info, local, tensor))
        }
        let missing = layout.tensors.map(\.name).filter { !seen.contains($0) }
        guard missing.isEmpty else {
            throw fail("missing tensors: " + listing(missing.map { ggufName(of: $0) ?? $0 }))
        }
        let trunk = try LlamaTrunk(config: config)
        for (info, local, tensor) in placed {
            let destination = trunk.weights.pointer + tensor.offset
            try file.read(info.name, into: destination, count: tensor.count)
            if config.variant == .llama, let heads = rotaryHeads(of: local, config: config) {
                unpermuteRotaryRows(
                    destination, rows: tensor.shape[0], columns: tensor.shape.count > 1 ? tensor.shape[1] : 1,
                    heads: heads)
            }
        }
        return trunk
    }

    /// The head count whose rows llama.cpp interleaved in tensor `local` (q: H, k: G), or nil.
    static func rotaryHeads(of local: String, config: LlamaConfig) -> Int? {
        if local.hasSuffix("self_attn.q_proj.weight") || local.hasSuffix("self_attn.q_proj.bias") {
            return config.heads
        }
        if local.hasSuffix("self_attn.k_proj.weight") || local.hasSuffix("self_attn.k_proj.bias") {
            return config.kvHeads
        }
        return nil
    }

    /// Row r of head h is stored at h·d + 2i + p where transformers has it at h·d + p·d/2 + i
    /// (p ∈ {0, 1}: first or second rotary half, i < d/2). `inverse` applies llama.cpp's permutation
    /// instead (for writing GGUF).
    static func unpermuteRotaryRows(
        _ x: UnsafeMutablePointer<Float>, rows: Int, columns: Int, heads: Int, inverse: Bool = false
    ) {
        let d = rows / heads, half = d / 2
        let copy = Array(UnsafeBufferPointer(start: x, count: rows * columns))
        copy.withUnsafeBufferPointer { src in
            for h in 0..<heads {
                for p in 0..<2 {
                    for i in 0..<half {
                        let hf = h * d + p * half + i, gguf = h * d + 2 * i + p
                        let (to, from) = inverse ? (gguf, hf) : (hf, gguf)
                        (x + to * columns).update(from: src.baseAddress! + from * columns, count: columns)
                    }
                }
            }
        }
    }
}
