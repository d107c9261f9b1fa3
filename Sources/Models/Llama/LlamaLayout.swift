/// Llama's LoRA projections, by PEFT's module names, in the order an adapter stores them.
enum LlamaProjection: Int, CaseIterable {
    case query, key, value, output, gate, up, down

    static let names = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    var target: LoRATarget { LoRATarget(Self.names[rawValue]) }
    /// Index of the projection in an adapter's sites of one layer.
    var slot: Int { rawValue }
    /// The module inside a decoder layer ("self_attn.q_proj", "mlp.up_proj").
    var module: String { (rawValue < 4 ? "self_attn." : "mlp.") + Self.names[rawValue] }
}

/// Offsets of one decoder layer's tensors; a bias is nil when the variant has none.
/// nn.Linear weights are [out, in], as transformers stores them.
struct LlamaLayerOffsets: Sendable, Equatable {
    let inputNorm: Int  // input_layernorm [C]
    // per LlamaProjection: q [H·d, C], k and v [G·d, C], o [C, H·d], gate and up [I, C], down [C, I]
    let weights: [Int]
    let biases: [Int?]  // per LlamaProjection
    let postAttentionNorm: Int  // post_attention_layernorm [C]
}

/// Where each parameter lives in the flat buffer, under transformers' LlamaModel names (the
/// `model.` prefix omitted; an untied head as `lm_head.weight`).
struct LlamaLayout: Sendable, Equatable {
    let tensors: TensorLayout
    let tokenEmbedding: Int  // embed_tokens [V, C]
    let layers: [LlamaLayerOffsets]
    let finalNorm: Int  // norm [C]
    let lmHead: Int  // lm_head [V, C], or embed_tokens when tied

    init(config c: LlamaConfig) {
        var t = TensorLayout()
        let C = c.channels
        tokenEmbedding = t.add("embed_tokens.weight", [c.vocabSize, C])
        let shapes = [
            [c.queryWidth, C], [c.kvWidth, C], [c.kvWidth, C], [C, c.queryWidth], [c.innerSize, C], [c.innerSize, C],
            [C, c.innerSize],
        ]
        let hasBias = [c.qkvBias, c.qkvBias, c.qkvBias, c.outputBias, c.mlpBias, c.mlpBias, c.mlpBias]
        layers = (0..<c.layers).map { l in
            let p = "layers.\(l)."
            let inputNorm = t.add(p + "input_layernorm.weight", [C])
            var weights: [Int] = [], biases: [Int?] = []
            for projection in LlamaProjection.allCases {
                let name = p + projection.module
                weights.append(t.add(name + ".weight", shapes[projection.slot]))
                biases.append(hasBias[projection.slot] ? t.add(name + ".bias", [shapes[projection.slot][0]]) : nil)
            }
            return LlamaLayerOffsets(
                inputNorm: inputNorm, weights: weights, biases: biases,
                postAttentionNorm: t.add(p + "post_attention_layernorm.weight", [C]))
        }
        finalNorm = t.add("norm.weight", [C])
        lmHead = c.tiedEmbeddings ? tokenEmbedding : t.add("lm_head.weight", [c.vocabSize, C])
        tensors = t
    }
}

extension LlamaLayout {
    /// Every projection's weight and an untied LM head (`keepOnlyBF16`); the token embedding (also
    /// the tied LM head) stays fp32 for its lookups.
    var bf16OnlyRanges: [Range<Int>] {
        let matrices = Set((lmHead == tokenEmbedding ? [] : [lmHead]) + layers.flatMap(\.weights))
        return tensors.tensors.filter { matrices.contains($0.offset) }.map { $0.offset..<($0.offset + $0.count) }
    }
}
