import Kernels

/// The Llama-family trunk (Touvron et al. 2023; transformers' LlamaModel, Qwen2Model,
/// MistralModel): token embeddings, L pre-RMSNorm decoder layers — rotary grouped-query
/// attention and a SwiGLU MLP — and the final RMSNorm. All parameters live in one flat buffer.
///
/// As with GPT-2, adapters and heads are arguments of forward/backward, never state, so one
/// trunk object serves every role of the Hydra layout.
public final class LlamaTrunk: CausalLM, @unchecked Sendable {
    public let llama: LlamaConfig
    public var config: any ModelConfiguration { llama }
    let layout: LlamaLayout
    public let weights: FloatBuffer
    public let matmulWeights = MatmulWeights()
    let rotary: RotaryTable

    public init(config: LlamaConfig, weights: FloatBuffer? = nil) throws {
        try config.validate()
        llama = config
        layout = LlamaLayout(config: config)
        if let weights {
            guard weights.count == layout.tensors.totalCount else {
                throw ModelError.invalidConfig(
                    "weights hold \(weights.count) floats, layout needs \(layout.tensors.totalCount)")
            }
            self.weights = weights
        } else {
            self.weights = FloatBuffer(count: layout.tensors.totalCount)
        }
        rotary = RotaryTable(inverseFrequencies: config.rotaryFrequencies, positions: config.contextLength)
    }

    public var parameterLayout: TensorLayout { layout.tensors }
    public var lmHeadOffset: Int { layout.lmHead }
    public var gradientBuckets: [Range<Int>] {
        let L = llama.layers, layers = layout.layers, C = llama.channels, end = layout.tensors.totalCount
        let blocks = (0..<L).reversed().map { l in
            layers[l].inputNorm..<(l + 1 < L ? layers[l + 1].inputNorm : layout.finalNorm)
        }
        let untiedHead = layout.finalNorm + C < end ? [(layout.finalNorm + C)..<end] : []
        return [layout.finalNorm..<(layout.finalNorm + C)] + blocks + [0..<layers[0].inputNorm] + untiedHead
    }

    func pointer(_ offset: Int) -> UnsafeMutablePointer<Float> { weights.pointer + offset }

    /// transformers' `LlamaPreTrainedModel._init_weights`: N(0, 0.02) for embeddings and
    /// projections, biases 0, RMSNorm weights 1.
    public func initialize(rng: inout RNG) {
        weights.zero()
        for tensor in layout.tensors.tensors {
            let region = UnsafeMutableBufferPointer(start: weights.pointer + tensor.offset, count: tensor.count)
            if tensor.name.hasSuffix("norm.weight") {
                region.update(repeating: 1)
            } else if tensor.name.hasSuffix(".weight") {
                rng.fillNormal(region, std: 0.02)
            }
        }
    }

    /// A copy that keeps this trunk's precision (its bf16 copy, if any, made anew and trainable).
    public func clone() throws -> any CausalLM {
        try requireFP32Weights(for: "clone")
        let copy = try LlamaTrunk(config: llama, weights: weights.clone())
        copy.use(precision, frozen: false)
        return copy
    }

    public func makeActivations(batch: Int, tokens: Int, loraRank: Int) -> any TrunkActivations {
        LlamaActivations(config: llama, batch: batch, tokens: tokens, loraRank: loraRank)
    }

    public func makeDecoder(batch: Int, capacity: Int, loraRank: Int) -> any TrunkDecoder {
        matmulWeights.refresh(from: weights)
        return LlamaDecoder(trunk: self, batch: batch, capacity: capacity, loraRank: loraRank)
    }

    /// `model.`-prefixed names plus an untied `lm_head.weight`: what LlamaForCausalLM.save_pretrained writes.
    public func hfTensors() -> [(name: String, shape: [Int], data: UnsafePointer<Float>)] {
        layout.tensors.tensors.map { t in
            (
                name: t.name == "lm_head.weight" ? t.name : "model." + t.name, shape: t.shape,
                data: UnsafePointer(weights.pointer + t.offset)
            )
        }
    }

    /// A copy with the adapter folded in, W[out, in] += (α/r)·B·A for every wrapped projection.
    public func merging(_ adapter: LoRAAdapter) throws -> any CausalLM {
        guard adapter.modelConfig.isEqual(to: llama) else {
            throw ModelError.input("merge: adapter was built for another model shape")
        }
        try requireFP32Weights(for: "merge")
        let out = try LlamaTrunk(config: llama, weights: weights.clone())
        for (l, row) in adapter.sites.enumerated() {
            for projection in LlamaProjection.allCases {
                guard let site = row[projection.slot] else { continue }
                BLAS.sgemm(
                    m: site.output, n: site.input, k: adapter.config.rank, alpha: adapter.config.scale,
                    a: adapter.weights.pointer + site.b, lda: adapter.config.rank, b: adapter.weights.pointer + site.a,
                    ldb: site.input,
                    beta: 1, c: out.weights.pointer + layout.layers[l].weights[projection.slot], ldc: site.input)
            }
        }
        return out
    }

    /// The LoRA branch of `projection` in `layer`, if the adapter wraps it; u = x·Aᵀ goes to `u`.
    func loraBranch(
        _ adapter: LoRAAdapter?, gradients: FloatBuffer?, layer: Int, projection: LlamaProjection,
        u: UnsafeMutablePointer<Float>
    ) -> LoRABranch? {
        guard let adapter, let site = adapter.sites[layer][projection.slot] else { return nil }
        return LoRABranch(
            a: adapter.weights.pointer + site.a, b: adapter.weights.pointer + site.b,
            gradA: gradients.map { $0.pointer + site.a }, gradB: gradients.map { $0.pointer + site.b },
            u: u, rank: adapter.config.rank, scale: adapter.config.scale)
    }

    /// Throws unless every id is in the vocabulary and the adapter fits this model.
    func checkInput(_ tokens: [Int32], adapter: LoRAAdapter?, pass: String) throws {
        for (i, id) in tokens.enumerated() where id < 0 || Int(id) >= llama.vocabSize {
            throw ModelError.input(
                "\(pass): token id \(id) at position \(i) is outside the vocabulary 0..<\(llama.vocabSize)")
        }
        if let adapter, !adapter.modelConfig.isEqual(to: llama) {
            throw ModelError.input("\(pass): adapter was built for another model shape")
        }
    }

    /// Forward over right-padded tokens [B, T] (positions 0 ..< T in every row), `adapter` applied
    /// (nil = adapters off). Fills `act`, whose `hidden` [B, T, C] is the final RMSNorm output.
    public func forward(tokens: [Int32], adapter: LoRAAdapter? = nil, activations: any TrunkActivations) throws {
        matmulWeights.refresh(from: weights)
        let act = try LlamaActivations.of(activations, for: llama)
        let c = llama, C = c.channels, m = act.rows
        guard tokens.count == m else {
            throw ModelError.input("forward: \(tokens.count) token ids for a \(act.batch)×\(act.tokens) batch")
        }
        try checkInput(tokens, adapter: adapter, pass: "forward")
        guard act.tokens <= c.contextLength else {
            throw ModelError.input(
                "forward: \(act.tokens) tokens exceed the context of \(c.contextLength)\(c.contextNote)")
        }
        if let adapter, act.loraRank < adapter.config.rank {
            throw ModelError.input(
                "forward: activations were sized for LoRA rank \(act.loraRank), the adapter has rank "
                    + "\(adapter.config.rank)"
            )
        }
        tokens.withUnsafeBufferPointer { act.tokenIds.update(from: $0.baseAddress!, count: m) }
        embeddingRows(offset: layout.tokenEmbedding, ids: tokens, into: act.encoded.pointer)
        let shape = GroupedAttentionShape(
            batch: act.batch, tokens: act.tokens, heads: c.heads, kvHeads: c.kvHeads, headSize: c.headSize)
        var input = UnsafePointer(act.encoded.pointer)
        for l in 0..<c.layers {
            let buffers = act.buffers(layer: l)
            let probs = act.probs.pointer + l * act.batch * c.heads * act.tokens * act.tokens
            blockForward(
                layer: l, input: input, rows: m, positions: act.positions, buffers: buffers,
                lora: {
                    self.loraBranch(
                        adapter, gradients: nil, layer: l, projection: $0, u: act.loraU(layer: l, projection: $0))
                },
                attention: { q, k, v, out in
                    groupedAttentionForward(out: out, probs: probs, q: q, k: k, v: v, shape: shape)
                })
            input = UnsafePointer(buffers.residual3)
        }
        rmsNormForward(
            out: act.hidden.pointer, rstd: act.rstdFinal.pointer, x: input, weight: pointer(layout.finalNorm),
            rows: m, channels: C, eps: c.rmsNormEps)
    }

    /// One decoder layer (transformers' LlamaDecoderLayer): residual2 = x + o_proj(Attn(RoPE(q), RoPE(k), v))
    /// over RMSNorm(x); residual3 = residual2 + down_proj(silu(gate_proj(n)) ⊙ up_proj(n)), n =
    /// RMSNorm(residual2). Training, inference and KV-cache decoding share it and differ in where
    /// buffers live and how attention reads keys and values. Row r sits at position positions[r].
    func blockForward(
        layer l: Int, input: UnsafePointer<Float>, rows m: Int, positions: [Int], buffers b: LlamaBlockBuffers,
        lora: (LlamaProjection) -> LoRABranch?,
        attention: (
            _ q: UnsafePointer<Float>, _ k: UnsafePointer<Float>, _ v: UnsafePointer<Float>,
            _ out: UnsafeMutablePointer<Float>
        ) -> Void
    ) {
        let c = llama, C = c.channels, I = c.innerSize, w = layout.layers[l]
        func project(
            _ p: LlamaProjection, _ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, input k: Int,
            output n: Int
        ) {
            denseForward(
                out: out, x: x, weight: matrix(w.weights[p.slot]),
                bias: w.biases[p.slot].map { UnsafePointer(pointer($0)) },
                rows: m, input: k, output: n, lora: lora(p))
        }
        rmsNormForward(
            out: b.ln1, rstd: b.rstd1, x: input, weight: pointer(w.inputNorm), rows: m, channels: C, eps: c.rmsNormEps)
        project(.query, b.ln1, b.q, input: C, output: c.queryWidth)
        project(.key, b.ln1, b.k, input: C, output: c.kvWidth)
        project(.value, b.ln1, b.v, input: C, output: c.kvWidth)
        rotary.apply(b.q, rows: m, rowStride: c.queryWidth, heads: c.heads, positions: positions)
        rotary.apply(b.k, rows: m, rowStride: c.kvWidth, heads: c.kvHeads, positions: positions)
        if matmulWeights.effective == .bf16 {  // keys and values as a bf16 KV cache holds them, in every pass
            BFloat16.round(b.k, rows: m, width: c.kvWidth, stride: c.kvWidth)
            BFloat16.round(b.v, rows: m, width: c.kvWidth, stride: c.kvWidth)
        }
        attention(b.q, b.k, b.v, b.attention)
        project(.output, b.attention, b.residual2, input: c.queryWidth, output: C)
        vectorAdd(b.residual2, input, m * C)
        rmsNormForward(
            out: b.ln2, rstd: b.rstd2, x: b.residual2, weight: pointer(w.postAttentionNorm), rows: m, channels: C,
            eps: c.rmsNormEps)
        project(.gate, b.ln2, b.gate, input: C, output: I)
        project(.up, b.ln2, b.up, input: C, output: I)
        swigluForward(out: b.act, gate: b.gate, up: b.up, count: m * I)
        project(.down, b.act, b.residual3, input: I, output: C)
        vectorAdd(b.residual3, b.residual2, m * C)
    }
}
