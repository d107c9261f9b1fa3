import Foundation
import XCTest

@testable import Runs

/// Metrics records are Encodable structs whose coding keys are metrics.jsonl's keys.
final class MetricsRecordTests: XCTestCase {
    struct Step: MetricsRecord {
        let step: Int
        let loss: Double, rate: Float
        let accuracy: Double?
        let figures: [String: Double]

        enum CodingKeys: String, CodingKey { case step, loss, rate = "learning_rate", accuracy }

        func encode(to encoder: any Encoder) throws {
            var keyed = encoder.container(keyedBy: CodingKeys.self)
            try keyed.encode(step, forKey: .step)
            try keyed.encode(loss, forKey: .loss)
            try keyed.encode(rate, forKey: .rate)
            try keyed.encodeIfPresent(accuracy, forKey: .accuracy)
            var named = encoder.container(keyedBy: MetricsKey.self)
            try named.encode(figures: figures)
        }
    }

    struct Nested: MetricsRecord { let step: Int, values: [Double] }

    func testFieldsAreTheCodingKeysAndNilIsLeftOut() throws {
        let fields = try MetricsObject.fields(
            of: Step(step: 3, loss: 0.25, rate: 0.5, accuracy: nil, figures: ["reward_verifier_mean": 0.75]))
        XCTAssertEqual(Set(fields.keys), ["step", "loss", "learning_rate", "reward_verifier_mean"])
        XCTAssertEqual(fields["step"] as? Int, 3)
        XCTAssertEqual(fields["learning_rate"] as? Double, 0.5, "a Float figure is written as a Double")
        XCTAssertEqual(fields["reward_verifier_mean"] as? Double, 0.75)
        let withAccuracy = try MetricsObject.fields(of: Step(step: 1, loss: 1, rate: 1, accuracy: 0.5, figures: [:]))
        XCTAssertEqual(withAccuracy["accuracy"] as? Double, 0.5)
    }

    func testNestedValuesAreAnErrorNamingTheKey() {
        XCTAssertThrowsError(try MetricsObject.fields(of: Nested(step: 1, values: [1, 2]))) { error in
            XCTAssertTrue("\(error)".contains("values"), "\(error)")
        }
    }

    func testARecordIsAppendedAsOneLine() throws {
        let directory = NSTemporaryDirectory() + "rlhf-metrics-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let folder = try RunFolder(path: directory)
        try folder.append(Step(step: 2, loss: .nan, rate: 0.5, accuracy: 0.5, figures: [:]))
        let line = try String(contentsOfFile: folder.metrics, encoding: .utf8)
        XCTAssertEqual(line, #"{"accuracy":0.5,"learning_rate":0.5,"loss":null,"step":2}"# + "\n", "NaN is null")
    }
}
