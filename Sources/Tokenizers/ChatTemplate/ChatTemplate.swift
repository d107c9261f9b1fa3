import Foundation

/// A model's chat template (tokenizer_config.json's `chat_template`), rendered for a list of
/// messages as transformers' `apply_chat_template(..., tokenize=False)` does: variables
/// `messages`, `add_generation_prompt`, `bos_token`, `eos_token` and any extra ones (TRL's
/// `chat_template_kwargs`, tools), globals raise_exception, namespace, range, strftime_now.
public struct ChatTemplate: @unchecked Sendable {
    public let source: String
    let nodes: [JinjaNode]

    public init(_ source: String) throws {
        self.source = source
        // Jinja2's keep_trailing_newline=False: one newline at the very end of the source is dropped.
        var text = source
        if text.hasSuffix("\r\n") {
            text.removeLast()
        } else if text.unicodeScalars.last == "\n" {
            text.unicodeScalars.removeLast()
        }
        var parser = try JinjaStatementParser(text)
        nodes = try parser.parse(until: []).0
    }

    /// Messages (and other variables) as JSON text keeps their key order, as Python's dicts do.
    public static func value(json: String) throws -> JinjaValue { try JinjaJSON.parse(json) }

    /// `value` as JSON text on one line, its objects' keys in their order.
    public static func json(_ value: JinjaValue) throws -> String { try JinjaJSON.dumps(value, indent: nil) }

    public func render(
        messages: JinjaValue, addGenerationPrompt: Bool, bosToken: String? = nil, eosToken: String? = nil,
        variables: [String: JinjaValue] = [:]
    ) throws -> String {
        var globals: [String: JinjaValue] = [
            "messages": messages, "add_generation_prompt": .bool(addGenerationPrompt),
            "raise_exception": .function(
                JinjaFunction(name: "raise_exception") { args, _ in
                    throw JinjaRenderError("the template raised: \(args.first?.rendered ?? "")")
                }),
            "namespace": .function(
                JinjaFunction(name: "namespace") { args, kwargs in
                    var values = JinjaObject()
                    if case .object(let o)? = args.first { for e in o.entries { values[e.key] = e.value } }
                    for (k, v) in kwargs { values[k] = v }
                    return .namespace(JinjaNamespace(values))
                }),
            "range": .function(
                JinjaFunction(name: "range") { args, _ in
                    let n = try args.map { v -> Int in
                        guard case .int(let i) = v else {
                            throw JinjaRenderError("range() takes integers, not a \(v.typeName)")
                        }
                        return i
                    }
                    guard (1...3).contains(n.count) else {
                        throw JinjaRenderError("range() takes 1 to 3 integers, got \(n.count)")
                    }
                    let (start, stop, step) = n.count == 1 ? (0, n[0], 1) : (n[0], n[1], n.count > 2 ? n[2] : 1)
                    guard step != 0 else { throw JinjaRenderError("range() step must not be zero") }
                    return .array(stride(from: start, to: stop, by: step).map { .int($0) })
                }),
            "strftime_now": .function(
                JinjaFunction(name: "strftime_now") { args, _ in
                    .string(ChatTemplate.strftime(args.first?.rendered ?? "", Date()))
                }),
            "dict": .function(JinjaFunction(name: "dict") { _, kwargs in .object(JinjaObject(kwargs)) }),
        ]
        // transformers passes these always (None when not given): `tools is not none` must be false.
        for name in ["tools", "documents"] { globals[name] = JinjaValue.none }
        if let bosToken { globals["bos_token"] = .string(bosToken) }
        if let eosToken { globals["eos_token"] = .string(eosToken) }
        for (k, v) in variables { globals[k] = v }
        return try JinjaRenderer(globals: globals).render(nodes)
    }

    /// The strftime directives date templates use (%d %b %B %Y %m %H %M %S %A %a %y).
    static func strftime(_ format: String, _ date: Date) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        var out = "", chars = Array(format), k = 0
        while k < chars.count {
            guard chars[k] == "%", k + 1 < chars.count else {
                out.append(chars[k])
                k += 1
                continue
            }
            let pattern: String
            switch chars[k + 1] {
            case "d": pattern = "dd"
            case "b": pattern = "MMM"
            case "B": pattern = "MMMM"
            case "Y": pattern = "yyyy"
            case "y": pattern = "yy"
            case "m": pattern = "MM"
            case "H": pattern = "HH"
            case "M": pattern = "mm"
            case "S": pattern = "ss"
            case "A": pattern = "EEEE"
            case "a": pattern = "EEE"
            default:
                out.append(chars[k])
                out.append(chars[k + 1])
                k += 2
                continue
            }
            f.dateFormat = pattern
            out += f.string(from: date)
            k += 2
        }
        return out
    }
}
