/// Where each GPT-2 parameter lives in the flat buffer, under Hugging Face's GPT2Model names.
/// Linear weights keep HF's Conv1D layout [in, out], so y = x·W + b is a plain NN sgemm and a
/// checkpoint loads without transposing anything.
public struct GPT2BlockOffsets: Sendable, Equatable {
    public let ln1Weight, ln1Bias: Int  // [C], [C]
    public let qkvWeight, qkvBias: Int  // attn.c_attn  [C, 3C], [3C]
    public let attnProjWeight, attnProjBias: Int  // attn.c_proj  [C, C], [C]
    public let ln2Weight, ln2Bias: Int  // [C], [C]
    public let fcWeight, fcBias: Int  // mlp.c_fc     [C, I], [I]
    public let fcProjWeight, fcProjBias: Int  // mlp.c_proj   [I, C], [C]
}

public struct GPT2Layout: Sendable, Equatable {
    public let config: GPT2Config
    public let tensors: TensorLayout
    public let tokenEmbedding: Int  // wte [V, C], also the tied LM head
    public let positionEmbedding: Int  // wpe [maxT, C]
    public let blocks: [GPT2BlockOffsets]
    public let lnfWeight, lnfBias: Int  // [C], [C]

    public init(config c: GPT2Config) {
        self.config = c
        var t = TensorLayout()
        let C = c.channels, I = c.innerSize
        tokenEmbedding = t.add("wte.weight", [c.vocabSize, C])
        positionEmbedding = t.add("wpe.weight", [c.contextLength, C])
        var blocks: [GPT2BlockOffsets] = []
        for l in 0..<c.layers {
            let p = "h.\(l)."
            blocks.append(
                GPT2BlockOffsets(
                    ln1Weight: t.add(p + "ln_1.weight", [C]), ln1Bias: t.add(p + "ln_1.bias", [C]),
                    qkvWeight: t.add(p + "attn.c_attn.weight", [C, 3 * C]),
                    qkvBias: t.add(p + "attn.c_attn.bias", [3 * C]),
                    attnProjWeight: t.add(p + "attn.c_proj.weight", [C, C]),
                    attnProjBias: t.add(p + "attn.c_proj.bias", [C]),
                    ln2Weight: t.add(p + "ln_2.weight", [C]), ln2Bias: t.add(p + "ln_2.bias", [C]),
                    fcWeight: t.add(p + "mlp.c_fc.weight", [C, I]), fcBias: t.add(p + "mlp.c_fc.bias", [I]),
                    fcProjWeight: t.add(p + "mlp.c_proj.weight", [I, C]), fcProjBias: t.add(p + "mlp.c_proj.bias", [C]))
            )
        }
        self.blocks = blocks
        lnfWeight = t.add("ln_f.weight", [C])
        lnfBias = t.add("ln_f.bias", [C])
        tensors = t
    }

    public var parameterCount: Int { tensors.totalCount }
}

extension GPT2Layout {
    /// Every block's projection weights (`keepOnlyBF16`); wte (also the LM head) and wpe stay fp32
    /// for their lookups.
    var bf16OnlyRanges: [Range<Int>] {
        let matrices = Set(blocks.flatMap { [$0.qkvWeight, $0.attnProjWeight, $0.fcWeight, $0.fcProjWeight] })
        return tensors.tensors.filter { matrices.contains($0.offset) }.map { $0.offset..<($0.offset + $0.count) }
    }
}
