import XCTest

@testable import Alignment

/// The ifeval task's rules, each on replies that keep and break it (IFEval's checks).
final class InstructionConstraintTests: XCTestCase {
    func testEachRuleOnRepliesThatKeepAndBreakIt() {
        let cases: [(InstructionConstraint, keeps: [String], breaks: [String])] = [
            (.lowercase, ["the sea is calm today.", "  rivers run 2 ways\n"], ["The sea.", "1234", ""]),
            (.allCapitals, ["THE SEA IS CALM.", "OK 42"], ["THE Sea.", "42 !"]),
            (.noCommas, ["No commas here.", "a\nb"], ["One, two.", ""]),
            (.quoted, ["\"A quoted note.\"", "  \"x y\"\n"], ["A note.", "\"open", "\""]),
            (.maxWords(3), ["one two three", "one"], ["one two three four", "   "]),
            (.minWords(3), ["one two three", "a b c d"], ["one two"]),
            (
                .bullets(2), ["Intro\n* first\n* second", "- a\n- b", "* a\r\n* b"],
                ["* only one", "* a\n* b\n* c", "*no space\n*x"]
            ),
            (.keyword("light", times: 2), ["Light and light.", "light, LIGHT!"], ["light once", "lighter lightly"]),
            (
                .endPhrase("Thank you for reading."), ["A note. Thank you for reading.", "Thank you for reading.\n"],
                ["Thank you for reading. Bye.", "thank you for reading."]
            ),
            (
                .startWord("Today"), ["Today is bright.", "\"Today,\" she said", "today we sail"],
                ["Yesterday today.", ""]
            ),
            (
                .jsonKey("note"), [#"{"note": "x"}"#, "```json\n{\"note\": 1, \"b\": 2}\n```"],
                [#"{"title": "x"}"#, "note: x", #"["note"]"#]
            ),
        ]
        for (c, keeps, breaks) in cases {
            for r in keeps { XCTAssertTrue(c.isSatisfied(by: r), "\(c.spec) should accept \(r.debugDescription)") }
            for r in breaks { XCTAssertFalse(c.isSatisfied(by: r), "\(c.spec) should refuse \(r.debugDescription)") }
        }
        XCTAssertEqual(Set(cases.map(\.0.kind)), Set(InstructionConstraint.kinds), "every kind is exercised")
    }

    /// Specs read back as the constraint they were written from; the verifier gives the share kept.
    func testSpecsRoundTripAndTheVerifierGivesTheShareKept() throws {
        let all: [InstructionConstraint] = [
            .lowercase, .noCommas, .allCapitals, .quoted, .maxWords(30), .minWords(25), .bullets(3),
            .keyword("water", times: 2), .endPhrase("That is all for today."), .startWord("Imagine"), .jsonKey("title"),
        ]
        for c in all { XCTAssertEqual(InstructionConstraint.parse(c.spec), c, c.spec) }
        XCTAssertEqual(try InstructionConstraint.parseList("no_commas;max_words|30"), [.noCommas, .maxWords(30)])
        // Rules no reply can keep (or every reply keeps) are refused, not scored 0 or 1 forever.
        for bad in [
            "max_words|0", "min_words|-3", "bullets|", "keyword|two words|2", "keyword|x|0", "end_phrase|",
            "start_word| ", "lowercase|1", "shout",
        ] {
            XCTAssertNil(InstructionConstraint.parse(bad), bad)
        }
        XCTAssertThrowsError(try InstructionConstraint.parseList("no_commas;max_words|lots")) {
            XCTAssertTrue("\($0)".contains("max_words|lots"), "\($0)")
        }
        let v = InstructionVerifier()
        XCTAssertEqual(
            v.score(response: "no commas here", answer: "no_commas;lowercase;max_words|2"), 2.0 / 3.0, accuracy: 1e-12)
        XCTAssertEqual(v.score(response: "x", answer: nil), 0)
        XCTAssertEqual(Verifiers.named("instructions")?.name, "instructions")
    }

    func testConflictsAreSymmetric() {
        for a in InstructionConstraint.kinds {
            XCTAssertTrue(InstructionConstraint.conflict(a, a))
            for b in InstructionConstraint.kinds {
                XCTAssertEqual(InstructionConstraint.conflict(a, b), InstructionConstraint.conflict(b, a))
            }
        }
        XCTAssertTrue(InstructionConstraint.conflict("all_capitals", "lowercase"))
        XCTAssertFalse(InstructionConstraint.conflict("no_commas", "max_words"))
    }
}
