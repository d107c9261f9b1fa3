import Kernels

extension LlamaTrunk {
    /// Backward of `forward`, given dHidden [B, T, C] = ∂loss/∂(final RMSNorm output).
    /// trunkGradients (a trainable trunk) and adapterGradients (LoRA) are accumulated (+=) when
    /// given; with a frozen trunk the weight-gradient products are skipped. Returns ∂loss/∂(token
    /// embeddings) [M, C] in a scratch buffer owned by the activations, valid until the next backward.
    @discardableResult
    public func backward(
        dHidden: FloatBuffer, adapter: LoRAAdapter? = nil, activations: any TrunkActivations,
        trunkGradients: FloatBuffer? = nil, adapterGradients: FloatBuffer? = nil,
        gradientsReady: GradientsReady? = nil
    ) -> FloatBuffer {
        guard let act = activations as? LlamaActivations, act.config == llama else {
            preconditionFailure("backward: activations were made for another model")
        }
        let c = llama, C = c.channels, m = act.rows
        precondition(dHidden.count == m * C, "backward: dHidden has \(dHidden.count) floats, expected \(m * C)")
        if let trunkGradients {
            precondition(
                trunkGradients.count == layout.tensors.totalCount, "backward: trunk gradient buffer has the wrong size")
        }
        if let adapterGradients, let adapter {
            precondition(
                adapterGradients.count == adapter.layout.totalCount,
                "backward: adapter gradient buffer has the wrong size")
        }
        let s = act.scratch
        let grad: (Int) -> UnsafeMutablePointer<Float>? = { offset in trunkGradients.map { $0.pointer + offset } }
        let lastResidual = act.residual3.pointer + (c.layers - 1) * m * C
        s.dResidual.zero()
        rmsNormBackward(
            dx: s.dResidual.pointer, dweight: grad(layout.finalNorm), dout: dHidden.pointer, x: lastResidual,
            weight: pointer(layout.finalNorm), rstd: act.rstdFinal.pointer, rows: m, channels: C,
            scratch: s.norm.pointer)
        // gradientBuckets: [final norm, layer L-1, …, layer 0, embeddings (, untied head)].
        let ready = trunkGradients == nil ? nil : gradientsReady
        let buckets = ready == nil ? [] : gradientBuckets
        ready?(buckets[0])
        for l in stride(from: c.layers - 1, through: 0, by: -1) {
            let input = l == 0 ? act.encoded.pointer : act.residual3.pointer + (l - 1) * m * C
            layerBackward(
                layer: l, input: input, adapter: adapter, activations: act, grad: grad,
                adapterGradients: adapterGradients)
            ready?(buckets[c.layers - l])
        }
        // Embeddings: encoded = embed_tokens[token].
        if let trunkGradients {
            let dEmbedding = trunkGradients.pointer + layout.tokenEmbedding
            for row in 0..<m { vectorAdd(dEmbedding + Int(act.tokenIds[row]) * C, s.dResidual.pointer + row * C, C) }
        }
        return s.dResidual
    }

    /// One decoder layer backward; s.dResidual holds ∂/∂residual3 on entry and ∂/∂input on exit.
    func layerBackward(
        layer l: Int, input: UnsafePointer<Float>, adapter: LoRAAdapter?, activations act: LlamaActivations,
        grad: (Int) -> UnsafeMutablePointer<Float>?, adapterGradients: FloatBuffer?
    ) {
        let c = llama, C = c.channels, I = c.innerSize, m = act.rows, w = layout.layers[l], s = act.scratch
        let b = act.buffers(layer: l), dres = s.dResidual.pointer
        func project(
            _ p: LlamaProjection, dx: UnsafeMutablePointer<Float>, accumulate: Bool, dout: UnsafePointer<Float>,
            x: UnsafePointer<Float>, input k: Int, output n: Int
        ) {
            denseBackward(
                dx: dx, accumulate: accumulate, dWeight: grad(w.weights[p.slot]), dBias: w.biases[p.slot].flatMap(grad),
                dout: dout, x: x, weight: matrix(w.weights[p.slot]), rows: m, input: k, output: n,
                lora: loraBranch(
                    adapter, gradients: adapterGradients, layer: l, projection: p, u: act.loraU(layer: l, projection: p)
                ),
                loraScratch: s.dLoRA.pointer)
        }
        // MLP: residual3 = residual2 + down(silu(gate(n2)) ⊙ up(n2)). dres holds ∂/∂residual3.
        project(.down, dx: s.dAct.pointer, accumulate: false, dout: dres, x: b.act, input: I, output: C)
        swigluBackward(
            dGate: s.dGate.pointer, dUp: s.dUp.pointer, dout: s.dAct.pointer, gate: b.gate, up: b.up, count: m * I)
        project(.up, dx: s.dLn.pointer, accumulate: false, dout: s.dUp.pointer, x: b.ln2, input: C, output: I)
        project(.gate, dx: s.dLn.pointer, accumulate: true, dout: s.dGate.pointer, x: b.ln2, input: C, output: I)
        rmsNormBackward(
            dx: dres, dweight: grad(w.postAttentionNorm), dout: s.dLn.pointer, x: b.residual2,
            weight: pointer(w.postAttentionNorm),
            rstd: b.rstd2, rows: m, channels: C, scratch: s.norm.pointer)
        // Attention: residual2 = input + o(Attn(RoPE(q(n1)), RoPE(k(n1)), v(n1))).
        project(
            .output, dx: s.dAttention.pointer, accumulate: false, dout: dres, x: b.attention, input: c.queryWidth,
            output: C)
        s.dq.zero()
        s.dk.zero()
        s.dv.zero()
        let shape = GroupedAttentionShape(
            batch: act.batch, tokens: act.tokens, heads: c.heads, kvHeads: c.kvHeads, headSize: c.headSize)
        groupedAttentionBackward(
            dq: s.dq.pointer, dk: s.dk.pointer, dv: s.dv.pointer, dout: s.dAttention.pointer, q: b.q, k: b.k, v: b.v,
            probs: act.probs.pointer + l * act.batch * c.heads * act.tokens * act.tokens, shape: shape,
            scratch: s.attention.pointer)
        // The rotation is orthogonal: its backward is the inverse rotation.
        rotary.apply(
            s.dq.pointer, rows: m, rowStride: c.queryWidth, heads: c.heads, positions: act.positions, inverse: true)
        rotary.apply(
            s.dk.pointer, rows: m, rowStride: c.kvWidth, heads: c.kvHeads, positions: act.positions, inverse: true)
        project(
            .query, dx: s.dLn.pointer, accumulate: false, dout: s.dq.pointer, x: b.ln1, input: C, output: c.queryWidth)
        project(.key, dx: s.dLn.pointer, accumulate: true, dout: s.dk.pointer, x: b.ln1, input: C, output: c.kvWidth)
        project(.value, dx: s.dLn.pointer, accumulate: true, dout: s.dv.pointer, x: b.ln1, input: C, output: c.kvWidth)
        rmsNormBackward(
            dx: dres, dweight: grad(w.inputNorm), dout: s.dLn.pointer, x: input, weight: pointer(w.inputNorm),
            rstd: b.rstd1, rows: m, channels: C, scratch: s.norm.pointer)
    }
}
