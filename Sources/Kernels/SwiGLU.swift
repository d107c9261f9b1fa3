/// The gated MLP activation of Llama-family models (Shazeer 2020): act = silu(gate) ⊙ up, with
/// silu(g) = g · σ(g). Shapes: gate, up, act [M, I].
public func swigluForward(
    out: UnsafeMutablePointer<Float>, gate: UnsafePointer<Float>, up: UnsafePointer<Float>, count n: Int
) {
    Parallel.forEach(n, costPerItem: 20) { range in
        for i in range {
            let g = gate[i]
            out[i] = g / (1 + fastExp(-g)) * up[i]
        }
    }
}

/// dgate = dout ⊙ up ⊙ σ(g)(1 + g(1 − σ(g))), dup = dout ⊙ silu(g) (overwritten).
public func swigluBackward(
    dGate: UnsafeMutablePointer<Float>, dUp: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>,
    gate: UnsafePointer<Float>, up: UnsafePointer<Float>, count n: Int
) {
    Parallel.forEach(n, costPerItem: 25) { range in
        for i in range {
            let g = gate[i], s = 1 / (1 + fastExp(-g))
            dUp[i] = dout[i] * g * s
            dGate[i] = dout[i] * up[i] * s * (1 + g * (1 - s))
        }
    }
}
