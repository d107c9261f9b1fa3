import Foundation

/// JSON in and out as Python's json module does it for chat templates: objects keep their key
/// order on the way in (messages, tool schemas), and `tojson` writes what `json.dumps` writes.
enum JinjaJSON {
    struct ParseError: Error, CustomStringConvertible { let description: String }

    /// Parses JSON text keeping object key order.
    static func parse(_ text: String) throws -> JinjaValue {
        var p = Parser(scalars: Array(text.unicodeScalars))
        p.skipSpace()
        let v = try p.value()
        p.skipSpace()
        guard p.i == p.scalars.count else {
            throw ParseError(description: "unexpected text after the JSON value at \(p.i)")
        }
        return v
    }

    struct Parser {
        let scalars: [Unicode.Scalar]
        var i = 0
        mutating func skipSpace() { while i < scalars.count, [" ", "\n", "\r", "\t"].contains(scalars[i]) { i += 1 } }
        func fail(_ m: String) -> ParseError { ParseError(description: "\(m) at character \(i)") }

        mutating func value() throws -> JinjaValue {
            guard i < scalars.count else { throw fail("unexpected end") }
            switch scalars[i] {
            case "{": return try object()
            case "[": return try array()
            case "\"": return .string(try string())
            case "t":
                try literal("true")
                return .bool(true)
            case "f":
                try literal("false")
                return .bool(false)
            case "n":
                try literal("null")
                return .none
            default: return try number()
            }
        }

        /// {"key": value, …}
        mutating func object() throws -> JinjaValue {
            i += 1
            var object = JinjaObject()
            skipSpace()
            if i < scalars.count, scalars[i] == "}" {
                i += 1
                return .object(object)
            }
            while true {
                skipSpace()
                guard i < scalars.count, scalars[i] == "\"" else { throw fail("expected a key") }
                let key = try string()
                skipSpace()
                guard i < scalars.count, scalars[i] == ":" else { throw fail("expected ':'") }
                i += 1
                skipSpace()
                object[key] = try value()
                skipSpace()
                guard i < scalars.count else { throw fail("unexpected end") }
                if scalars[i] == "," {
                    i += 1
                    continue
                }
                if scalars[i] == "}" {
                    i += 1
                    return .object(object)
                }
                throw fail("expected ',' or '}'")
            }
        }

        /// [value, …]
        mutating func array() throws -> JinjaValue {
            i += 1
            var items: [JinjaValue] = []
            skipSpace()
            if i < scalars.count, scalars[i] == "]" {
                i += 1
                return .array(items)
            }
            while true {
                skipSpace()
                items.append(try value())
                skipSpace()
                guard i < scalars.count else { throw fail("unexpected end") }
                if scalars[i] == "," {
                    i += 1
                    continue
                }
                if scalars[i] == "]" {
                    i += 1
                    return .array(items)
                }
                throw fail("expected ',' or ']'")
            }
        }

        mutating func literal(_ word: String) throws {
            let w = Array(word.unicodeScalars)
            guard i + w.count <= scalars.count, Array(scalars[i..<(i + w.count)]) == w else {
                throw fail("expected \(word)")
            }
            i += w.count
        }

        mutating func number() throws -> JinjaValue {
            let start = i
            while i < scalars.count, "+-0123456789.eE".unicodeScalars.contains(scalars[i]) { i += 1 }
            let text = String(String.UnicodeScalarView(scalars[start..<i]))
            if let n = Int(text) { return .int(n) }
            if let d = Double(text) { return .double(d) }
            throw fail("bad number '\(text)'")
        }

        mutating func string() throws -> String {
            i += 1
            var out = String.UnicodeScalarView()
            var pendingHigh: UInt32?
            while i < scalars.count {
                let c = scalars[i]
                i += 1
                if c == "\"" { return String(out) }
                guard c == "\\" else {
                    out.append(c)
                    continue
                }
                guard i < scalars.count else { break }
                let e = scalars[i]
                i += 1
                switch e {
                case "n": out.append("\n")
                case "t": out.append("\t")
                case "r": out.append("\r")
                case "b": out.append("\u{8}")
                case "f": out.append("\u{c}")
                case "u":
                    guard i + 4 <= scalars.count,
                        let code = UInt32(String(String.UnicodeScalarView(scalars[i..<(i + 4)])), radix: 16)
                    else { throw fail("bad \\u escape") }
                    i += 4
                    if (0xD800..<0xDC00).contains(code) {
                        pendingHigh = code
                        continue
                    }
                    if (0xDC00..<0xE000).contains(code), let high = pendingHigh {
                        out.append(Unicode.Scalar(0x10000 + ((high - 0xD800) << 10) + (code - 0xDC00))!)
                        pendingHigh = nil
                        continue
                    }
                    out.append(Unicode.Scalar(code) ?? "\u{FFFD}")
                default: out.append(e)
                }
            }
            throw fail("unterminated string")
        }
    }

    /// `json.dumps(value, ensure_ascii=False, indent=indent, separators=…, sort_keys=…)`.
    static func dumps(_ value: JinjaValue, indent: Int?, separators: (String, String)? = nil, sortKeys: Bool = false)
        throws -> String
    {
        let (item, key) = separators ?? (indent == nil ? (", ", ": ") : (",", ": "))
        func write(_ v: JinjaValue, level: Int) throws -> String {
            func wrap(_ open: String, _ close: String, _ parts: [String]) -> String {
                guard !parts.isEmpty else { return open + close }
                guard let indent else { return open + parts.joined(separator: item) + close }
                let pad = "\n" + String(repeating: " ", count: indent * (level + 1))
                return open + pad + parts.joined(separator: item + pad) + "\n"
                    + String(repeating: " ", count: indent * level) + close
            }
            switch v {
            case .none, .undefined: return "null"
            case .bool(let b): return b ? "true" : "false"
            case .int(let n): return String(n)
            case .double(let d):
                return d.isFinite ? pythonFloat(d) : (d.isNaN ? "NaN" : (d > 0 ? "Infinity" : "-Infinity"))
            case .string(let s): return quote(s)
            case .array(let a): return wrap("[", "]", try a.map { try write($0, level: level + 1) })
            case .object(let o):
                let entries = sortKeys ? o.entries.sorted { $0.key < $1.key } : o.entries
                return wrap("{", "}", try entries.map { quote($0.key) + key + (try write($0.value, level: level + 1)) })
            case .namespace(let n): return try write(.object(n.values), level: level)
            case .macro, .function: throw ParseError(description: "tojson: a \(v.typeName) is not JSON serializable")
            }
        }
        return try write(value, level: 0)
    }

    static func quote(_ s: String) -> String {
        var out = "\""
        for c in s.unicodeScalars {
            switch c {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{8}": out += "\\b"
            case "\u{c}": out += "\\f"
            default:
                if c.value < 0x20 { out += String(format: "\\u%04x", c.value) } else { out.unicodeScalars.append(c) }
            }
        }
        return out + "\""
    }

    /// Python's repr of a float: the shortest digits that round-trip, fixed notation for decimal
    /// exponents in [-4, 16), scientific (1e-05, 1.5e+16) outside.
    static func pythonFloat(_ d: Double) -> String {
        if d == 0 { return d.sign == .minus ? "-0.0" : "0.0" }
        // Swift's description has the same shortest digits; re-lay them out by Python's rule.
        let text = "\(abs(d))"
        var digits = "", exponent = 0
        let parts = text.split(separator: "e")
        let mantissa = String(parts[0])
        let dot = mantissa.firstIndex(of: ".")
        let intPart = dot.map { String(mantissa[..<$0]) } ?? mantissa
        let fracPart = dot.map { String(mantissa[mantissa.index(after: $0)...]) } ?? ""
        digits = intPart + fracPart
        exponent = intPart.count - 1 + (parts.count > 1 ? Int(parts[1])! : 0)
        let leading = digits.prefix { $0 == "0" }.count
        digits.removeFirst(leading)
        exponent -= leading
        while digits.hasSuffix("0") && digits.count > 1 { digits.removeLast() }
        let sign = d < 0 ? "-" : ""
        if exponent < -4 || exponent >= 16 {
            let m = digits.count > 1 ? String(digits.first!) + "." + digits.dropFirst() : digits
            return sign + m + "e" + (exponent < 0 ? "-" : "+") + String(format: "%02d", abs(exponent))
        }
        if exponent < 0 { return sign + "0." + String(repeating: "0", count: -exponent - 1) + digits }
        if digits.count <= exponent + 1 {
            return sign + digits + String(repeating: "0", count: exponent + 1 - digits.count) + ".0"
        }
        let cut = digits.index(digits.startIndex, offsetBy: exponent + 1)
        return sign + digits[..<cut] + "." + digits[cut...]
    }
}
