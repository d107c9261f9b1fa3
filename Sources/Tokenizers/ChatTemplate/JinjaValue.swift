import Foundation

/// A value of the chat-template language: what Python values look like to Jinja2 templates as
/// transformers renders them (dicts keep their insertion order, as Python's do).
public indirect enum JinjaValue: Sendable {
    case undefined(String)  // a name that is not set (renders as "", is falsy)
    case none
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([JinjaValue])
    case object(JinjaObject)
    case namespace(JinjaNamespace)
    case macro(JinjaMacro)
    case function(JinjaFunction)

    var isTruthy: Bool {
        switch self {
        case .undefined, .none: return false
        case .bool(let b): return b
        case .int(let i): return i != 0
        case .double(let d): return d != 0
        case .string(let s): return !s.isEmpty
        case .array(let a): return !a.isEmpty
        case .object(let o): return !o.entries.isEmpty
        case .namespace, .macro, .function: return true
        }
    }

    var isUndefined: Bool { if case .undefined = self { return true } else { return false } }

    /// Python's str(): what `{{ value }}` prints.
    var rendered: String {
        switch self {
        case .undefined: return ""
        case .string(let s): return s
        default: return pythonRepr(top: true)
        }
    }

    /// Python's repr (str for the top level of a string).
    func pythonRepr(top: Bool = false) -> String {
        switch self {
        case .undefined: return ""
        case .none: return "None"
        case .bool(let b): return b ? "True" : "False"
        case .int(let i): return String(i)
        case .double(let d): return JinjaJSON.pythonFloat(d)
        case .string(let s): return top ? s : Self.pythonQuote(s)
        case .array(let a): return "[" + a.map { $0.pythonRepr() }.joined(separator: ", ") + "]"
        case .object(let o):
            return "{"
                + o.entries.map { Self.pythonQuote($0.key) + ": " + $0.value.pythonRepr() }.joined(separator: ", ")
                + "}"
        case .namespace: return "<Namespace>"
        case .macro(let m): return "<Macro '\(m.name)'>"
        case .function: return "<function>"
        }
    }

    /// Python's repr of a str: single quotes unless the text has one and no double quote.
    static func pythonQuote(_ s: String) -> String {
        let useDouble = s.contains("'") && !s.contains("\"")
        let q: Character = useDouble ? "\"" : "'"
        var out = String(q)
        for ch in s.unicodeScalars {
            switch ch {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if Character(ch) == q {
                    out += "\\" + String(q)
                } else if ch.value < 0x20 || ch.value == 0x7f {
                    out += String(format: "\\x%02x", ch.value)
                } else {
                    out.unicodeScalars.append(ch)
                }
            }
        }
        return out + String(q)
    }

    var typeName: String {
        switch self {
        case .undefined: return "undefined"
        case .none: return "none"
        case .bool: return "bool"
        case .int: return "int"
        case .double: return "float"
        case .string: return "string"
        case .array: return "list"
        case .object: return "dict"
        case .namespace: return "namespace"
        case .macro, .function: return "function"
        }
    }
}

/// A dict with Python's insertion order.
public struct JinjaObject: Sendable {
    public private(set) var entries: [(key: String, value: JinjaValue)] = []
    /// By exact bytes: Python's dict keys are code-point sequences, Swift's String equality is canonical equivalence.
    private var index: [[UInt8]: Int] = [:]

    public init(_ pairs: [(String, JinjaValue)] = []) { for (k, v) in pairs { self[k] = v } }

    public subscript(key: String) -> JinjaValue? {
        get { index[Array(key.utf8)].map { entries[$0].value } }
        set {
            let k = Array(key.utf8)
            if let i = index[k] {
                if let newValue {
                    entries[i].value = newValue
                } else {
                    entries.remove(at: i)
                    index = Dictionary(uniqueKeysWithValues: entries.enumerated().map { (Array($1.key.utf8), $0) })
                }
            } else if let newValue {
                index[k] = entries.count
                entries.append((key, newValue))
            }
        }
    }
    public var keys: [String] { entries.map(\.key) }
}

/// `namespace(...)`: the one mutable object templates have (`{% set ns.x = … %}`).
public final class JinjaNamespace: @unchecked Sendable {
    var values: JinjaObject
    init(_ values: JinjaObject) { self.values = values }
}

/// A `{% macro %}` with its parameters (and default expressions) and body.
public final class JinjaMacro: @unchecked Sendable {
    let name: String
    let parameters: [(name: String, defaultValue: JinjaExpression?)]
    let body: [JinjaNode]
    init(name: String, parameters: [(name: String, defaultValue: JinjaExpression?)], body: [JinjaNode]) {
        self.name = name
        self.parameters = parameters
        self.body = body
    }
}

/// A built-in callable (raise_exception, range, namespace, strftime_now, a bound string method).
public struct JinjaFunction: @unchecked Sendable {
    let name: String
    let call: ([JinjaValue], [(String, JinjaValue)]) throws -> JinjaValue
}
