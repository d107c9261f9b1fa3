/// Log-probabilities of chosen tokens under softmax(logits / τ), and their backward.
/// This is the one output every alignment loss consumes (SFT, DPO, PPO all differentiate token
/// log-probs), so the LM head exposes log p(target) rather than a fixed cross-entropy.
///
/// Shapes: logits [M, V]; targets [M] (−1 = no target at this row: log-prob 0, no gradient);
/// logProbs [M]; logSumExp [M] of logits/τ, saved for backward.
public func tokenLogProbsForward(
    logProbs: UnsafeMutablePointer<Float>, logSumExp: UnsafeMutablePointer<Float>,
    logits: UnsafePointer<Float>, targets: UnsafePointer<Int32>,
    rows: Int, vocab v: Int, temperature: Float = 1, scratch: UnsafeMutablePointer<Float>
) {
    let invT = 1 / temperature
    // Rows are independent: split across the kernel threads, each chunk with its own [V] scratch.
    Parallel.forEach(rows, costPerItem: 6 * v) { span in
        let own = span.lowerBound == 0 ? nil : UnsafeMutablePointer<Float>.allocate(capacity: v)
        defer { own?.deallocate() }
        let exps = own ?? scratch
        for r in span {
            let row = logits + r * v
            let m = vectorMax(row, v) * invT
            for j in 0..<v { exps[j] = fastExp(row[j] * invT - m) }
            let lse = m + logf(vectorSum(exps, v))
            logSumExp[r] = lse
            let target = Int(targets[r])
            logProbs[r] = target >= 0 ? row[target] * invT - lse : 0
        }
    }
}

/// In place: logits[r, :] ← dlogits = dLogProbs[r] · (onehot(target) − p) / τ, plus, when
/// `dEntropy` is given, dEntropy[r] · ∂H/∂logits with H = −Σ p log p of softmax(logits/τ):
/// ∂H/∂z_k = −p_k (log p_k + H) / τ (the entropy bonus of PPO).
/// Overwriting the logits saves a [M, V] buffer (206 MB for GPT-2 at 1024 tokens).
public func tokenLogProbsBackward(
    logitsToGrad: UnsafeMutablePointer<Float>, dLogProbs: UnsafePointer<Float>,
    logSumExp: UnsafePointer<Float>, targets: UnsafePointer<Int32>,
    rows: Int, vocab v: Int, temperature: Float = 1, dEntropy: UnsafePointer<Float>? = nil
) {
    let invT = 1 / temperature
    // Rows are independent: split across the kernel threads.
    Parallel.forEach(rows, costPerItem: 8 * v) { span in
        for r in span {
            let row = logitsToGrad + r * v
            let target = Int(targets[r])
            let g = target < 0 ? 0 : dLogProbs[r]
            let e = dEntropy?[r] ?? 0
            if g == 0 && e == 0 {
                row.update(repeating: 0, count: v)
                continue
            }
            let lse = logSumExp[r]
            if e == 0 {
                let coefficient = -g * invT
                for j in 0..<v { row[j] = coefficient * fastExp(row[j] * invT - lse) }
            } else {
                var weighted: Float = 0  // Σ p·(z/τ), so H = lse − Σ p·(z/τ)
                for j in 0..<v {
                    let z = row[j] * invT
                    weighted += fastExp(z - lse) * z
                }
                let entropy = lse - weighted
                for j in 0..<v {
                    let logp = row[j] * invT - lse, p = fastExp(logp)
                    row[j] = (-g * p - e * p * (logp + entropy)) * invT
                }
            }
            if target >= 0 { row[target] += g * invT }
        }
    }
}

/// Entropy of softmax(row/τ) for each of `rows` rows (logits intact).
public func rowEntropies(
    logits: UnsafePointer<Float>, logSumExp: UnsafePointer<Float>, rows: Int, vocab v: Int, temperature: Float = 1
) -> [Float] {
    let invT = 1 / temperature
    return (0..<rows).map { r in
        let row = logits + r * v, lse = logSumExp[r]
        var weighted: Float = 0
        for j in 0..<v {
            let z = row[j] * invT
            weighted += fastExp(z - lse) * z
        }
        return lse - weighted
    }
}

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
