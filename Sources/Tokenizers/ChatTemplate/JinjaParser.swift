import Foundation

/// The expression tree of the template language (Jinja2's grammar, the part templates use).
public indirect enum JinjaExpression: @unchecked Sendable {
    case literal(JinjaValue)
    case name(String)
    case list([JinjaExpression])
    case dict([(JinjaExpression, JinjaExpression)])
    case attribute(JinjaExpression, String)
    case item(JinjaExpression, JinjaExpression)
    case slice(JinjaExpression, JinjaExpression?, JinjaExpression?, JinjaExpression?)
    case call(JinjaExpression, [JinjaExpression], [(String, JinjaExpression)])
    case filter(JinjaExpression, String, [JinjaExpression], [(String, JinjaExpression)])
    case test(JinjaExpression, String, [JinjaExpression], negated: Bool)
    case unary(String, JinjaExpression)
    case binary(String, JinjaExpression, JinjaExpression)
    case conditional(JinjaExpression, JinjaExpression, JinjaExpression?)
}

/// The statements of a template; `line` numbers are the template's, for errors.
public indirect enum JinjaNode: @unchecked Sendable {
    case text(String)
    case output(JinjaExpression, line: Int)
    case ifBlock([(JinjaExpression, [JinjaNode])], otherwise: [JinjaNode], line: Int)
    case forLoop(
        targets: [String], iterable: JinjaExpression, condition: JinjaExpression?, body: [JinjaNode],
        otherwise: [JinjaNode], line: Int)
    case set(targets: [String], attribute: String?, value: JinjaExpression, line: Int)
    case setBlock(String, [JinjaNode], line: Int)
    case macro(JinjaMacro)
    /// `{% generation %}`: marks assistant output for masks; renders its body.
    case generation([JinjaNode])
    case breakLoop(line: Int), continueLoop(line: Int)
}

/// Tokens of one expression or statement.
enum JinjaToken: Equatable {
    case name(String), string(String), int(Int), double(Double), op(String), end
}

struct JinjaTokenizer {
    static let operators = [
        "==", "!=", "<=", ">=", "//", "**", "+", "-", "*", "/", "%", "~", "<", ">", "=", "(", ")", "[", "]", "{", "}",
        ",", ".", ":", "|",
    ]

    static func tokens(_ source: String, line: Int) throws -> [JinjaToken] {
        let s = Array(source.unicodeScalars)
        var out: [JinjaToken] = [], i = 0
        while i < s.count {
            let c = s[i]
            if c == " " || c == "\t" || c == "\n" || c == "\r" {
                i += 1
            } else if c == "'" || c == "\"" {
                out.append(.string(try string(s, at: &i, line: line)))
            } else if c.properties.numericType != nil && c.isASCII {
                out.append(try number(s, at: &i, line: line))
            } else if c == "_" || c.properties.isAlphabetic {
                var j = i
                while j < s.count,
                    s[j] == "_" || s[j].properties.isAlphabetic || (s[j].isASCII && s[j].properties.numericType != nil)
                { j += 1 }
                out.append(.name(String(String.UnicodeScalarView(s[i..<j]))))
                i = j
            } else {
                guard
                    let op = operators.first(where: { op in
                        let o = Array(op.unicodeScalars)
                        return i + o.count <= s.count && Array(s[i..<(i + o.count)]) == o
                    })
                else { throw JinjaSyntaxError("unexpected character '\(c)'", line: line) }
                out.append(.op(op))
                i += op.unicodeScalars.count
            }
        }
        out.append(.end)
        return out
    }

    /// The quoted string starting at `i` (its escapes resolved); `i` moves past its closing quote.
    static func string(_ s: [Unicode.Scalar], at i: inout Int, line: Int) throws -> String {
        let quote = s[i]
        var value = String.UnicodeScalarView()
        i += 1
        while i < s.count && s[i] != quote {
            guard s[i] == "\\", i + 1 < s.count else {
                value.append(s[i])
                i += 1
                continue
            }
            let e = s[i + 1]
            i += 2
            switch e {
            case "n": value.append("\n")
            case "t": value.append("\t")
            case "r": value.append("\r")
            case "\\": value.append("\\")
            case "'": value.append("'")
            case "\"": value.append("\"")
            case "u" where i + 4 <= s.count:
                if let code = UInt32(String(String.UnicodeScalarView(s[i..<(i + 4)])), radix: 16),
                    let u = Unicode.Scalar(code)
                {
                    value.append(u)
                    i += 4
                }
            default:
                value.append("\\")
                value.append(e)
            }
        }
        guard i < s.count else { throw JinjaSyntaxError("unterminated string", line: line) }
        i += 1
        return String(value)
    }

    /// The integer or float literal starting at `i` (underscores allowed); `i` moves past it.
    static func number(_ s: [Unicode.Scalar], at i: inout Int, line: Int) throws -> JinjaToken {
        var j = i, isDouble = false
        while j < s.count, s[j].isASCII,
            s[j].properties.numericType != nil
                || (s[j] == "." && !isDouble && j + 1 < s.count && s[j + 1].properties.numericType != nil)
                || s[j] == "_"
        {
            if s[j] == "." { isDouble = true }
            j += 1
        }
        let text = String(String.UnicodeScalarView(s[i..<j])).replacingOccurrences(of: "_", with: "")
        i = j
        if !isDouble, let n = Int(text) { return .int(n) }
        if let d = Double(text) { return .double(d) }
        throw JinjaSyntaxError("number '\(text)' is out of range", line: line)
    }
}

/// Expressions by Jinja2's precedence: conditional < or < and < not < comparisons < + - < ~ <
/// * / // % < ** < unary minus < postfix (. [] ()) and then filters (|) and tests (is).
struct JinjaExpressionParser {
    var tokens: [JinjaToken]
    var i = 0
    let line: Int

    init(_ source: String, line: Int) throws {
        tokens = try JinjaTokenizer.tokens(source, line: line)
        self.line = line
    }

    var peek: JinjaToken { tokens[i] }
    mutating func next() -> JinjaToken {
        defer { i += 1 }
        return tokens[i]
    }
    func fail(_ m: String) -> JinjaSyntaxError { JinjaSyntaxError(m, line: line) }
    mutating func accept(_ op: String) -> Bool {
        if peek == .op(op) {
            i += 1
            return true
        }
        return false
    }
    mutating func acceptName(_ n: String) -> Bool {
        if peek == .name(n) {
            i += 1
            return true
        }
        return false
    }
    mutating func expect(_ op: String) throws {
        guard accept(op) else { throw fail("expected '\(op)', found \(describe(peek))") }
    }
    mutating func name() throws -> String {
        guard case .name(let n) = next() else { throw fail("expected a name, found \(describe(tokens[i - 1]))") }
        return n
    }
    var atEnd: Bool { peek == .end }
    func describe(_ t: JinjaToken) -> String {
        switch t {
        case .name(let n): return "'\(n)'"
        case .string(let s): return "string '\(s)'"
        case .int(let n): return "\(n)"
        case .double(let d): return "\(d)"
        case .op(let o): return "'\(o)'"
        case .end: return "the end of the tag"
        }
    }

    mutating func expression(allowConditional: Bool = true) throws -> JinjaExpression {
        let value = try or()
        guard allowConditional, acceptName("if") else { return value }
        let condition = try or()
        let otherwise = acceptName("else") ? try expression() : nil
        return .conditional(condition, value, otherwise)
    }
    mutating func or() throws -> JinjaExpression {
        var left = try and()
        while acceptName("or") { left = .binary("or", left, try and()) }
        return left
    }
    mutating func and() throws -> JinjaExpression {
        var left = try not()
        while acceptName("and") { left = .binary("and", left, try not()) }
        return left
    }
    mutating func not() throws -> JinjaExpression {
        if acceptName("not") { return .unary("not", try not()) }
        return try compare()
    }
    mutating func compare() throws -> JinjaExpression {
        var left = try additive()
        while true {
            if case .op(let o) = peek, ["==", "!=", "<", ">", "<=", ">="].contains(o) {
                i += 1
                left = .binary(o, left, try additive())
                continue
            }
            if acceptName("in") {
                left = .binary("in", left, try additive())
                continue
            }
            if peek == .name("not"), tokens[i + 1] == .name("in") {
                i += 2
                left = .binary("not in", left, try additive())
                continue
            }
            return left
        }
    }
    mutating func additive() throws -> JinjaExpression {
        var left = try concat()
        while case .op(let o) = peek, o == "+" || o == "-" {
            i += 1
            left = .binary(o, left, try concat())
        }
        return left
    }
    mutating func concat() throws -> JinjaExpression {
        var left = try multiplicative()
        while accept("~") { left = .binary("~", left, try multiplicative()) }
        return left
    }
    mutating func multiplicative() throws -> JinjaExpression {
        var left = try power()
        while case .op(let o) = peek, ["*", "/", "//", "%"].contains(o) {
            i += 1
            left = .binary(o, left, try power())
        }
        return left
    }
    mutating func power() throws -> JinjaExpression {
        var left = try unary()
        while accept("**") { left = .binary("**", left, try unary()) }
        return left
    }
    /// Jinja2's parse_unary: the operand of a sign takes no filters (`-x|abs` is `(-x)|abs`).
    mutating func unary(withFilter: Bool = true) throws -> JinjaExpression {
        let node: JinjaExpression
        if accept("-") {
            node = .unary("-", try unary(withFilter: false))
        } else if accept("+") {
            node = try unary(withFilter: false)
        } else {
            node = try postfix(try primary())
        }
        return withFilter ? try filtered(node) : node
    }
    mutating func primary() throws -> JinjaExpression {
        switch next() {
        case .string(var s):
            while case .string(let more) = peek {
                s += more
                i += 1
            }  // adjacent literals concatenate
            return .literal(.string(s))
        case .int(let n): return .literal(.int(n))
        case .double(let d): return .literal(.double(d))
        case .name(let n):
            switch n {
            case "true", "True": return .literal(.bool(true))
            case "false", "False": return .literal(.bool(false))
            case "none", "None": return .literal(.none)
            default: return .name(n)
            }
        case .op("("):
            let first = try expression()
            if accept(",") {
                var items = [first]
                while !accept(")") {
                    items.append(try expression())
                    if !accept(",") {
                        try expect(")")
                        break
                    }
                }
                return .list(items)
            }
            try expect(")")
            return first
        case .op("["):
            var items: [JinjaExpression] = []
            while !accept("]") {
                items.append(try expression())
                if !accept(",") {
                    try expect("]")
                    break
                }
            }
            return .list(items)
        case .op("{"):
            var pairs: [(JinjaExpression, JinjaExpression)] = []
            while !accept("}") {
                let key = try expression()
                try expect(":")
                pairs.append((key, try expression()))
                if !accept(",") {
                    try expect("}")
                    break
                }
            }
            return .dict(pairs)
        case let t: throw fail("unexpected \(describe(t))")
        }
    }
    mutating func arguments() throws -> ([JinjaExpression], [(String, JinjaExpression)]) {
        var positional: [JinjaExpression] = [], keywords: [(String, JinjaExpression)] = []
        while !accept(")") {
            if case .name(let n) = peek, tokens[i + 1] == .op("=") {
                i += 2
                keywords.append((n, try expression()))
            } else {
                positional.append(try expression())
            }
            if !accept(",") {
                try expect(")")
                break
            }
        }
        return (positional, keywords)
    }
    mutating func postfix(_ base: JinjaExpression) throws -> JinjaExpression {
        var e = base
        while true {
            if accept(".") {
                e = .attribute(e, try name())
                continue
            }
            if accept("(") {
                let (p, k) = try arguments()
                e = .call(e, p, k)
                continue
            }
            if accept("[") {
                var start: JinjaExpression?
                if peek != .op(":") { start = try expression() }
                if accept(":") {
                    let stop = (peek == .op(":") || peek == .op("]")) ? nil : try expression()
                    var step: JinjaExpression?
                    if accept(":") { step = peek == .op("]") ? nil : try expression() }
                    try expect("]")
                    e = .slice(e, start, stop, step)
                } else {
                    try expect("]")
                    guard let start else { throw fail("empty subscript") }
                    e = .item(e, start)
                }
                continue
            }
            return e
        }
    }
    mutating func filtered(_ base: JinjaExpression) throws -> JinjaExpression {
        var e = base
        while true {
            if accept("|") {
                var name = try self.name()
                while accept(".") { name += "." + (try self.name()) }
                var args: ([JinjaExpression], [(String, JinjaExpression)]) = ([], [])
                if accept("(") { args = try arguments() }
                e = .filter(e, name, args.0, args.1)
                e = try postfix(e)
                continue
            }
            if acceptName("is") {
                let negated = acceptName("not")
                let name = try self.name()
                var args: [JinjaExpression] = []
                if accept("(") {
                    args = try arguments().0
                } else if case .name(let n) = peek, !["and", "or", "else", "if", "not", "in", "is"].contains(n) {
                    args = [try postfix(try primary())]
                } else if case .op(let o) = peek, o == "[" || o == "{" {
                    args = [try postfix(try primary())]
                } else if case .string = peek {
                    args = [try postfix(try primary())]
                } else if case .int = peek {
                    args = [try primary()]
                } else if case .double = peek {
                    args = [try primary()]
                }
                e = .test(e, name, args, negated: negated)
                continue
            }
            return e
        }
    }
}
