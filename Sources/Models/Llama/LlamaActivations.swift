import Kernels

/// Everything the Llama trunk's forward saves for its backward, for one batch shape (B, T), plus
/// the backward's scratch. M = B·T rows; per-layer buffers are stacked along a leading L axis.
public final class LlamaActivations: TrunkActivations, @unchecked Sendable {
    public let config: LlamaConfig
    public let batch: Int, tokens: Int, loraRank: Int

    let tokenIds: UnsafeMutablePointer<Int32>  // [M]
    let positions: [Int]  // [M] row → position t
    let encoded: FloatBuffer  // [M, C] token embeddings
    let ln1: FloatBuffer  // [L, M, C] input_layernorm output
    let rstd1: FloatBuffer  // [L, M]
    let q: FloatBuffer  // [L, M, H·d] after rotation
    let k: FloatBuffer  // [L, M, G·d] after rotation
    let v: FloatBuffer  // [L, M, G·d]
    let probs: FloatBuffer  // [L, B, H, T, T]
    let attention: FloatBuffer  // [L, M, H·d] before o_proj
    let residual2: FloatBuffer  // [L, M, C] after the attention sublayer
    let ln2: FloatBuffer  // [L, M, C] post_attention_layernorm output
    let rstd2: FloatBuffer  // [L, M]
    let gate: FloatBuffer  // [L, M, I] gate_proj output
    let up: FloatBuffer  // [L, M, I] up_proj output
    let act: FloatBuffer  // [L, M, I] silu(gate) ⊙ up
    let residual3: FloatBuffer  // [L, M, C] after the MLP sublayer
    let loraU: FloatBuffer  // [L, P, M, r] x·Aᵀ per LoRA site (P = 7 projections)
    /// Final RMSNorm output: the hidden states every head reads. [B, T, C]
    public let hidden: FloatBuffer
    let rstdFinal: FloatBuffer  // [M]

    lazy var scratch = LlamaBackwardScratch(config: config, rows: rows, tokens: tokens, loraRank: loraRank)

    public init(config c: LlamaConfig, batch: Int, tokens: Int, loraRank: Int = 0) {
        // A shape beyond the context is allocated, and refused by `forward` with an error naming it.
        self.config = c
        self.batch = batch
        self.tokens = tokens
        self.loraRank = loraRank
        let m = batch * tokens, C = c.channels, L = c.layers, I = c.innerSize
        tokenIds = .allocate(capacity: max(m, 1))
        positions = (0..<m).map { $0 % max(tokens, 1) }
        encoded = FloatBuffer(count: m * C)
        ln1 = FloatBuffer(count: L * m * C)
        rstd1 = FloatBuffer(count: L * m)
        q = FloatBuffer(count: L * m * c.queryWidth)
        k = FloatBuffer(count: L * m * c.kvWidth)
        v = FloatBuffer(count: L * m * c.kvWidth)
        probs = FloatBuffer(count: L * batch * c.heads * tokens * tokens)
        attention = FloatBuffer(count: L * m * c.queryWidth)
        residual2 = FloatBuffer(count: L * m * C)
        ln2 = FloatBuffer(count: L * m * C)
        rstd2 = FloatBuffer(count: L * m)
        gate = FloatBuffer(count: L * m * I)
        up = FloatBuffer(count: L * m * I)
        act = FloatBuffer(count: L * m * I)
        residual3 = FloatBuffer(count: L * m * C)
        loraU = FloatBuffer(count: L * LlamaProjection.allCases.count * m * loraRank)
        hidden = FloatBuffer(count: m * C)
        rstdFinal = FloatBuffer(count: m)
    }

    deinit { tokenIds.deallocate() }

    func loraU(layer: Int, projection: LlamaProjection) -> UnsafeMutablePointer<Float> {
        loraU.pointer + ((layer * LlamaProjection.allCases.count + projection.slot) * rows * loraRank)
    }

    /// Layer l's slices of the saved buffers.
    func buffers(layer l: Int) -> LlamaBlockBuffers {
        let m = rows, C = config.channels, I = config.innerSize
        return LlamaBlockBuffers(
            ln1: ln1.pointer + l * m * C, rstd1: rstd1.pointer + l * m,
            q: q.pointer + l * m * config.queryWidth, k: k.pointer + l * m * config.kvWidth,
            v: v.pointer + l * m * config.kvWidth,
            attention: attention.pointer + l * m * config.queryWidth, residual2: residual2.pointer + l * m * C,
            ln2: ln2.pointer + l * m * C, rstd2: rstd2.pointer + l * m,
            gate: gate.pointer + l * m * I, up: up.pointer + l * m * I, act: act.pointer + l * m * I,
            residual3: residual3.pointer + l * m * C)
    }

    /// `activations` as Llama's for a model of `config`, or an error when another model made them.
    static func of(_ activations: any TrunkActivations, for config: LlamaConfig) throws -> LlamaActivations {
        guard let act = activations as? LlamaActivations, act.config == config else {
            throw ModelError.input("activations were made for another model")
        }
        return act
    }
}

/// Where one decoder layer's forward writes its intermediate results (shapes as in
/// LlamaActivations, one layer).
struct LlamaBlockBuffers {
    let ln1, rstd1, q, k, v, attention, residual2, ln2, rstd2, gate, up, act, residual3: UnsafeMutablePointer<Float>

    /// One layer's worth of buffers for M rows, owned by `storage` (inference and decoding reuse
    /// them layer after layer).
    static func allocate(config c: LlamaConfig, rows m: Int) -> (LlamaBlockBuffers, [FloatBuffer]) {
        let C = c.channels, I = c.innerSize
        let sizes = [
            m * C, m, m * c.queryWidth, m * c.kvWidth, m * c.kvWidth, m * c.queryWidth, m * C, m * C, m, m * I, m * I,
            m * I, m * C,
        ]
        let storage = sizes.map { FloatBuffer(count: $0) }
        let p = storage.map(\.pointer)
        return (
            LlamaBlockBuffers(
                ln1: p[0], rstd1: p[1], q: p[2], k: p[3], v: p[4], attention: p[5], residual2: p[6],
                ln2: p[7], rstd2: p[8], gate: p[9], up: p[10], act: p[11], residual3: p[12]), storage
        )
    }
}

/// Gradient buffers the backward pass reuses layer after layer.
final class LlamaBackwardScratch {
    let dResidual: FloatBuffer  // [M, C] gradient of the residual stream
    let dLn: FloatBuffer  // [M, C]
    let dAttention: FloatBuffer  // [M, H·d]
    let dq: FloatBuffer  // [M, H·d]
    let dk: FloatBuffer  // [M, G·d]
    let dv: FloatBuffer  // [M, G·d]
    let dAct: FloatBuffer  // [M, I]
    let dGate: FloatBuffer  // [M, I]
    let dUp: FloatBuffer  // [M, I]
    let dLoRA: FloatBuffer  // [M, r]
    let norm: FloatBuffer  // [2C]
    let attention: FloatBuffer  // [T, T]

    init(config c: LlamaConfig, rows m: Int, tokens t: Int, loraRank: Int) {
        dResidual = FloatBuffer(count: m * c.channels)
        dLn = FloatBuffer(count: m * c.channels)
        dAttention = FloatBuffer(count: m * c.queryWidth)
        dq = FloatBuffer(count: m * c.queryWidth)
        dk = FloatBuffer(count: m * c.kvWidth)
        dv = FloatBuffer(count: m * c.kvWidth)
        dAct = FloatBuffer(count: m * c.innerSize)
        dGate = FloatBuffer(count: m * c.innerSize)
        dUp = FloatBuffer(count: m * c.innerSize)
        dLoRA = FloatBuffer(count: m * max(loraRank, 1))
        norm = FloatBuffer(count: 2 * c.channels)
        attention = FloatBuffer(count: t * t)
    }
}
