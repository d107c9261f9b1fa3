import Foundation
import XCTest

@testable import Config

/// The configuration module on a schema of its own: defaults, overrides, typed reads, and errors
/// that name the key and suggest the closest one.
final class SchemaTests: XCTestCase {
    static let rate = Key<Double>("train.lr", 0.001, "learning rate", .positive)
    static let steps = Key<Int>("train.steps", 10, "optimizer steps", .nonNegative)
    static let name = Key<String>("name", "run", "run name")
    let schema = ConfigSchema([rate.declaration, steps.declaration, name.declaration])

    func testDefaultsThenOverridesAreReadTyped() throws {
        let defaults = try schema.resolve(file: nil, overrides: [])
        XCTAssertEqual(defaults[Self.rate], 0.001)
        XCTAssertEqual(defaults[Self.steps], 10)
        let set = try schema.resolve(file: nil, overrides: ["train.lr=0.5", "train.steps=3", "name=x"])
        XCTAssertEqual(set[Self.rate], 0.5)
        XCTAssertEqual(set[Self.steps], 3)
        XCTAssertEqual(set[Self.name], "x")
    }

    func testUnknownMistypedAndOutOfRangeValuesNameTheKey() {
        XCTAssertThrowsError(try schema.resolve(file: nil, overrides: ["train.lrr=0.1"])) {
            XCTAssertTrue("\($0)".contains("train.lrr") && "\($0)".contains("train.lr"), "names it and suggests: \($0)")
        }
        XCTAssertThrowsError(try schema.resolve(file: nil, overrides: ["train.steps=many"])) {
            XCTAssertTrue("\($0)".contains("train.steps"), "\($0)")
        }
        XCTAssertThrowsError(try schema.resolve(file: nil, overrides: ["train.lr=-1"])) {
            XCTAssertTrue("\($0)".contains("train.lr") && "\($0)".contains("> 0"), "\($0)")
        }
    }

    func testEditDistance() {
        XCTAssertEqual(editDistance("train.lr", "train.lr"), 0)
        XCTAssertEqual(editDistance("train.lrr", "train.lr"), 1)
        XCTAssertEqual(editDistance("", "abc"), 3)
    }
}
