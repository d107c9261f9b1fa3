import Foundation
import Kernels

/// R2M's reward: the frozen reward model's reward token fused with the policy's hidden states
/// (Huang et al., "Real-Time Aligned Reward Model beyond Semantics", arXiv 2601.22664 v4, §4.1,
/// Eqs. 3–4; docs/algorithms.md §7):
///   q = W_q H_last                       H_last [C]: the reward model's last-layer state at its reward token
///   s_t = (W_k h_t)·q / √d               h [S, P]: the policy's last-layer states over query + response
///   a = softmax_t(s);  Ĥ = W_o Σ_t a_t W_v h_t
///   H_fin = (1 − ω)·Ĥ + ω·H_last;  r = ϕ(H_fin) = wᵀ H_fin + b        (Eq. 4; ϕ the reward model's own head)
/// Only W_q [d, C], W_k [d, P], W_v [d, P], W_o [C, d] and ϕ train; the reward model and the policy
/// stay frozen (the backward returns no gradient for H_last or h).
///
/// Where the paper is silent, chosen here:
/// - one attention head, no bias, no padding (each sequence is attended on its own);
/// - initialisation: W_q, W_k, W_v, W_o ~ N(0, 0.02²) (GPT-2's) and ϕ = the reward model's head,
///   so at ω = 1 (round 0) the reward is the original one, and as ω falls an untrained fusion adds
///   a small term of the policy's states (the paper's "w/o Train" ablation is below vanilla);
/// - d defaults to half the reward model's width (the paper's d = 2048 for its 4096-wide RM).
/// Because Ĥ is linear in the attended average, the scores and the summary need only W_kᵀq [P]
/// and the attended state aᵀh [P]: O(S·P + d·(C + P)) per sequence, no [S, d] buffers.
public final class R2MFusion: @unchecked Sendable {
    public let channels: Int, policyChannels: Int, attentionSize: Int
    public let layout: TensorLayout
    public let parameters: FloatBuffer
    /// Offsets: W_q [d, C], W_k [d, P], W_v [d, P], W_o [C, d], ϕ = [w (C), b].
    let q: Int, k: Int, v: Int, o: Int, head: Int

    public init(channels: Int, policyChannels: Int, attentionSize: Int) {
        self.channels = channels
        self.policyChannels = policyChannels
        self.attentionSize = max(attentionSize, 1)
        var l = TensorLayout()
        q = l.add("r2m.q.weight", [self.attentionSize, channels])
        k = l.add("r2m.k.weight", [self.attentionSize, policyChannels])
        v = l.add("r2m.v.weight", [self.attentionSize, policyChannels])
        o = l.add("r2m.o.weight", [channels, self.attentionSize])
        head = l.add("r2m.head", [channels + 1])
        layout = l
        parameters = FloatBuffer(count: l.totalCount)
    }

    /// W_q, W_k, W_v, W_o ~ N(0, std²), ϕ copied from the reward model's head (`rewardHead` holds
    /// C weights then the bias).
    public func initialize(rewardHead: [Float], rng: inout RNG, std: Float = 0.02) {
        parameters.zero()
        rng.fillNormal(UnsafeMutableBufferPointer(start: parameters.pointer, count: head), std: std)
        for c in 0..<min(rewardHead.count, channels + 1) { parameters[head + c] = rewardHead[c] }
    }

    /// ω(t) = max(½cos(πt/T) + ½, Ω) (Eq. 4): the weight on the original reward token decays from 1
    /// at round 0 to the floor Ω (0.7 for Qwen-3B, 0.6 for LLaMA-8B in the paper).
    public static func omega(round t: Int, rounds T: Int, floor: Double) -> Double {
        guard T > 0 else { return 1 }
        return max(0.5 * Foundation.cos(Double.pi * Double(t) / Double(T)) + 0.5, floor)
    }

    /// What the backward needs from one sequence's forward.
    public struct Cache {
        public let reward: Float
        let rewardHidden: [Float], policyHidden: [Float], length: Int  // H_last [C]; h [S, P]
        let query: [Float], attended: [Float]  // q [d]; aᵀh [P]
        let summary: [Float], fused: [Float]  // f = W_v aᵀh [d]; H_fin [C]
        let omega: Float
        /// a [S]: the reward token's attention over the sequence.
        public let attention: [Float]
    }

    @inline(__always) func weight(_ offset: Int, _ row: Int, _ column: Int, _ columns: Int) -> Float {
        parameters.pointer[offset + row * columns + column]
    }

    /// The fused reward of one sequence: `rewardHidden` H_last [C], `policyHidden` h [S, P] (S ≥ 1).
    public func forward(rewardHidden hLast: [Float], policyHidden h: [Float], omega: Double) -> Cache {
        let C = channels, P = policyChannels, d = attentionSize, S = h.count / P
        precondition(
            hLast.count == C && h.count == S * P && S > 0, "R2MFusion: H_last must be [C], h [S, P] with S > 0")
        var query = [Float](repeating: 0, count: d)  // q = W_q H_last
        for i in 0..<d {
            var s: Float = 0
            for c in 0..<C { s += weight(q, i, c, C) * hLast[c] }
            query[i] = s
        }
        var keyQuery = [Float](repeating: 0, count: P)  // u = W_kᵀ q / √d, so s_t = h_t·u
        let scale = 1 / Float(d).squareRoot()
        for i in 0..<d {
            let qi = query[i] * scale
            for c in 0..<P { keyQuery[c] += weight(k, i, c, P) * qi }
        }
        var attention = (0..<S).map { t in (0..<P).reduce(Float(0)) { $0 + h[t * P + $1] * keyQuery[$1] } }
        let m = attention.max()!
        var total: Float = 0
        for t in 0..<S {
            attention[t] = Foundation.exp(attention[t] - m)
            total += attention[t]
        }
        var attended = [Float](repeating: 0, count: P)  // aᵀh [P]
        for t in 0..<S {
            attention[t] /= total
            for c in 0..<P { attended[c] += attention[t] * h[t * P + c] }
        }
        var summary = [Float](repeating: 0, count: d)  // f = W_v aᵀh [d]
        for i in 0..<d {
            var s: Float = 0
            for c in 0..<P { s += weight(v, i, c, P) * attended[c] }
            summary[i] = s
        }
        let w = Float(omega)
        var fused = [Float](repeating: 0, count: C)  // H_fin = (1 − ω) W_o f + ω H_last
        for c in 0..<C {
            var s: Float = 0
            for i in 0..<d { s += weight(o, c, i, d) * summary[i] }
            fused[c] = (1 - w) * s + w * hLast[c]
        }
        var r = parameters[head + C]
        for c in 0..<C { r += parameters[head + c] * fused[c] }
        return Cache(
            reward: r, rewardHidden: hLast, policyHidden: h, length: S, query: query, attended: attended,
            summary: summary, fused: fused,
            omega: w, attention: attention)
    }

    /// Adds dL/dθ = dReward · dr/dθ into `gradients` [parameters.count].
    public func backward(_ cache: Cache, dReward: Float, gradients: FloatBuffer) {
        let C = channels, P = policyChannels, d = attentionSize, S = cache.length, h = cache.policyHidden
        let g = gradients.pointer
        for c in 0..<C { g[head + c] += dReward * cache.fused[c] }
        g[head + C] += dReward
        // dĤ = (1 − ω)·dReward·w;  dW_o = dĤ fᵀ;  df = W_oᵀ dĤ.
        var dSummary = [Float](repeating: 0, count: d)
        for c in 0..<C {
            let dHat = (1 - cache.omega) * dReward * parameters[head + c]
            if dHat == 0 { continue }
            for i in 0..<d {
                g[o + c * d + i] += dHat * cache.summary[i]
                dSummary[i] += weight(o, c, i, d) * dHat
            }
        }
        // f = W_v Σ_t a_t h_t:  dW_v = df (aᵀh)ᵀ;  da_t = h_t·(W_vᵀ df).
        var valueGrad = [Float](repeating: 0, count: P)
        for i in 0..<d {
            for c in 0..<P {
                g[v + i * P + c] += dSummary[i] * cache.attended[c]
                valueGrad[c] += weight(v, i, c, P) * dSummary[i]
            }
        }
        let dAttention = (0..<S).map { t in (0..<P).reduce(Float(0)) { $0 + h[t * P + $1] * valueGrad[$1] } }
        // Softmax: ds_t = a_t (da_t − Σ a da); s_t = (W_k h_t)·q/√d:  dW_k = q (Σ_t ds_t h_t)ᵀ/√d, dq = W_k Σ_t ds_t
        // h_t/√d.
        let mean = zip(cache.attention, dAttention).reduce(Float(0)) { $0 + $1.0 * $1.1 }
        let scale = 1 / Float(d).squareRoot()
        var scoreState = [Float](repeating: 0, count: P)  // Σ_t ds_t h_t / √d [P]
        for t in 0..<S {
            let ds = cache.attention[t] * (dAttention[t] - mean) * scale
            for c in 0..<P { scoreState[c] += ds * h[t * P + c] }
        }
        for i in 0..<d {
            var dq: Float = 0
            for c in 0..<P {
                g[k + i * P + c] += cache.query[i] * scoreState[c]
                dq += weight(k, i, c, P) * scoreState[c]
            }
            for c in 0..<C { g[q + i * C + c] += dq * cache.rewardHidden[c] }
        }
    }
}
