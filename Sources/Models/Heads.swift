import Kernels

/// The language-model head (the token embedding when the family ties them, as GPT-2 does):
/// logits [M, V] = hidden [M, C] · Wᵀ, W [V, C] at the trunk's `lmHeadOffset`. Forward keeps logits and log-sum-exp for
/// the backward.
public final class LMHeadCache: @unchecked Sendable {
    public let rows: Int, vocab: Int
    /// [M, V]; after `lmHeadBackward` it holds ∂loss/∂logits instead.
    public let logits: FloatBuffer
    let logSumExp: FloatBuffer  // [M]
    let targets: UnsafeMutablePointer<Int32>
    let scratch: FloatBuffer  // [V]
    var temperature: Float = 1

    public init(rows: Int, vocab: Int) {
        self.rows = rows
        self.vocab = vocab
        logits = FloatBuffer(count: rows * vocab)
        logSumExp = FloatBuffer(count: rows)
        targets = .allocate(capacity: max(rows, 1))
        scratch = FloatBuffer(count: vocab)
    }
    deinit { targets.deallocate() }
}

extension CausalLM {
    /// logits [M, V] = hidden [M, C] · Wᵀ, written into cache.logits.
    public func lmHeadLogits(hidden: UnsafePointer<Float>, rows m: Int, cache: LMHeadCache) {
        precondition(m <= cache.rows, "lmHeadLogits: \(m) rows into a cache of \(cache.rows)")
        let C = config.channels, V = config.vocabSize
        weightProduct(
            transB: true, m: m, n: V, k: C, x: hidden, lda: C, w: matrix(lmHeadOffset), ldb: C, c: cache.logits.pointer,
            ldc: V)
    }

    /// log p(targets[i] | hidden[i]) under softmax(logits/τ) for each of M rows (target −1 ⇒ 0).
    public func lmHeadLogProbs(hidden: FloatBuffer, targets: [Int32], temperature: Float = 1, cache: LMHeadCache)
        -> [Float]
    {
        let m = targets.count
        precondition(hidden.count == m * config.channels, "lmHeadLogProbs: hidden is not [\(m), C]")
        lmHeadLogits(hidden: hidden.pointer, rows: m, cache: cache)
        targets.withUnsafeBufferPointer { cache.targets.update(from: $0.baseAddress!, count: m) }
        cache.temperature = temperature
        var result = [Float](repeating: 0, count: m)
        result.withUnsafeMutableBufferPointer { out in
            tokenLogProbsForward(
                logProbs: out.baseAddress!, logSumExp: cache.logSumExp.pointer,
                logits: cache.logits.pointer, targets: cache.targets, rows: m,
                vocab: config.vocabSize, temperature: temperature, scratch: cache.scratch.pointer)
        }
        return result
    }

    /// Entropy of the head's distribution at each row of the last `lmHeadLogProbs` (before backward).
    public func lmHeadEntropies(cache: LMHeadCache, rows: Int) -> [Float] {
        rowEntropies(
            logits: cache.logits.pointer, logSumExp: cache.logSumExp.pointer, rows: rows,
            vocab: config.vocabSize, temperature: cache.temperature)
    }

    /// Backward of `lmHeadLogProbs` (plus, with `dEntropy`, of the rows' entropies):
    /// dHidden [M, C] += dlogits · W; trunkGradients' W += dlogitsᵀ · hidden.
    public func lmHeadBackward(
        dLogProbs: [Float], hidden: FloatBuffer, cache: LMHeadCache,
        dHidden: FloatBuffer, trunkGradients: FloatBuffer?, dEntropy: [Float]? = nil
    ) {
        let m = dLogProbs.count, C = config.channels, V = config.vocabSize
        dLogProbs.withUnsafeBufferPointer { d in
            if let dEntropy {
                dEntropy.withUnsafeBufferPointer { e in
                    tokenLogProbsBackward(
                        logitsToGrad: cache.logits.pointer, dLogProbs: d.baseAddress!,
                        logSumExp: cache.logSumExp.pointer, targets: cache.targets,
                        rows: m, vocab: V, temperature: cache.temperature, dEntropy: e.baseAddress!)
                }
            } else {
                tokenLogProbsBackward(
                    logitsToGrad: cache.logits.pointer, dLogProbs: d.baseAddress!,
                    logSumExp: cache.logSumExp.pointer, targets: cache.targets,
                    rows: m, vocab: V, temperature: cache.temperature)
            }
        }
        let head = matrix(lmHeadOffset)
        weightProduct(
            m: m, n: C, k: V, x: cache.logits.pointer, lda: V, w: head, ldb: C, beta: 1, c: dHidden.pointer, ldc: C)
        if let trunkGradients {
            activationProduct(
                like: head, transA: true, m: V, n: C, k: m, a: cache.logits.pointer, lda: V, b: hidden.pointer, ldb: C,
                beta: 1, c: trunkGradients.pointer + lmHeadOffset, ldc: C)
        }
    }
}

/// A scalar head on the final hidden states: value[i] = hidden[i] · w + b. Used as the critic's
/// value head and the reward head. Parameters are one buffer [C + 1] (w, then b), named like
/// TRL's `v_head.summary` when saved.
public final class ScalarHead: @unchecked Sendable {
    public let channels: Int
    public let parameters: FloatBuffer  // [C + 1]

    public init(channels: Int) {
        self.channels = channels
        parameters = FloatBuffer(count: channels + 1)
    }

    /// w ~ N(0, std²), b = 0.
    public func initialize(rng: inout RNG, std: Float = 0.02) {
        parameters.zero()
        rng.fillNormal(UnsafeMutableBufferPointer(start: parameters.pointer, count: channels), std: std)
    }

    /// values [M] from hidden [M, C].
    public func forward(hidden: UnsafePointer<Float>, rows m: Int) -> [Float] {
        var values = [Float](repeating: parameters[channels], count: m)
        values.withUnsafeMutableBufferPointer { v in
            BLAS.sgemm(
                m: m, n: 1, k: channels, a: hidden, lda: channels, b: parameters.pointer, ldb: 1,
                beta: 1, c: v.baseAddress!, ldc: 1)
        }
        return values
    }

    /// dHidden [M, C] += dValues ⊗ w; gradients [C + 1] += (hiddenᵀ·dValues, Σ dValues).
    public func backward(
        dValues: [Float], hidden: UnsafePointer<Float>, dHidden: UnsafeMutablePointer<Float>?,
        gradients: FloatBuffer?
    ) {
        let m = dValues.count
        dValues.withUnsafeBufferPointer { d in
            if let dHidden {
                BLAS.sgemm(
                    m: m, n: channels, k: 1, a: d.baseAddress!, lda: 1, b: parameters.pointer, ldb: channels,
                    beta: 1, c: dHidden, ldc: channels)
            }
            if let gradients {
                BLAS.sgemm(
                    transA: true, m: channels, n: 1, k: m, a: hidden, lda: channels, b: d.baseAddress!, ldb: 1,
                    beta: 1, c: gradients.pointer, ldc: 1)
                gradients[channels] += vectorSum(d.baseAddress!, m)
            }
        }
    }
}
