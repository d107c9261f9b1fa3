import Kernels
import XCTest

/// Random buffers and a loss that mixes every output: L = Σ r_i·y_i with fixed random r, so each
/// output's gradient is exercised with its own weight.
struct Probe {
    var rng: RNG
    init(seed: UInt64) { rng = RNG(seed: seed) }

    mutating func buffer(_ n: Int, std: Float = 1, mean: Float = 0) -> FloatBuffer {
        let b = FloatBuffer(count: n)
        rng.fillNormal(b.buffer, std: std)
        for i in 0..<n { b[i] += mean }
        return b
    }
}

func weightedSum(_ y: FloatBuffer, _ r: FloatBuffer) -> Double {
    var s = 0.0
    for i in 0..<y.count { s += Double(y[i]) * Double(r[i]) }
    return s
}

/// Checks every coordinate of `parameter` (or a strided sample when it is large) against
/// central differences of `loss`.
func assertGradient(
    _ name: String, analytic: FloatBuffer, parameter: FloatBuffer, step: Float = 1e-2,
    relative: Double = 1e-2, absolute: Double = 1e-3, maxChecks: Int = 64,
    loss: () throws -> Double, file: StaticString = #filePath, line: UInt = #line
) rethrows {
    precondition(analytic.count == parameter.count)
    let stride = max(1, parameter.count / maxChecks)
    var checked = 0
    for i in Swift.stride(from: 0, to: parameter.count, by: stride) {
        let numeric = try FiniteDifferences.derivative(at: parameter.pointer + i, step: step, of: loss)
        let a = Double(analytic[i])
        XCTAssertTrue(
            FiniteDifferences.agrees(a, numeric, relative: relative, absolute: absolute),
            "\(name)[\(i)]: analytic \(a) vs finite difference \(numeric)", file: file, line: line)
        checked += 1
    }
    XCTAssertGreaterThan(checked, 0, file: file, line: line)
}
