import Config
import Foundation
import XCTest

@testable import Training

/// The study's settings are checked before any stage runs: repeats, conflicting seeds, keys the
/// methods set themselves, and methods the other study keys cannot serve.
final class OverOptimisationConfigTests: XCTestCase {
    func settings(_ overrides: [String]) throws -> OverOptimisation.Settings {
        try OverOptimisation.Settings(
            try OverOptimisation.schema.resolve(file: nil, overrides: ["data.task=arith"] + overrides))
    }

    func refused(_ overrides: [String], _ message: String, line: UInt = #line) {
        XCTAssertThrowsError(try settings(overrides), line: line) {
            XCTAssertTrue("\($0)".contains(message), "\($0)", line: line)
        }
    }

    func testOverridesNameTheirMethod() throws {
        let s = try settings(["study.methods=laser,laser+laser.alpha=1,r2m+r2m.lr=1e-5+r2m.steps=4"])
        XCTAssertEqual(s.methods.map(\.description), ["laser", "laser+laser.alpha=1", "r2m+r2m.lr=1e-5+r2m.steps=4"])
        XCTAssertEqual(s.methods.map(\.method), [.laser, .laser, .r2m])
        XCTAssertEqual(s.methods[2].overrides, ["r2m.lr=1e-5", "r2m.steps=4"])
        refused(["study.methods=laser,laser+laser.alpha=0.1,laser+laser.alpha=0.1"], "appears twice")
    }

    func testMethodsAndSeedsParse() throws {
        let s = try settings(["study.methods=proxy3,ensemble,r2m_no_feedback,hybrid_prepo", "study.seeds=4,2"])
        XCTAssertEqual(s.methods.map(\.method), [.proxy(3), .ensemble, .r2mNoFeedback, .hybridPrePPO])
        XCTAssertEqual(s.methods.map(\.description), ["proxy3", "ensemble", "r2m_no_feedback", "hybrid_prepo"])
        XCTAssertEqual(s.seeds, [4, 2])
        XCTAssertEqual(try settings(["seed=7"]).seeds, [7], "no study.seeds: the run's seed")
        XCTAssertEqual(s.proxiesTrained, 3)
    }

    func testBadStudiesAreRefused() {
        refused(["study.methods=proxy,proxy1"], "'study.methods': proxy appears twice")
        refused(["study.seeds=1,2,1"], "'study.seeds': 1 appears twice")
        refused(["study.methods=greedy"], "'greedy' is not a method")
        refused(["study.seeds=1,x"], "'x' is not a seed")
        refused(["seed=3", "study.seeds=1,2"], "'seed' and 'study.seeds' are both set")
        refused(["rl.rewards.selection=laser"], "'rl.rewards.selection' is set by each method")
        refused(["rl.prepo.keep=0.5"], "'rl.prepo.keep' is set by each method")
        refused(["study.methods=proxy4"], "proxy4 needs study.proxies ≥ 4")
        refused(["study.methods=laser", "study.proxies=1"], "laser chooses among or averages the proxies")
        refused(["study.verifier_share=0.8", "study.reference_share=0.3"], "add up to at most 1")
        refused(["study.methods=hybrid_prepo", "study.prepo_keep=0"], "'study.prepo_keep' is 0")
        refused(["study.methods=hybrid_prepo", "study.verifier_share=0"], "no prompt has that task")
        refused(["study.methods=proxy+seed=9"], "'seed', which the study sets for every method")
        refused(["study.methods=proxy+data.seed=2"], "'data.seed', which the study sets")
        refused(["study.methods=laser+rewards.selection=mean"], "'rewards.selection', which each method sets itself")
        refused(["study.methods=laser+laser.nope=1"], "laser.nope")
        refused(["study.methods=laser+laser.alpha"], "'laser.alpha' is not key=value")
        refused(["study.methods=proxy+r2m.steps=4"], "'r2m.steps' is set, but rewards.selection is mean")
        refused(["study.methods=hybrid_curriculum", "study.curriculum_share=0"], "hybrid_curriculum has no curriculum")
    }
}
