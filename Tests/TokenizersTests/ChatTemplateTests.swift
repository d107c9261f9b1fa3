import Foundation
@testable import Tokenizers
import XCTest

/// Chat templates rendered as transformers renders them (Fixtures/make_chat_template_fixture.py:
/// every template TRL ships and a ChatML one, on six awkward conversations, with and without the
/// generation prompt): equal strings, and an error wherever transformers raised one.
final class ChatTemplateTests: XCTestCase {
    var fixtures: String { Bundle.module.resourceURL!.appendingPathComponent("Fixtures").path }

    func testEveryTRLTemplateRendersAsTransformersDoes() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: fixtures + "/chat-templates.json"))
        guard case .object(let root) = try JinjaJSON.parse(String(decoding: data, as: UTF8.self)),
              case .array(let templates)? = root["templates"], case .array(let conversations)? = root["conversations"],
              case .object(let kwargs)? = root["kwargs"] else { return XCTFail("malformed fixture") }
        XCTAssertGreaterThanOrEqual(templates.count, 70)
        var failures: [String] = [], rendered = 0
        for case .object(let t) in templates {
            let name = t["name"]!.rendered
            let template: ChatTemplate
            do { template = try ChatTemplate(t["template"]!.rendered) } catch { failures.append("\(name): \(error)"); continue }
            guard case .array(let cases)? = t["cases"] else { continue }
            for case .object(let c) in cases {
                guard case .int(let k)? = c["conversation"] else { continue }
                let prompt = c["add_generation_prompt"]!.isTruthy
                let result = Result { try template.render(messages: conversations[k], addGenerationPrompt: prompt, bosToken: kwargs["bos_token"]!.rendered,
                                                          eosToken: kwargs["eos_token"]!.rendered, variables: ["date_string": kwargs["date_string"]!]) }
                switch (result, c["rendered"]) {
                case (.success(let ours), .some(let expected)):
                    if ours == expected.rendered { rendered += 1 } else { failures.append("\(name) conversation \(k) prompt \(prompt): ours \(ours.debugDescription)\n  transformers \(expected.rendered.debugDescription)") }
                case (.failure(let error), .some): failures.append("\(name) conversation \(k) prompt \(prompt): \(error)")
                case (.success(let ours), .none): failures.append("\(name) conversation \(k) prompt \(prompt): transformers raised \(c["error"]!.rendered), ours rendered \(ours.prefix(80).debugDescription)")
                case (.failure, .none): break
                }
            }
        }
        XCTAssertEqual(failures.count, 0, "\(failures.count) renderings differ:\n" + failures.prefix(15).joined(separator: "\n"))
        XCTAssertGreaterThan(rendered, 700)
    }

    func testUnsupportedConstructsNameThemselvesAndTheirLine() throws {
        XCTAssertThrowsError(try ChatTemplate("hello\n{% call foo() %}x{% endcall %}")) { XCTAssertTrue("\($0)".contains("line 2: statement 'call' is not supported"), "\($0)") }
        XCTAssertThrowsError(try ChatTemplate("{% if x %}open")) { XCTAssertTrue("\($0)".contains("missing {% elif / else / endif %}"), "\($0)") }
        let t = try ChatTemplate("{{ x | frobnicate }}")
        XCTAssertThrowsError(try t.render(messages: .array([]), addGenerationPrompt: false)) { XCTAssertTrue("\($0)".contains("filter 'frobnicate' is not supported"), "\($0)") }
        let raising = try ChatTemplate("{{ raise_exception('only user and assistant') }}")
        XCTAssertThrowsError(try raising.render(messages: .array([]), addGenerationPrompt: false)) { XCTAssertTrue("\($0)".contains("only user and assistant"), "\($0)") }
    }
}
