import Foundation
import XCTest

@testable import Tokenizers

/// Chat templates rendered as transformers renders them (Fixtures/make_chat_template_fixture.py:
/// every template TRL ships and a ChatML one, on six awkward conversations, with and without the
/// generation prompt): equal strings, and an error wherever transformers raised one.
final class ChatTemplateTests: XCTestCase {
    var fixtures: String { Bundle.module.resourceURL!.appendingPathComponent("Fixtures").path }

    func testEveryTRLTemplateRendersAsTransformersDoes() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: fixtures + "/chat-templates.json"))
        guard case .object(let root) = try JinjaJSON.parse(String(decoding: data, as: UTF8.self)),
            case .array(let templates)? = root["templates"], case .array(let conversations)? = root["conversations"],
            case .object(let kwargs)? = root["kwargs"], case .string(let today)? = root["today"]
        else { return XCTFail("malformed fixture") }
        // strftime_now on the day the fixture was recorded, not the day the test runs.
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withFullDate]
        // noon UTC: that day in any time zone ±12 h
        let recorded = try XCTUnwrap(formatter.date(from: today)).addingTimeInterval(12 * 3600)
        let pinnedClock = JinjaValue.function(
            JinjaFunction(name: "strftime_now") { args, _ in
                .string(ChatTemplate.strftime(args.first?.rendered ?? "", recorded))
            })
        XCTAssertGreaterThanOrEqual(templates.count, 70)
        var failures: [String] = [], rendered = 0
        for case .object(let t) in templates {
            let name = t["name"]!.rendered
            let template: ChatTemplate
            do { template = try ChatTemplate(t["template"]!.rendered) } catch {
                failures.append("\(name): \(error)")
                continue
            }
            guard case .array(let cases)? = t["cases"] else { continue }
            for case .object(let c) in cases {
                guard case .int(let k)? = c["conversation"] else { continue }
                let prompt = c["add_generation_prompt"]!.isTruthy
                let result = Result {
                    try template.render(
                        messages: conversations[k], addGenerationPrompt: prompt,
                        bosToken: kwargs["bos_token"]!.rendered,
                        eosToken: kwargs["eos_token"]!.rendered,
                        variables: ["date_string": kwargs["date_string"]!, "strftime_now": pinnedClock])
                }
                switch (result, c["rendered"]) {
                case (.success(let ours), .some(let expected)):
                    if ours == expected.rendered {
                        rendered += 1
                    } else {
                        failures.append(
                            "\(name) conversation \(k) prompt \(prompt): ours \(ours.debugDescription)\n  "
                                + "transformers \(expected.rendered.debugDescription)"
                        )
                    }
                case (.failure(let error), .some):
                    failures.append("\(name) conversation \(k) prompt \(prompt): \(error)")
                case (.success(let ours), nil):
                    failures.append(
                        "\(name) conversation \(k) prompt \(prompt): transformers raised \(c["error"]!.rendered), "
                            + "ours rendered \(ours.prefix(80).debugDescription)"
                    )
                case (.failure, nil): break
                }
            }
        }
        XCTAssertEqual(
            failures.count, 0, "\(failures.count) renderings differ:\n" + failures.prefix(15).joined(separator: "\n"))
        XCTAssertGreaterThan(rendered, 700)
    }

    /// Jinja2 details the fixture templates do not all reach, and inputs that must not crash.
    func testJinjaSemanticsAndHostileTemplates() throws {
        func render(_ source: String, _ variables: [String: JinjaValue] = [:]) throws -> String {
            try ChatTemplate(source).render(messages: .array([]), addGenerationPrompt: false, variables: variables)
        }
        XCTAssertEqual(
            try render("{{ -3|abs }} {{ 'b' is in ['a', 'b'] }} {{ tools is none }} {{ 'é'|length }}"), "3 True True 1")
        XCTAssertEqual(try render("{% for x in [1, 2] +%}\n{{ x }}{% endfor %}"), "\n1\n2", "+%} keeps the newline")
        XCTAssertEqual(try render("a\n"), "a", "one trailing newline dropped (keep_trailing_newline=False)")
        XCTAssertEqual(
            try render("{{ 9223372036854775807 + 1 }} {{ 99999999999999999999 }}"), "9.223372036854776e+18 1e+20")
        for (source, message) in [
            ("{{ range() }}", "range() takes 1 to 3 integers"), ("{{ 'abc'[::0] }}", "slice step cannot be zero"),
            ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "recurses more than 200 calls deep"),
        ] {
            XCTAssertThrowsError(try render(source), source) { XCTAssertTrue("\($0)".contains(message), "\($0)") }
        }
    }

    func testUnsupportedConstructsNameThemselvesAndTheirLine() throws {
        XCTAssertThrowsError(try ChatTemplate("hello\n{% call foo() %}x{% endcall %}")) {
            XCTAssertTrue("\($0)".contains("line 2: statement 'call' is not supported"), "\($0)")
        }
        XCTAssertThrowsError(try ChatTemplate("{% if x %}open")) {
            XCTAssertTrue("\($0)".contains("missing {% elif / else / endif %}"), "\($0)")
        }
        let t = try ChatTemplate("{{ x | frobnicate }}")
        XCTAssertThrowsError(try t.render(messages: .array([]), addGenerationPrompt: false)) {
            XCTAssertTrue("\($0)".contains("filter 'frobnicate' is not supported"), "\($0)")
        }
        let raising = try ChatTemplate("{{ raise_exception('only user and assistant') }}")
        XCTAssertThrowsError(try raising.render(messages: .array([]), addGenerationPrompt: false)) {
            XCTAssertTrue("\($0)".contains("only user and assistant"), "\($0)")
        }
    }
}
