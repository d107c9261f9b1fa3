import Alignment
import Foundation
import XCTest

/// Rule verifiers and their routing spec.
final class VerifierTests: XCTestCase {
    func testExpressionVerifier() {
        XCTAssertEqual(ArithmeticExpressionVerifier.evaluate("12+34"), 46)
        XCTAssertEqual(ArithmeticExpressionVerifier.evaluate(" 2*(3+4) - 10/5 "), 12)
        XCTAssertEqual(ArithmeticExpressionVerifier.evaluate("-(3-5)"), 2)
        XCTAssertNil(ArithmeticExpressionVerifier.evaluate("7/2"), "inexact division")
        XCTAssertNil(ArithmeticExpressionVerifier.evaluate("1/0"))
        XCTAssertNil(ArithmeticExpressionVerifier.evaluate("2+"))
        XCTAssertNil(ArithmeticExpressionVerifier.evaluate("(1+2"))
        XCTAssertNil(ArithmeticExpressionVerifier.evaluate("46 apples"))
        XCTAssertNil(ArithmeticExpressionVerifier.evaluate("99999999999999999999*9"), "overflow is not a value")
        let v = ArithmeticExpressionVerifier()
        XCTAssertEqual(v.score(response: "12+34", answer: "46"), 1)
        XCTAssertEqual(v.score(response: "50-4", answer: "46"), 1)
        XCTAssertEqual(v.score(response: "12+33", answer: "46"), 0)
        XCTAssertEqual(v.score(response: "12+34", answer: nil), 0)
    }

    func testExactFormatAndLengthRules() {
        XCTAssertEqual(ExactAnswerVerifier().score(response: "46", answer: "46"), 1)
        XCTAssertEqual(
            ExactAnswerVerifier().score(response: "the sum is 46", answer: "46"), 1, "the final number counts")
        XCTAssertEqual(ExactAnswerVerifier().score(response: "45", answer: "46"), 0)
        XCTAssertEqual(IntegerFormatVerifier().score(response: "46", answer: nil), 0)
        XCTAssertEqual(IntegerFormatVerifier().score(response: "46!", answer: nil), -1)
        XCTAssertEqual(LengthVerifier(maxCharacters: 3).score(response: "123", answer: nil), 0)
        XCTAssertEqual(LengthVerifier(maxCharacters: 3).score(response: "1234", answer: nil), -1)
    }

    func testRoutesSpec() throws {
        let routes = try Verifiers.routes("arith, expr=expression+length8")
        XCTAssertEqual(routes["arith"]?.map(\.name), ["verifier", "format"])
        XCTAssertEqual(routes["expr"]?.map(\.name), ["expression", "length"])
        XCTAssertThrowsError(try Verifiers.routes("x=regex")) {
            XCTAssertTrue("\($0)".contains("unknown verifier 'regex'"), "\($0)")
        }
    }
}
