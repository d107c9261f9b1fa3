import Kernels

/// The GPT-2 trunk: embeddings, L pre-LayerNorm blocks and the final LayerNorm (Radford et al.
/// 2019; HF `GPT2Model`). All parameters live in one flat buffer described by `layout`.
///
/// In the Hydra layout one trunk object serves every role: adapters and heads are arguments of
/// forward/backward, never state of the trunk, so the trunk can be shared read-only.
public final class GPT2Trunk: CausalLM, @unchecked Sendable {
    public let gpt2: GPT2Config
    public var config: any ModelConfiguration { gpt2 }
    public let layout: GPT2Layout
    public let weights: FloatBuffer
    public let matmulWeights = MatmulWeights()

    public init(config: GPT2Config, weights: FloatBuffer? = nil) throws {
        try config.validate()
        self.gpt2 = config
        self.layout = GPT2Layout(config: config)
        if let weights {
            guard weights.count == layout.parameterCount else {
                throw ModelError.invalidConfig(
                    "weights hold \(weights.count) floats, layout needs \(layout.parameterCount)")
            }
            self.weights = weights
        } else {
            self.weights = FloatBuffer(count: layout.parameterCount)
        }
    }

    /// GPT-2's initialisation (HF `GPT2PreTrainedModel._init_weights`): N(0, 0.02) for embeddings
    /// and projections, N(0, 0.02/√(2L)) for the projections into the residual stream, LayerNorm
    /// weight 1 and bias 0, other biases 0.
    public func initialize(rng: inout RNG, std: Float = 0.02) {
        weights.zero()
        let residualStd = std / Float(2 * gpt2.layers).squareRoot()
        for tensor in layout.tensors.tensors {
            let p = weights.pointer + tensor.offset
            let region = UnsafeMutableBufferPointer(start: p, count: tensor.count)
            if tensor.name.hasSuffix("ln_1.weight") || tensor.name.hasSuffix("ln_2.weight")
                || tensor.name == "ln_f.weight"
            {
                region.update(repeating: 1)
            } else if tensor.name.hasSuffix(".bias") {
                continue
            } else if tensor.name.hasSuffix("c_proj.weight") {
                rng.fillNormal(region, std: residualStd)
            } else {
                rng.fillNormal(region, std: std)
            }
        }
    }

    func pointer(_ offset: Int) -> UnsafeMutablePointer<Float> { weights.pointer + offset }

    public var parameterLayout: TensorLayout { layout.tensors }
    /// GPT-2 ties the LM head to the token embedding wte [V, C].
    public var lmHeadOffset: Int { layout.tokenEmbedding }
    public var gradientBuckets: [Range<Int>] {
        let L = gpt2.layers, blocks = layout.blocks
        let layers = (0..<L).reversed().map { l in
            blocks[l].ln1Weight..<(l + 1 < L ? blocks[l + 1].ln1Weight : layout.lnfWeight)
        }
        return [layout.lnfWeight..<layout.parameterCount] + layers + [0..<blocks[0].ln1Weight]
    }

    public func initialize(rng: inout RNG) { initialize(rng: &rng, std: 0.02) }

    /// A copy that keeps this trunk's precision (its bf16 copy, if any, made anew and trainable).
    public func clone() throws -> any CausalLM {
        try requireFP32Weights(for: "clone")
        let copy = try GPT2Trunk(config: gpt2, weights: weights.clone())
        copy.use(precision, frozen: false)
        return copy
    }

    public func makeActivations(batch: Int, tokens: Int, loraRank: Int) -> any TrunkActivations {
        GPT2Activations(config: gpt2, batch: batch, tokens: tokens, loraRank: loraRank)
    }

    public func makeDecoder(batch: Int, capacity: Int, loraRank: Int) -> any TrunkDecoder {
        matmulWeights.refresh(from: weights)
        return GPT2Decoder(trunk: self, batch: batch, capacity: capacity, loraRank: loraRank)
    }

    /// `transformer.`-prefixed names, tied LM head omitted: what GPT2LMHeadModel.save_pretrained writes.
    public func hfTensors() -> [(name: String, shape: [Int], data: UnsafePointer<Float>)] {
        layout.tensors.tensors.map {
            (name: "transformer." + $0.name, shape: $0.shape, data: UnsafePointer(weights.pointer + $0.offset))
        }
    }

    /// A copy with the adapter folded in, W[in, out] += (α/r)·Aᵀ·Bᵀ for every wrapped projection
    /// (Conv1D layout): a plain model folder other tools load without the adapter.
    public func merging(_ adapter: LoRAAdapter) throws -> any CausalLM {
        guard adapter.modelConfig.isEqual(to: gpt2) else {
            throw ModelError.input("merge: adapter was built for another model shape")
        }
        try requireFP32Weights(for: "merge")
        let out = try GPT2Trunk(config: gpt2, weights: weights.clone())
        for (l, row) in adapter.sites.enumerated() {
            for projection in GPT2Projection.allCases {
                guard let site = row[projection.slot],
                    let w = out.layout.tensors["h.\(l).\(projection.target.name).weight"]
                else { continue }
                BLAS.sgemm(
                    transA: true, transB: true, m: site.input, n: site.output, k: adapter.config.rank,
                    alpha: adapter.config.scale,
                    a: adapter.weights.pointer + site.a, lda: site.input, b: adapter.weights.pointer + site.b,
                    ldb: adapter.config.rank,
                    beta: 1, c: out.weights.pointer + w.offset, ldc: site.output)
            }
        }
        return out
    }

    /// The LoRA branch of `target` in `layer`, if the adapter wraps it.
    func loraBranch(
        _ adapter: LoRAAdapter?, gradients: FloatBuffer?, layer: Int, projection: GPT2Projection,
        activations act: GPT2Activations
    ) -> LoRABranch? {
        guard let adapter, let site = adapter.sites[layer][projection.slot] else { return nil }
        precondition(
            act.loraRank >= adapter.config.rank,
            "activations were sized for LoRA rank \(act.loraRank), adapter has \(adapter.config.rank)")
        return LoRABranch(
            a: adapter.weights.pointer + site.a, b: adapter.weights.pointer + site.b,
            gradA: gradients.map { $0.pointer + site.a }, gradB: gradients.map { $0.pointer + site.b },
            u: act.loraU(layer: layer, projection: projection), rank: adapter.config.rank,
            scale: adapter.config.scale)
    }

    /// Forward over tokens [B, T] (row-major, B = act.batch, T = act.tokens), with `adapter` applied
    /// (nil = adapters off). Fills `act`, whose `hidden` [B, T, C] is the final LayerNorm output.
    /// Positions are 0 ..< T for every row: batches are right-padded, so each sequence's real tokens
    /// sit at their true positions and, being causal, never see the padding after them.
    public func forward(tokens: [Int32], adapter: LoRAAdapter? = nil, activations: any TrunkActivations) throws {
        matmulWeights.refresh(from: weights)
        let act = try GPT2Activations.of(activations, for: gpt2)
        let c = gpt2, C = c.channels, I = c.innerSize, m = act.rows, t = act.tokens
        guard tokens.count == m else {
            throw ModelError.input("forward: \(tokens.count) token ids for a \(act.batch)×\(t) batch")
        }
        for (i, id) in tokens.enumerated() where id < 0 || Int(id) >= c.vocabSize {
            throw ModelError.input(
                "forward: token id \(id) at position \(i) is outside the vocabulary 0..<\(c.vocabSize)")
        }
        if let adapter, !adapter.modelConfig.isEqual(to: gpt2) {
            throw ModelError.input("forward: adapter was built for another model shape")
        }
        guard t <= c.contextLength else {
            throw ModelError.input("forward: \(t) tokens exceed the context of \(c.contextLength)")
        }
        if let adapter, act.loraRank < adapter.config.rank {
            throw ModelError.input(
                "forward: activations were sized for LoRA rank \(act.loraRank), the adapter has rank "
                    + "\(adapter.config.rank)"
            )
        }
        tokens.withUnsafeBufferPointer { act.tokenIds.update(from: $0.baseAddress!, count: m) }

        // encoded[b, t, :] = wte[token] + wpe[t]
        embeddingRows(offset: layout.tokenEmbedding, ids: tokens, into: act.encoded.pointer)
        let wpe = pointer(layout.positionEmbedding)
        for row in 0..<m {
            let out = act.encoded.pointer + row * C
            vectorAdd(out, wpe + (row % t) * C, C)
        }
        let shape = AttentionShape(batch: act.batch, tokens: t, channels: C, heads: c.heads)
        var input: UnsafePointer<Float> = UnsafePointer(act.encoded.pointer)
        for l in 0..<c.layers {
            let buffers = BlockBuffers(
                ln1: act.ln1.pointer + l * m * C, ln1Mean: act.ln1Mean.pointer + l * m,
                ln1Rstd: act.ln1Rstd.pointer + l * m,
                qkv: act.qkv.pointer + l * m * 3 * C, attention: act.attention.pointer + l * m * C,
                residual2: act.residual2.pointer + l * m * C,
                ln2: act.ln2.pointer + l * m * C, ln2Mean: act.ln2Mean.pointer + l * m,
                ln2Rstd: act.ln2Rstd.pointer + l * m,
                fc: act.fc.pointer + l * m * I, gelu: act.gelu.pointer + l * m * I,
                residual3: act.residual3.pointer + l * m * C)
            let probs = act.probs.pointer + l * act.batch * c.heads * t * t
            blockForward(
                layer: l, input: input, rows: m, buffers: buffers,
                lora: { self.loraBranch(adapter, gradients: nil, layer: l, projection: $0, activations: act) },
                attention: { qkv, out in attentionForward(out: out, probs: probs, qkv: qkv, shape: shape) })
            input = UnsafePointer(buffers.residual3)
        }
        layerNormForward(
            out: act.hidden.pointer, mean: act.lnfMean.pointer, rstd: act.lnfRstd.pointer,
            x: input, weight: pointer(layout.lnfWeight), bias: pointer(layout.lnfBias),
            rows: m, channels: C, eps: c.layerNormEps)
    }

    /// One transformer block (pre-LN, Radford et al. 2019 §2.3): residual2 = x + Attn(LN1(x)),
    /// residual3 = residual2 + MLP(LN2(residual2)). Training and KV-cache decoding share it and
    /// differ only in where buffers live and how attention reads keys and values.
    func blockForward(
        layer l: Int, input: UnsafePointer<Float>, rows m: Int, buffers b: BlockBuffers,
        lora: (GPT2Projection) -> LoRABranch?,
        attention: (_ qkv: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>) -> Void
    ) {
        let c = gpt2, C = c.channels, I = c.innerSize, w = layout.blocks[l]
        layerNormForward(
            out: b.ln1, mean: b.ln1Mean, rstd: b.ln1Rstd, x: input,
            weight: pointer(w.ln1Weight), bias: pointer(w.ln1Bias), rows: m, channels: C, eps: c.layerNormEps)
        linearForward(
            out: b.qkv, x: b.ln1, weight: matrix(w.qkvWeight), bias: pointer(w.qkvBias),
            rows: m, input: C, output: 3 * C, lora: lora(.attentionQKV))
        // Keys and values as a bf16 KV cache holds them, in every pass.
        if matmulWeights.effective == .bf16 { BFloat16.round(b.qkv + C, rows: m, width: 2 * C, stride: 3 * C) }
        attention(b.qkv, b.attention)
        linearForward(
            out: b.residual2, x: b.attention, weight: matrix(w.attnProjWeight), bias: pointer(w.attnProjBias),
            rows: m, input: C, output: C, lora: lora(.attentionOutput))
        vectorAdd(b.residual2, input, m * C)
        layerNormForward(
            out: b.ln2, mean: b.ln2Mean, rstd: b.ln2Rstd, x: b.residual2,
            weight: pointer(w.ln2Weight), bias: pointer(w.ln2Bias), rows: m, channels: C, eps: c.layerNormEps)
        linearForward(
            out: b.fc, x: b.ln2, weight: matrix(w.fcWeight), bias: pointer(w.fcBias),
            rows: m, input: C, output: I, lora: lora(.mlpUp))
        geluForward(out: b.gelu, x: b.fc, count: m * I)
        linearForward(
            out: b.residual3, x: b.gelu, weight: matrix(w.fcProjWeight), bias: pointer(w.fcProjBias),
            rows: m, input: I, output: C, lora: lora(.mlpDown))
        vectorAdd(b.residual3, b.residual2, m * C)
    }
}

/// Where one block's forward writes its intermediate results (shapes as in TrunkActivations, one layer).
struct BlockBuffers {
    let ln1, ln1Mean, ln1Rstd, qkv, attention, residual2: UnsafeMutablePointer<Float>
    let ln2, ln2Mean, ln2Rstd, fc, gelu, residual3: UnsafeMutablePointer<Float>
}
