import Foundation
import Kernels
import Models
import XCTest

@testable import Runs
@testable import Training

final class OptimizerTests: XCTestCase {
    func testScheduleWarmsUpThenFollowsTheCosine() {
        let s = LearningRateSchedule(peak: 1e-3, minRatio: 0.1, warmupSteps: 10, totalSteps: 110)
        XCTAssertEqual(s.rate(step: 1), 1e-4, accuracy: 1e-9)
        XCTAssertEqual(s.rate(step: 5), 5e-4, accuracy: 1e-9)
        XCTAssertEqual(s.rate(step: 10), 1e-3, accuracy: 1e-9)
        XCTAssertEqual(s.rate(step: 60), 0.55e-3, accuracy: 1e-8, "halfway: floor + half the span")
        XCTAssertEqual(s.rate(step: 110), 1e-4, accuracy: 1e-9)
        XCTAssertEqual(s.rate(step: 500), 1e-4, accuracy: 1e-9, "stays at the floor after the end")
        for step in 11..<110 { XCTAssertLessThanOrEqual(s.rate(step: step + 1), s.rate(step: step)) }
    }

    /// One step by hand: m̂/√v̂ = sign(g) on step 1, so a matrix entry moves by −lr·sign(g) after
    /// shrinking by (1 − lr·wd); a bias is not decayed.
    func testOneAdamWStepAgainstHandComputedNumbers() {
        var layout = TensorLayout()
        layout.add("w", [2, 2])
        layout.add("b", [2])
        let opt = AdamW(layout: layout, hyper: AdamWHyperparameters(learningRate: 0.1, weightDecay: 0.5))
        let p = FloatBuffer([1, -1, 2, 0.5, 3, -3]), g = FloatBuffer([0.2, -4, 0, 1, 7, -0.1])
        opt.update(parameters: p, gradients: g, learningRate: 0.1)
        let expected: [Float] = [1 * 0.95 - 0.1, -1 * 0.95 + 0.1, 2 * 0.95, 0.5 * 0.95 - 0.1, 3 - 0.1, -3 + 0.1]
        for i in 0..<6 { XCTAssertEqual(p[i], expected[i], accuracy: 1e-6, "parameter \(i)") }
        XCTAssertEqual(opt.step, 1)
    }

    func testGradientClippingMatchesTorchRule() {
        let g = FloatBuffer([3, 4])
        XCTAssertEqual(clipGradientNorm(g, maxNorm: 1), 5, accuracy: 1e-6)
        XCTAssertEqual(g[0], 3 / (5 + 1e-6), accuracy: 1e-6)
        XCTAssertEqual(g[1], 4 / (5 + 1e-6), accuracy: 1e-6)
        let small = FloatBuffer([0.3, 0.4])
        XCTAssertEqual(clipGradientNorm(small, maxNorm: 1), 0.5, accuracy: 1e-6)
        XCTAssertEqual(small.array, [0.3, 0.4], "below the limit nothing changes")
    }
}
