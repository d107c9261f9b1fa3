import Foundation

/// The Hugging Face architectures the Llama trunk computes. They differ only in defaults and
/// which projections carry biases: Qwen2 always biases q/k/v; Llama biases q/k/v/o with
/// `attention_bias` and the MLP with `mlp_bias`; Mistral has none.
public enum LlamaVariant: String, Sendable, CaseIterable {
    case llama, qwen2, mistral
    var architecture: String {
        ["llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "mistral": "MistralForCausalLM"][rawValue]!
    }
}

/// Llama 3's rotary frequency scaling (`rope_type: llama3`, Llama-3.1/3.2): long wavelengths are
/// divided by `factor`, short ones kept, the band between interpolated (transformers'
/// `_compute_llama3_parameters`).
public struct Llama3RopeScaling: Sendable, Equatable {
    public var factor: Double, lowFrequencyFactor: Double, highFrequencyFactor: Double, originalContext: Int

    public init(factor: Double, lowFrequencyFactor: Double, highFrequencyFactor: Double, originalContext: Int) {
        self.factor = factor
        self.lowFrequencyFactor = lowFrequencyFactor
        self.highFrequencyFactor = highFrequencyFactor
        self.originalContext = originalContext
    }

    func scale(_ frequencies: [Float]) -> [Float] {
        let lowWavelength = Double(originalContext) / lowFrequencyFactor
        let highWavelength = Double(originalContext) / highFrequencyFactor
        return frequencies.map { f32 in
            let f = Double(f32), wavelength = 2 * Double.pi / f
            if wavelength < highWavelength { return f32 }
            if wavelength > lowWavelength { return Float(f / factor) }
            let smooth =
                (Double(originalContext) / wavelength - lowFrequencyFactor) / (highFrequencyFactor - lowFrequencyFactor)
            return Float((1 - smooth) * f / factor + smooth * f)
        }
    }
}

/// Hyper-parameters of a Llama-family model, named as in transformers' LlamaConfig where they are
/// read and written (`hidden_size`, `num_key_value_heads`, …).
public struct LlamaConfig: Equatable, Sendable {
    public var variant: LlamaVariant
    public var vocabSize: Int  // V
    public var maxPositions: Int  // max_position_embeddings
    public var channels: Int  // C = hidden_size
    public var layers: Int  // L
    public var heads: Int  // H query heads
    public var kvHeads: Int  // G key/value heads
    public var headSize: Int  // d = head_dim (C/H unless given)
    public var innerSize: Int  // I = intermediate_size
    public var rmsNormEps: Float
    public var ropeTheta: Double
    public var ropeScaling: Llama3RopeScaling?
    public var tiedEmbeddings: Bool  // tie_word_embeddings: the LM head is embed_tokens
    public var qkvBias: Bool, outputBias: Bool, mlpBias: Bool
    /// Mistral's (or Qwen2's, when used) sliding attention window; the context is capped by it.
    public var slidingWindow: Int?
    public var bosTokenId: Int?
    public var eosTokenIds: [Int]

    public init(
        variant: LlamaVariant = .llama, vocabSize: Int, maxPositions: Int, channels: Int, layers: Int, heads: Int,
        kvHeads: Int? = nil,
        headSize: Int? = nil, innerSize: Int, rmsNormEps: Float = 1e-5, ropeTheta: Double = 10000,
        ropeScaling: Llama3RopeScaling? = nil,
        tiedEmbeddings: Bool = true, qkvBias: Bool = false, outputBias: Bool = false, mlpBias: Bool = false,
        slidingWindow: Int? = nil,
        bosTokenId: Int? = nil, eosTokenIds: [Int] = []
    ) {
        self.variant = variant
        self.vocabSize = vocabSize
        self.maxPositions = maxPositions
        self.channels = channels
        self.layers = layers
        self.heads = heads
        self.kvHeads = kvHeads ?? heads
        self.headSize = headSize ?? channels / max(heads, 1)
        self.innerSize = innerSize
        self.rmsNormEps = rmsNormEps
        self.ropeTheta = ropeTheta
        self.ropeScaling = ropeScaling
        self.tiedEmbeddings = tiedEmbeddings
        self.qkvBias = qkvBias
        self.outputBias = outputBias
        self.mlpBias = mlpBias
        self.slidingWindow = slidingWindow
        self.bosTokenId = bosTokenId
        self.eosTokenIds = eosTokenIds
    }

    /// The longest sequence computed exactly: the position limit, or a shorter sliding window
    /// (beyond it Mistral attends to a window only, which this implementation does not do).
    public var contextLength: Int { min(maxPositions, slidingWindow ?? Int.max) }
    var queryWidth: Int { heads * headSize }  // H·d
    var kvWidth: Int { kvHeads * headSize }  // G·d

    /// The rotary frequencies θ^(−2i/d) for i < d/2 (transformers' default rope), scaled as
    /// `ropeScaling` says.
    var rotaryFrequencies: [Float] { rotaryFrequencies(unscaled: false) }

    /// The same before `ropeScaling` (`unscaled`).
    func rotaryFrequencies(unscaled: Bool) -> [Float] {
        let base = (0..<(headSize / 2)).map { Float(1 / Foundation.pow(ropeTheta, Double(2 * $0) / Double(headSize))) }
        return unscaled ? base : ropeScaling.map { $0.scale(base) } ?? base
    }

    /// Throws unless the shape is one this implementation computes correctly.
    public func validate() throws {
        func check(_ ok: Bool, _ message: String) throws { if !ok { throw ModelError.invalidConfig(message) } }
        try check(vocabSize > 0 && vocabSize < Int(Int32.max), "vocab_size must be in 1..<2³¹, got \(vocabSize)")
        try check(maxPositions > 0, "max_position_embeddings must be positive, got \(maxPositions)")
        try check(
            channels > 0 && layers > 0 && heads > 0 && kvHeads > 0 && innerSize > 0 && headSize > 0,
            "hidden_size, num_hidden_layers, num_attention_heads, num_key_value_heads, intermediate_size and "
                + "head_dim must be positive"
        )
        try check(
            heads % kvHeads == 0,
            "num_attention_heads (\(heads)) must be a multiple of num_key_value_heads (\(kvHeads))")
        try check(headSize % 2 == 0, "head_dim (\(headSize)) must be even for rotary embeddings")
        try check(rmsNormEps > 0, "rms_norm_eps must be positive")
        try check(ropeTheta > 0, "rope_theta must be positive")
        if let w = slidingWindow { try check(w > 0, "sliding_window must be positive, got \(w)") }
        // Sizes a CPU can hold (and whose products cannot overflow): every dimension < 2²⁴,
        // fewer than 10¹¹ parameters, rotary tables for at most 2¹⁸ positions.
        let limit = 1 << 24
        try check(
            [vocabSize, channels, innerSize, heads * headSize, kvHeads * headSize].allSatisfy { $0 < limit }
                && layers < 4096,
            "a dimension is too large for this implementation (hidden_size, intermediate_size, vocab_size, heads × "
                + "head_dim < 2²⁴, layers < 4096)"
        )
        let perLayer =
            Double(channels) * Double(2 * heads * headSize + 2 * kvHeads * headSize) + 3 * Double(channels)
            * Double(innerSize)
        try check(
            Double(layers) * perLayer + 2 * Double(vocabSize) * Double(channels) < 1e11,
            "the model has more than 10¹¹ parameters")
        try check(
            contextLength <= 1 << 18,
            "max_position_embeddings \(maxPositions) is above 2¹⁸ (262144), more than this implementation tabulates")
    }

    /// Shapes for `model.family: llama` with `model.preset` (byte vocabulary: ids 256 and 257 are
    /// BOS and EOS), and the shape of SmolLM2-135M for benchmarks.
    public static let presets: [String: LlamaConfig] = [
        "tiny": LlamaConfig(
            vocabSize: 258, maxPositions: 128, channels: 128, layers: 4, heads: 4, kvHeads: 2, innerSize: 352,
            bosTokenId: 256, eosTokenIds: [257]),
        "small": LlamaConfig(
            vocabSize: 258, maxPositions: 256, channels: 384, layers: 6, heads: 6, kvHeads: 2, innerSize: 1024,
            bosTokenId: 256, eosTokenIds: [257]),
        "smollm2-135m": LlamaConfig(
            vocabSize: 49152, maxPositions: 8192, channels: 576, layers: 30, heads: 9, kvHeads: 3, innerSize: 1536,
            ropeTheta: 100000, bosTokenId: 1, eosTokenIds: [2]),
    ]

    /// The shape of Qwen2.5-0.5B (its config.json) for benchmarks and the cluster model.
    public static let qwen2Presets: [String: LlamaConfig] = [
        "qwen2.5-0.5b": LlamaConfig(
            variant: .qwen2, vocabSize: 151936, maxPositions: 32768, channels: 896, layers: 24, heads: 14, kvHeads: 2,
            innerSize: 4864, rmsNormEps: 1e-6, ropeTheta: 1_000_000, qkvBias: true, bosTokenId: 151643,
            eosTokenIds: [151643])
    ]
}
