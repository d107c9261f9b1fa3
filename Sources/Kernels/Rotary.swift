import Foundation

/// Rotary position embeddings (Su et al. 2021) in Hugging Face's rotate-half layout: within each
/// head of d channels, channel i pairs with channel i + d/2 and the pair is rotated by the angle
/// position · inv_freq[i], inv_freq[i] = θ^(−2i/d) (transformers' LlamaRotaryEmbedding).
/// The angles are tabulated once per model: cos and sin [P, d/2] for positions 0 ..< P.
public struct RotaryTable: Sendable {
    public let headSize: Int, positions: Int
    let cos: [Float], sin: [Float]  // [P, d/2]

    /// `inverseFrequencies` [d/2]; transformers multiplies positions by them in fp32, as here.
    public init(inverseFrequencies: [Float], positions: Int) {
        let half = inverseFrequencies.count
        headSize = 2 * half
        self.positions = positions
        var c = [Float](repeating: 0, count: positions * half), s = c
        for p in 0..<positions {
            for i in 0..<half {
                let angle = Float(p) * inverseFrequencies[i]
                c[p * half + i] = Float(Foundation.cos(Double(angle)))
                s[p * half + i] = Float(Foundation.sin(Double(angle)))
            }
        }
        cos = c
        sin = s
    }

    /// Rotates `heads` heads of every row of x [M, ld] in place, row r at position positions[r].
    /// `inverse` applies the transposed rotation: the backward of the forward rotation.
    public func apply(
        _ x: UnsafeMutablePointer<Float>, rows: Int, rowStride ld: Int, heads: Int, positions: [Int],
        inverse: Bool = false
    ) {
        let half = headSize / 2, sign: Float = inverse ? -1 : 1
        cos.withUnsafeBufferPointer { cosTable in
            sin.withUnsafeBufferPointer { sinTable in
                for r in 0..<rows {
                    let c = cosTable.baseAddress! + positions[r] * half, s = sinTable.baseAddress! + positions[r] * half
                    for h in 0..<heads {
                        let v = x + r * ld + h * headSize
                        for i in 0..<half {
                            let a = v[i], b = v[i + half], si = sign * s[i]
                            v[i] = a * c[i] - b * si
                            v[i + half] = b * c[i] + a * si
                        }
                    }
                }
            }
        }
    }
}
