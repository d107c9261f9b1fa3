import Alignment
import XCTest

@testable import Rewards

/// The hybrid reward's routing: verifiers by task, the GenRM for the rest.
final class HybridRoutingTests: XCTestCase {
    func testRoutesAndVerifierScores() throws {
        let hybrid = HybridReward(
            verifiers: try Verifiers.routes("arith,expr=expression"), referenceTasks: ["judged"], genrm: nil)
        XCTAssertEqual(hybrid.route(task: "arith", hasAnswer: true), .verifier)
        XCTAssertEqual(hybrid.route(task: "arith", hasAnswer: false), .genrmBestOfN, "a verifier needs the answer")
        XCTAssertEqual(hybrid.route(task: "judged", hasAnswer: true), .genrmTruth)
        XCTAssertEqual(hybrid.route(task: "chat", hasAnswer: true), .genrmBestOfN)
        let (values, routes) = try hybrid.scores(
            prompts: [0, 1, 2], questions: ["1+2=", "1+2=", "make 5:"], tasks: ["arith", "arith", "expr"],
            answers: ["3", "3", "5"], texts: ["3", "3!", "2+3"])
        XCTAssertEqual(values, [1, 0, 1], "exact + format; exact but not a bare integer; an expression worth 5")
        XCTAssertEqual(routes, [.verifier, .verifier, .verifier])
        XCTAssertThrowsError(
            try hybrid.scores(prompts: [0], questions: ["q"], tasks: ["judged"], answers: ["1"], texts: ["1"])
        ) {
            XCTAssertTrue("\($0)".contains("rewards.genrm_model"), "\($0)")
        }
    }
}
