import Foundation
import Kernels

/// R2M's reward head (Huang et al. 2026; algorithms.md §7.2, our proposed fusion): the reward
/// model's hidden state at the reward token attends over the policy's last-layer hidden states
/// on the response, and the attended summary is added to it before the scalar head:
///   q = W_q h;  K_t = W_k p_t;  V_t = W_v p_t;  a = softmax_t(q_h·K_{t,h} / √d_k) per head h
///   f = Σ_t a_t V_t;  z = h + w(t)·W_o f;  r = w_headᵀ z + b.
/// Both inputs are outputs of GPT-2's final LayerNorm, so the proposal's pre-LayerNorms are
/// already applied. W_o starts at 0 and (w_head, b) at the original reward head, so a fresh
/// R2M head and w = 0 both give the original reward. Only these parameters train; the backward
/// returns no gradient for h or p, so nothing reaches the reward trunk or the policy.
public final class R2MHead: @unchecked Sendable {
    public let channels: Int, policyChannels: Int, heads: Int, keySize: Int, valueSize: Int
    public let layout: TensorLayout
    public let parameters: FloatBuffer
    let q: Int, k: Int, v: Int, o: Int, head: Int   // offsets: W_q [H·dk, C], W_k [H·dk, Cp], W_v [H·dv, Cp], W_o [C, H·dv], head [C + 1]

    public init(channels: Int, policyChannels: Int, heads: Int = 1, keySize: Int? = nil, valueSize: Int? = nil) {
        precondition(heads > 0)
        self.channels = channels; self.policyChannels = policyChannels; self.heads = heads
        self.keySize = keySize ?? max(channels / heads, 1); self.valueSize = valueSize ?? max(channels / heads, 1)
        var l = TensorLayout()
        q = l.add("r2m.q.weight", [heads * self.keySize, channels])
        k = l.add("r2m.k.weight", [heads * self.keySize, policyChannels])
        v = l.add("r2m.v.weight", [heads * self.valueSize, policyChannels])
        o = l.add("r2m.o.weight", [channels, heads * self.valueSize])
        head = l.add("r2m.head", [channels + 1])
        layout = l
        parameters = FloatBuffer(count: l.totalCount)
    }

    /// W_q, W_k, W_v ~ N(0, std²), W_o = 0, the scalar head copied from the original reward head.
    public func initialize(rewardHead: ScalarHead, rng: inout RNG, std: Float = 0.02) {
        precondition(rewardHead.channels == channels)
        parameters.zero()
        rng.fillNormal(UnsafeMutableBufferPointer(start: parameters.pointer, count: o), std: std)
        (parameters.pointer + head).update(from: rewardHead.parameters.pointer, count: channels + 1)
    }

    /// What the backward needs from one response's forward.
    public struct Cache {
        public let reward: Float
        let h: [Float], p: [Float], length: Int          // h [C]; p [T, Cp]
        let query: [Float], keys: [Float], values: [Float] // [H·dk], [T, H·dk], [T, H·dv]
        let attention: [Float], summary: [Float], z: [Float] // [H, T], f [H·dv], z [C]
        let weight: Float
        /// Attention weights of head 0 over the response tokens.
        public var attentionWeights: [Float] { Array(attention[0..<length]) }
    }

    func w(_ offset: Int, _ row: Int, _ column: Int, _ columns: Int) -> Float { parameters.pointer[offset + row * columns + column] }

    /// The fused reward of one response: h [C] the reward model's last-token state, p [T, Cp] the
    /// policy's states on the T response tokens, weight = w(t).
    public func forward(rewardHidden h: [Float], policyHidden p: [Float], weight: Float) -> Cache {
        let C = channels, P = policyChannels, T = p.count / P, dk = keySize, dv = valueSize, H = heads
        precondition(h.count == C && p.count == T * P && T > 0, "R2MHead: h must be [C], p [T, Cp] with T > 0")
        var query = [Float](repeating: 0, count: H * dk)
        for i in 0..<(H * dk) { var s: Float = 0; for c in 0..<C { s += w(q, i, c, C) * h[c] }; query[i] = s }
        var keys = [Float](repeating: 0, count: T * H * dk), values = [Float](repeating: 0, count: T * H * dv)
        for t in 0..<T {
            for i in 0..<(H * dk) { var s: Float = 0; for c in 0..<P { s += w(k, i, c, P) * p[t * P + c] }; keys[t * H * dk + i] = s }
            for i in 0..<(H * dv) { var s: Float = 0; for c in 0..<P { s += w(v, i, c, P) * p[t * P + c] }; values[t * H * dv + i] = s }
        }
        var attention = [Float](repeating: 0, count: H * T), summary = [Float](repeating: 0, count: H * dv)
        let scale = 1 / Float(dk).squareRoot()
        for hd in 0..<H {
            var scores = (0..<T).map { t in (0..<dk).reduce(Float(0)) { $0 + query[hd * dk + $1] * keys[t * H * dk + hd * dk + $1] } * scale }
            let m = scores.max()!
            var total: Float = 0
            for t in 0..<T { scores[t] = Foundation.exp(scores[t] - m); total += scores[t] }
            for t in 0..<T {
                attention[hd * T + t] = scores[t] / total
                for j in 0..<dv { summary[hd * dv + j] += attention[hd * T + t] * values[t * H * dv + hd * dv + j] }
            }
        }
        var z = h
        for c in 0..<C { var s: Float = 0; for j in 0..<(H * dv) { s += w(o, c, j, H * dv) * summary[j] }; z[c] += weight * s }
        var r = parameters.pointer[head + C]
        for c in 0..<C { r += parameters.pointer[head + c] * z[c] }
        return Cache(reward: r, h: h, p: p, length: T, query: query, keys: keys, values: values, attention: attention, summary: summary, z: z, weight: weight)
    }

    /// Adds dL/dθ = dReward · dr/dθ into `gradients` [parameters.count].
    public func backward(_ cache: Cache, dReward: Float, gradients: FloatBuffer) {
        let C = channels, P = policyChannels, T = cache.length, dk = keySize, dv = valueSize, H = heads
        let g = gradients.pointer
        for c in 0..<C { g[head + c] += dReward * cache.z[c] }
        g[head + C] += dReward
        // dz = dReward·w_head; d(W_o f) = weight·dz.
        let dOut = (0..<C).map { dReward * parameters.pointer[head + $0] * cache.weight }
        var dSummary = [Float](repeating: 0, count: H * dv)
        for c in 0..<C {
            for j in 0..<(H * dv) { g[o + c * H * dv + j] += dOut[c] * cache.summary[j]; dSummary[j] += w(o, c, j, H * dv) * dOut[c] }
        }
        var dQuery = [Float](repeating: 0, count: H * dk)
        var dKeys = [Float](repeating: 0, count: T * H * dk), dValues = [Float](repeating: 0, count: T * H * dv)
        let scale = 1 / Float(dk).squareRoot()
        for hd in 0..<H {
            var dA = [Float](repeating: 0, count: T)
            for t in 0..<T {
                let a = cache.attention[hd * T + t]
                for j in 0..<dv {
                    dValues[t * H * dv + hd * dv + j] += a * dSummary[hd * dv + j]
                    dA[t] += dSummary[hd * dv + j] * cache.values[t * H * dv + hd * dv + j]
                }
            }
            let dot = (0..<T).reduce(Float(0)) { $0 + cache.attention[hd * T + $1] * dA[$1] }
            for t in 0..<T {
                let dScore = cache.attention[hd * T + t] * (dA[t] - dot) * scale
                for i in 0..<dk {
                    dQuery[hd * dk + i] += dScore * cache.keys[t * H * dk + hd * dk + i]
                    dKeys[t * H * dk + hd * dk + i] += dScore * cache.query[hd * dk + i]
                }
            }
        }
        for i in 0..<(H * dk) { for c in 0..<C { g[q + i * C + c] += dQuery[i] * cache.h[c] } }
        for t in 0..<T {
            for i in 0..<(H * dk) { for c in 0..<P { g[k + i * P + c] += dKeys[t * H * dk + i] * cache.p[t * P + c] } }
            for i in 0..<(H * dv) { for c in 0..<P { g[v + i * P + c] += dValues[t * H * dv + i] * cache.p[t * P + c] } }
        }
    }
}
