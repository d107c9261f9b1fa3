import Foundation
import Kernels
import XCTest

final class FastMathTests: XCTestCase {
    func testFastExpMatchesLibmWithinTwoUlpsRelative() {
        var worst: Double = 0
        var x: Float = -87
        while x < 88 {
            let exact = Foundation.exp(Double(x))
            worst = max(worst, abs(Double(fastExp(x)) - exact) / exact)
            x += 0.0137
        }
        XCTAssertLessThan(worst, 5e-7, "fastExp relative error")
    }

    func testFastExpClampsInsteadOfOverflowing() {
        XCTAssertTrue(fastExp(1000).isFinite)
        XCTAssertEqual(Double(fastExp(-1000)), Foundation.exp(-87.0), accuracy: 1e-44)
        XCTAssertEqual(fastExp(0), 1)
    }

    func testFastTanhMatchesLibm() {
        var worst: Double = 0
        var x: Float = -20
        while x < 20 {
            worst = max(worst, abs(Double(fastTanh(x)) - Foundation.tanh(Double(x))))
            x += 0.00731
        }
        XCTAssertLessThan(worst, 1e-6)
        XCTAssertEqual(fastTanh(50), 1)
        XCTAssertEqual(fastTanh(-50), -1)
    }

    func testReductionsMatchScalarSums() {
        var probe = Probe(seed: 3)
        for n in [1, 15, 16, 17, 100, 1000] {
            let x = probe.buffer(n), y = probe.buffer(n)
            var sum = 0.0, dot = 0.0, mx = -Double.infinity
            for i in 0..<n {
                sum += Double(x[i])
                dot += Double(x[i]) * Double(y[i])
                mx = max(mx, Double(x[i]))
            }
            XCTAssertEqual(Double(vectorSum(x.pointer, n)), sum, accuracy: 1e-4 * Double(n))
            XCTAssertEqual(Double(vectorDot(x.pointer, y.pointer, n)), dot, accuracy: 1e-4 * Double(n))
            XCTAssertEqual(Double(vectorMax(x.pointer, n)), mx)
        }
    }

    func testRNGIsDeterministicAndSeedSensitive() {
        var a = RNG(seed: 42), b = RNG(seed: 42), c = RNG(seed: 43)
        let sa = (0..<8).map { _ in a.next() }, sb = (0..<8).map { _ in b.next() }, sc = (0..<8).map { _ in c.next() }
        XCTAssertEqual(sa, sb)
        XCTAssertNotEqual(sa, sc)
        var n = RNG(seed: 1)
        let samples = (0..<20000).map { _ in Double(n.normal()) }
        let mean = samples.reduce(0, +) / Double(samples.count)
        let variance = samples.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(samples.count)
        XCTAssertEqual(mean, 0, accuracy: 0.03)
        XCTAssertEqual(variance, 1, accuracy: 0.05)
    }
}
