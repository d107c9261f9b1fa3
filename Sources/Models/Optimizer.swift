import Foundation
import Kernels

/// AdamW over one flat parameter buffer described by a layout. Weight decay applies to matrices
/// and embeddings (rank ≥ 2) only, not to biases and LayerNorm parameters (GPT-2/nanoGPT practice).
public final class AdamW: @unchecked Sendable {
    public let layout: TensorLayout
    public var hyper: AdamWHyperparameters
    public let m: FloatBuffer, v: FloatBuffer
    public private(set) var step = 0

    public init(layout: TensorLayout, hyper: AdamWHyperparameters) {
        self.layout = layout
        self.hyper = hyper
        m = FloatBuffer(count: layout.totalCount)
        v = FloatBuffer(count: layout.totalCount)
    }

    /// One update with the given learning rate.
    public func update(parameters: FloatBuffer, gradients: FloatBuffer, learningRate: Float) {
        step += 1
        var h = hyper
        h.learningRate = learningRate
        for t in layout.tensors {
            adamWUpdate(
                params: parameters.pointer + t.offset, grads: gradients.pointer + t.offset,
                m: m.pointer + t.offset, v: v.pointer + t.offset, count: t.count,
                step: step, hyper: h, decay: t.shape.count >= 2)
        }
    }

    /// Restores a saved state (moments and step count).
    public func restore(m: [Float], v: [Float], step: Int) throws {
        guard m.count == self.m.count, v.count == self.v.count else {
            throw ModelError.input("optimizer state has \(m.count) moments, the model needs \(self.m.count)")
        }
        m.withUnsafeBufferPointer { self.m.pointer.update(from: $0.baseAddress!, count: $0.count) }
        v.withUnsafeBufferPointer { self.v.pointer.update(from: $0.baseAddress!, count: $0.count) }
        self.step = step
    }
}

/// The global L2 norm of the gradients, and clipping as torch.nn.utils.clip_grad_norm_:
/// scale by maxNorm / (norm + 1e-6) when the norm exceeds maxNorm. Returns the norm before clipping.
@discardableResult
public func clipGradientNorm(_ gradients: FloatBuffer, maxNorm: Float) -> Float {
    var total = 0.0
    var i = 0
    let n = gradients.count, p = gradients.pointer
    while i + 4096 <= n {
        total += Double(vectorDot(p + i, p + i, 4096))
        i += 4096
    }
    if i < n { total += Double(vectorDot(p + i, p + i, n - i)) }
    let norm = Float(total.squareRoot())
    if maxNorm > 0 && norm > maxNorm {
        let scale = maxNorm / (norm + 1e-6)
        for j in 0..<n { p[j] *= scale }
    }
    return norm
}
