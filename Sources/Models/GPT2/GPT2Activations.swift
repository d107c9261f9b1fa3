import Kernels

/// Everything the GPT-2 trunk's forward saves for its backward, for one batch shape (B, T), plus
/// the backward's scratch. Allocated once and reused across steps of the same shape.
/// M = B·T rows; per-layer buffers are stacked along a leading L axis.
public final class GPT2Activations: TrunkActivations, @unchecked Sendable {
    public let config: GPT2Config
    public let batch: Int, tokens: Int, loraRank: Int

    let tokenIds: UnsafeMutablePointer<Int32>  // [M]
    let encoded: FloatBuffer  // [M, C] token + position embeddings
    let ln1: FloatBuffer  // [L, M, C]
    let ln1Mean: FloatBuffer  // [L, M]
    let ln1Rstd: FloatBuffer  // [L, M]
    let qkv: FloatBuffer  // [L, M, 3C]
    let probs: FloatBuffer  // [L, B, H, T, T]
    let attention: FloatBuffer  // [L, M, C] attention output before c_proj
    let residual2: FloatBuffer  // [L, M, C] after the attention sublayer
    let ln2: FloatBuffer  // [L, M, C]
    let ln2Mean: FloatBuffer  // [L, M]
    let ln2Rstd: FloatBuffer  // [L, M]
    let fc: FloatBuffer  // [L, M, I] before GELU
    let gelu: FloatBuffer  // [L, M, I]
    let residual3: FloatBuffer  // [L, M, C] after the MLP sublayer
    let loraU: FloatBuffer  // [L, P, M, r] x·Aᵀ per LoRA site (P = 4 projections)
    /// Final LayerNorm output: the hidden states every head reads. [B, T, C]
    public let hidden: FloatBuffer
    let lnfMean: FloatBuffer  // [M]
    let lnfRstd: FloatBuffer  // [M]

    lazy var scratch = BackwardScratch(config: config, rows: rows, tokens: tokens, loraRank: loraRank)

    public init(config c: GPT2Config, batch: Int, tokens: Int, loraRank: Int = 0) {
        // A shape beyond the context is allocated, and refused by `forward` with an error naming it.
        self.config = c
        self.batch = batch
        self.tokens = tokens
        self.loraRank = loraRank
        let m = batch * tokens, C = c.channels, L = c.layers, I = c.innerSize
        tokenIds = .allocate(capacity: max(m, 1))
        encoded = FloatBuffer(count: m * C)
        ln1 = FloatBuffer(count: L * m * C)
        ln1Mean = FloatBuffer(count: L * m)
        ln1Rstd = FloatBuffer(count: L * m)
        qkv = FloatBuffer(count: L * m * 3 * C)
        probs = FloatBuffer(count: L * batch * c.heads * tokens * tokens)
        attention = FloatBuffer(count: L * m * C)
        residual2 = FloatBuffer(count: L * m * C)
        ln2 = FloatBuffer(count: L * m * C)
        ln2Mean = FloatBuffer(count: L * m)
        ln2Rstd = FloatBuffer(count: L * m)
        fc = FloatBuffer(count: L * m * I)
        gelu = FloatBuffer(count: L * m * I)
        residual3 = FloatBuffer(count: L * m * C)
        loraU = FloatBuffer(count: L * GPT2Projection.allCases.count * m * loraRank)
        hidden = FloatBuffer(count: m * C)
        lnfMean = FloatBuffer(count: m)
        lnfRstd = FloatBuffer(count: m)
    }

    deinit { tokenIds.deallocate() }

    func loraU(layer: Int, projection: GPT2Projection) -> UnsafeMutablePointer<Float> {
        loraU.pointer + ((layer * GPT2Projection.allCases.count + projection.slot) * rows * loraRank)
    }

    /// `activations` as GPT-2's for a model of `config`, or an error when another model made them.
    static func of(_ activations: any TrunkActivations, for config: GPT2Config) throws -> GPT2Activations {
        guard let act = activations as? GPT2Activations, act.config == config else {
            throw ModelError.input("activations were made for another model")
        }
        return act
    }
}

/// Gradient buffers the backward pass reuses layer after layer.
final class BackwardScratch {
    let dResidual: FloatBuffer  // [M, C] gradient of the residual stream
    let dLn: FloatBuffer  // [M, C]
    let dAttention: FloatBuffer  // [M, C]
    let dQKV: FloatBuffer  // [M, 3C]
    let dGelu: FloatBuffer  // [M, I]
    let dFc: FloatBuffer  // [M, I]
    let dLoRA: FloatBuffer  // [M, r]
    let layerNorm: FloatBuffer  // [2·max(C, I)]
    let attention: FloatBuffer  // [T, T]

    init(config c: GPT2Config, rows m: Int, tokens t: Int, loraRank: Int) {
        dResidual = FloatBuffer(count: m * c.channels)
        dLn = FloatBuffer(count: m * c.channels)
        dAttention = FloatBuffer(count: m * c.channels)
        dQKV = FloatBuffer(count: m * 3 * c.channels)
        dGelu = FloatBuffer(count: m * c.innerSize)
        dFc = FloatBuffer(count: m * c.innerSize)
        dLoRA = FloatBuffer(count: m * max(loraRank, 1))
        layerNorm = FloatBuffer(count: 2 * max(c.channels, c.innerSize))
        attention = FloatBuffer(count: t * t)
    }
}
