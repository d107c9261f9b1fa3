import Foundation

/// Hyper-parameters of a GPT-2-architecture model, named as in Hugging Face's `config.json`
/// (`n_embd`, `n_layer`, …) where they are read and written.
public struct GPT2Config: Codable, Equatable, Sendable {
    public var vocabSize: Int  // V
    public var contextLength: Int  // n_positions: the longest sequence the position table covers
    public var channels: Int  // C = n_embd
    public var layers: Int  // L = n_layer
    public var heads: Int  // H = n_head
    public var innerSize: Int  // MLP width, n_inner (HF: null ⇒ 4C)
    public var layerNormEps: Float
    public var bosTokenId: Int?
    public var eosTokenId: Int?

    public init(
        vocabSize: Int, contextLength: Int, channels: Int, layers: Int, heads: Int,
        innerSize: Int? = nil, layerNormEps: Float = 1e-5, bosTokenId: Int? = nil, eosTokenId: Int? = nil
    ) {
        self.vocabSize = vocabSize
        self.contextLength = contextLength
        self.channels = channels
        self.layers = layers
        self.heads = heads
        self.innerSize = innerSize ?? 4 * channels
        self.layerNormEps = layerNormEps
        self.bosTokenId = bosTokenId
        self.eosTokenId = eosTokenId
    }

    public var headSize: Int { channels / heads }

    /// Throws unless the shape is one this implementation computes correctly.
    public func validate() throws {
        func check(_ ok: Bool, _ message: String) throws { if !ok { throw ModelError.invalidConfig(message) } }
        try check(vocabSize > 0, "vocab_size must be positive, got \(vocabSize)")
        try check(contextLength > 0, "n_positions must be positive, got \(contextLength)")
        try check(
            channels > 0 && layers > 0 && heads > 0 && innerSize > 0,
            "n_embd, n_layer, n_head, n_inner must be positive")
        try check(channels % heads == 0, "n_embd (\(channels)) must be divisible by n_head (\(heads))")
        try check(vocabSize < Int(Int32.max), "vocab_size \(vocabSize) does not fit token ids of 32 bits")
    }

    /// Presets of issue 2 / docs/architecture.md §7. Token ids 256 and 257 of the byte vocabulary are BOS and EOS.
    public static let presets: [String: GPT2Config] = [
        "tiny": GPT2Config(
            vocabSize: 258, contextLength: 128, channels: 128, layers: 4, heads: 4, bosTokenId: 256, eosTokenId: 257),
        "small": GPT2Config(
            vocabSize: 258, contextLength: 256, channels: 384, layers: 6, heads: 6, bosTokenId: 256, eosTokenId: 257),
        "gpt2": GPT2Config(
            vocabSize: 50257, contextLength: 1024, channels: 768, layers: 12, heads: 12, bosTokenId: 50256,
            eosTokenId: 50256),
    ]

    public static func preset(_ name: String) throws -> GPT2Config {
        guard let config = presets[name] else {
            throw ModelError.invalidConfig(
                "unknown preset '\(name)'; presets are \(presets.keys.sorted().joined(separator: ", "))")
        }
        return config
    }
}
