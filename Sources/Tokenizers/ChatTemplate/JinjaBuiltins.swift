import Foundation

/// Filters, tests, operators and methods of the template language, with Python's semantics
/// where templates depend on them (str.split, str.strip, dict.get, `in`, `+`, slicing).
enum JinjaBuiltins {
    static func iterate(_ v: JinjaValue, line: Int) throws -> [JinjaValue] {
        switch v {
        case .array(let a): return a
        case .object(let o): return o.keys.map { .string($0) }
        case .string(let s): return s.unicodeScalars.map { .string(String($0)) }  // Python iterates code points
        case .undefined, .none: return []
        default: throw JinjaRenderError("a \(v.typeName) is not iterable", line: line)
        }
    }

    static func length(_ v: JinjaValue, line: Int) throws -> Int {
        switch v {
        case .string(let s): return s.unicodeScalars.count
        case .array(let a): return a.count
        case .object(let o): return o.entries.count
        case .undefined: return 0
        default: throw JinjaRenderError("a \(v.typeName) has no length", line: line)
        }
    }

    static func attribute(_ base: JinjaValue, _ name: String, line: Int) throws -> JinjaValue {
        switch base {
        case .object(let o):
            if let v = o[name] { return v }
            return method(base, name) ?? .undefined(name)
        case .namespace(let ns): return ns.values[name] ?? .undefined(name)
        case .undefined(let n): throw JinjaRenderError("'\(n)' is undefined (reading .\(name))", line: line)
        default: return method(base, name) ?? .undefined(name)
        }
    }

    static func item(_ base: JinjaValue, _ key: JinjaValue, line: Int) throws -> JinjaValue {
        switch (base, key) {
        case (.object(let o), _): return o[key.rendered] ?? .undefined(key.rendered)
        case (.namespace(let ns), _): return ns.values[key.rendered] ?? .undefined(key.rendered)
        case (.array(let a), .int(let i)):
            let k = i < 0 ? a.count + i : i
            return a.indices.contains(k) ? a[k] : .undefined("[\(i)]")
        case (.string(let s), .int(let i)):
            let chars = Array(s.unicodeScalars), k = i < 0 ? chars.count + i : i
            return chars.indices.contains(k) ? .string(String(chars[k])) : .undefined("[\(i)]")
        case (.undefined(let n), _):
            throw JinjaRenderError("'\(n)' is undefined (reading [\(key.rendered)])", line: line)
        default: return .undefined("[\(key.rendered)]")
        }
    }

    static func slice(_ base: JinjaValue, _ a: JinjaValue?, _ b: JinjaValue?, _ c: JinjaValue?, line: Int) throws
        -> JinjaValue
    {
        func int(_ v: JinjaValue?) -> Int? {
            if case .int(let n)? = v { return n }
            return nil
        }
        if int(c) == 0 { throw JinjaRenderError("slice step cannot be zero", line: line) }
        func indices(_ count: Int) -> [Int] {
            let step = int(c) ?? 1
            func clamp(_ v: Int?, _ fallback: Int) -> Int {
                guard var v else { return fallback }
                if v < 0 { v += count }
                return step > 0 ? min(max(v, 0), count) : min(max(v, -1), count - 1)
            }
            let start = clamp(int(a), step > 0 ? 0 : count - 1), stop = clamp(int(b), step > 0 ? count : -1)
            return Array(stride(from: start, to: stop, by: step))
        }
        switch base {
        case .array(let items): return .array(indices(items.count).map { items[$0] })
        case .string(let s):
            let chars = Array(s.unicodeScalars)
            return .string(String(String.UnicodeScalarView(indices(chars.count).map { chars[$0] })))
        case .undefined(let n): throw JinjaRenderError("'\(n)' is undefined (slicing)", line: line)
        default: throw JinjaRenderError("a \(base.typeName) cannot be sliced", line: line)
        }
    }

    /// Python's str.split(sep=None) / str.split(sep, maxsplit).
    static func split(_ s: String, _ sep: String?, _ maxSplit: Int) -> [String] {
        guard let sep else {
            var parts: [String] = [], current = "", splits = 0
            var chars = Substring(s)
            while let c = chars.first {
                if c.isWhitespace && (maxSplit < 0 || splits < maxSplit) {
                    if !current.isEmpty {
                        parts.append(current)
                        current = ""
                        splits += 1
                    }
                    chars = chars.dropFirst()
                    if maxSplit >= 0 && splits == maxSplit {
                        let rest = chars.drop { $0.isWhitespace }
                        if !rest.isEmpty { parts.append(String(rest)) }
                        return parts
                    }
                } else {
                    current.append(c)
                    chars = chars.dropFirst()
                }
            }
            if !current.isEmpty { parts.append(current) }
            return parts
        }
        var parts: [String] = [], rest = Substring(s)
        while maxSplit < 0 || parts.count < maxSplit, let r = rest.range(of: sep) {
            parts.append(String(rest[..<r.lowerBound]))
            rest = rest[r.upperBound...]
        }
        parts.append(String(rest))
        return parts
    }

    static func strip(_ s: String, _ chars: String?, leading: Bool, trailing: Bool) -> String {
        let set: (Character) -> Bool = chars.map { cs in { cs.contains($0) } } ?? { $0.isWhitespace }
        var sub = Substring(s)
        if leading { sub = sub.drop(while: set) }
        if trailing { while let last = sub.last, set(last) { sub = sub.dropLast() } }
        return String(sub)
    }

    /// Bound methods of strings and dicts.
    static func method(_ base: JinjaValue, _ name: String) -> JinjaValue? {
        switch base {
        case .string(let s): return stringMethod(s, name) ?? stringSearchMethod(s, name)
        case .object(let o):
            switch name {
            case "get": return function(name) { a, _ in o[a.first?.rendered ?? ""] ?? (a.count > 1 ? a[1] : .none) }
            case "items":
                return function(name) { _, _ in .array(o.entries.map { .array([.string($0.key), $0.value]) }) }
            case "keys": return function(name) { _, _ in .array(o.keys.map { .string($0) }) }
            case "values": return function(name) { _, _ in .array(o.entries.map(\.value)) }
            default: return nil
            }
        default: return nil
        }
    }

    /// A callable value named `name`.
    static func function(_ name: String, _ body: @escaping ([JinjaValue], [(String, JinjaValue)]) throws -> JinjaValue)
        -> JinjaValue
    {
        .function(JinjaFunction(name: name, call: body))
    }

    /// Argument `k` when it is a string.
    static func stringArgument(_ args: [JinjaValue], _ k: Int) -> String? {
        if args.count > k, case .string(let s) = args[k] { return s }
        return nil
    }

    /// String methods that test, trim, split, change case or replace.
    static func stringMethod(_ s: String, _ name: String) -> JinjaValue? {
        func fn(_ body: @escaping ([JinjaValue], [(String, JinjaValue)]) throws -> JinjaValue) -> JinjaValue {
            function(name, body)
        }
        func str(_ args: [JinjaValue], _ k: Int) -> String? { stringArgument(args, k) }
        switch name {
        case "startswith":
            return fn { a, _ in
                if case .array(let options)? = a.first {
                    return .bool(options.contains { s.hasPrefix($0.rendered) })
                }
                return .bool(s.hasPrefix(str(a, 0) ?? ""))
            }
        case "endswith":
            return fn { a, _ in
                if case .array(let options)? = a.first {
                    return .bool(options.contains { s.hasSuffix($0.rendered) })
                }
                return .bool(s.hasSuffix(str(a, 0) ?? ""))
            }
        case "strip": return fn { a, _ in .string(strip(s, str(a, 0), leading: true, trailing: true)) }
        case "lstrip": return fn { a, _ in .string(strip(s, str(a, 0), leading: true, trailing: false)) }
        case "rstrip": return fn { a, _ in .string(strip(s, str(a, 0), leading: false, trailing: true)) }
        case "split":
            return fn { a, kw in
                var maxSplit = -1
                if a.count > 1, case .int(let n) = a[1] { maxSplit = n }
                if case .int(let n)? = kw.first(where: { $0.0 == "maxsplit" })?.1 { maxSplit = n }
                return .array(split(s, str(a, 0), maxSplit).map { .string($0) })
            }
        case "upper": return fn { _, _ in .string(s.uppercased()) }
        case "lower": return fn { _, _ in .string(s.lowercased()) }
        case "title": return fn { _, _ in .string(s.capitalized) }
        case "capitalize": return fn { _, _ in .string(s.prefix(1).uppercased() + s.dropFirst().lowercased()) }
        case "replace":
            return fn { a, _ in .string(s.replacingOccurrences(of: str(a, 0) ?? "", with: str(a, 1) ?? "")) }
        default: return nil
        }
    }

    /// String methods that search, count, split lines, join or format.
    static func stringSearchMethod(_ s: String, _ name: String) -> JinjaValue? {
        func fn(_ body: @escaping ([JinjaValue], [(String, JinjaValue)]) throws -> JinjaValue) -> JinjaValue {
            function(name, body)
        }
        func str(_ args: [JinjaValue], _ k: Int) -> String? { stringArgument(args, k) }
        switch name {
        case "find":
            return fn { a, _ in
                guard let r = s.range(of: str(a, 0) ?? "") else { return .int(-1) }
                return .int(s.distance(from: s.startIndex, to: r.lowerBound))
            }
        case "count": return fn { a, _ in .int(max(s.components(separatedBy: str(a, 0) ?? "").count - 1, 0)) }
        case "splitlines":
            return fn { _, _ in
                .array(
                    s.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).map {
                        .string(String($0))
                    }.dropLast(s.hasSuffix("\n") ? 1 : 0).map { $0 })
            }
        case "join":
            return fn { a, _ in
                .string(try iterate(a.first ?? .array([]), line: 0).map(\.rendered).joined(separator: s))
            }
        case "format":
            return fn { a, _ in
                var out = s
                for v in a { if let r = out.range(of: "{}") { out.replaceSubrange(r, with: v.rendered) } }
                return .string(out)
            }
        default: return nil
        }
    }

    static func equal(_ a: JinjaValue, _ b: JinjaValue) -> Bool {
        switch (a, b) {
        case (.none, .none): return true
        case (.bool(let x), .bool(let y)): return x == y
        case (.int(let x), .int(let y)): return x == y
        case (.double(let x), .double(let y)): return x == y
        case (.int(let x), .double(let y)), (.double(let y), .int(let x)): return Double(x) == y
        case (.bool(let x), .int(let y)), (.int(let y), .bool(let x)): return (x ? 1 : 0) == y
        case (.string(let x), .string(let y)): return x == y
        case (.array(let x), .array(let y)): return x.count == y.count && zip(x, y).allSatisfy { equal($0, $1) }
        case (.object(let x), .object(let y)):
            return x.keys.sorted() == y.keys.sorted()
                && x.entries.allSatisfy { e in y[e.key].map { equal(e.value, $0) } ?? false }
        default: return false
        }
    }

    static func number(_ v: JinjaValue) -> Double? {
        switch v {
        case .int(let n): return Double(n)
        case .double(let d): return d
        case .bool(let b): return b ? 1 : 0
        default: return nil
        }
    }

    static func binary(_ op: String, _ l: JinjaValue, _ r: JinjaValue, line: Int) throws -> JinjaValue {
        switch op {
        case "==": return .bool(equal(l, r))
        case "!=": return .bool(!equal(l, r))
        case "~": return .string(l.rendered + r.rendered)
        case "in", "not in": return .bool(try contains(r, l, line: line) == (op == "in"))
        case "<", ">", "<=", ">=": return .bool(try ordered(op, l, r, line: line))
        default:
            if let exact = try exactArithmetic(op, l, r, line: line) { return exact }
            return try floatArithmetic(op, l, r, line: line)
        }
    }

    /// `item in container`: a substring, a list element or a dict key.
    static func contains(_ container: JinjaValue, _ item: JinjaValue, line: Int) throws -> Bool {
        switch container {
        case .string(let s): return s.contains(item.rendered) && (item.isUndefined == false)
        case .array(let a): return a.contains { equal($0, item) }
        case .object(let o): return o[item.rendered] != nil
        case .undefined: return false
        default: throw JinjaRenderError("'in' needs a string, list or dict, not a \(container.typeName)", line: line)
        }
    }

    /// <, >, <= or >= on two strings or two numbers.
    static func ordered(_ op: String, _ l: JinjaValue, _ r: JinjaValue, line: Int) throws -> Bool {
        if case .string(let a) = l, case .string(let b) = r {
            return op == "<" ? a < b : op == ">" ? a > b : op == "<=" ? a <= b : a >= b
        }
        guard let a = number(l), let b = number(r) else {
            throw JinjaRenderError("cannot compare a \(l.typeName) with a \(r.typeName)", line: line)
        }
        return op == "<" ? a < b : op == ">" ? a > b : op == "<=" ? a <= b : a >= b
    }

    /// What Python computes exactly: string and list concatenation, string repetition, integer
    /// arithmetic that does not overflow; nil leaves it to float arithmetic.
    static func exactArithmetic(_ op: String, _ l: JinjaValue, _ r: JinjaValue, line: Int) throws -> JinjaValue? {
        switch (op, l, r) {
        case ("+", .string(let a), .string(let b)): return .string(a + b)
        case ("+", .array(let a), .array(let b)): return .array(a + b)
        case ("+", .int(let a), .int(let b)):
            let (v, o) = a.addingReportingOverflow(b)
            return o ? .double(Double(a) + Double(b)) : .int(v)
        case ("+", _, _):
            if number(l) == nil || number(r) == nil {
                throw JinjaRenderError("cannot add a \(l.typeName) and a \(r.typeName)", line: line)
            }
            return nil
        case ("*", .string(let s), .int(let n)), ("*", .int(let n), .string(let s)):
            guard n <= 1_000_000 else { throw JinjaRenderError("string repetition by \(n) is too large", line: line) }
            return .string(String(repeating: s, count: max(n, 0)))
        case ("*", .int(let a), .int(let b)):
            let (v, o) = a.multipliedReportingOverflow(by: b)
            return o ? .double(Double(a) * Double(b)) : .int(v)
        case ("-", .int(let a), .int(let b)):
            let (v, o) = a.subtractingReportingOverflow(b)
            return o ? nil : .int(v)
        case ("//", .int(let a), .int(let b)) where b != 0:
            return .int(Int((Double(a) / Double(b)).rounded(.down)))
        case ("%", .int(let a), .int(let b)) where b != 0 && b != -1:
            return .int(((a % b) + b) % b)
        case ("%", .string(let format), _):
            return .string(format.replacingOccurrences(of: "%s", with: r.rendered))
        case ("**", .int(let a), .int(let b)) where b >= 0:
            let p = pow(Double(a), Double(b))
            guard let v = Int(exactly: p.rounded()), abs(p) < 9e15 else { return nil }
            return .int(v)
        default: return nil
        }
    }

    /// -, *, /, //, % and ** on two numbers as floats.
    static func floatArithmetic(_ op: String, _ l: JinjaValue, _ r: JinjaValue, line: Int) throws -> JinjaValue {
        guard let a = number(l), let b = number(r) else {
            throw JinjaRenderError("operator '\(op)' does not apply to a \(l.typeName) and a \(r.typeName)", line: line)
        }
        switch op {
        case "+": return .double(a + b)
        case "-": return .double(a - b)
        case "*": return .double(a * b)
        case "/":
            guard b != 0 else { throw JinjaRenderError("division by zero", line: line) }
            return .double(a / b)
        case "//":
            guard b != 0 else { throw JinjaRenderError("division by zero", line: line) }
            return .double((a / b).rounded(.down))
        case "%": return .double(a.truncatingRemainder(dividingBy: b))
        case "**": return .double(pow(a, b))
        default: throw JinjaRenderError("unknown operator '\(op)'", line: line)
        }
    }

    static func test(_ name: String, _ v: JinjaValue, _ args: [JinjaValue], line: Int) throws -> Bool {
        if let kind = typeTest(name, v) { return kind }
        switch name {
        case "defined": return !v.isUndefined
        case "undefined": return v.isUndefined
        case "equalto", "eq", "==", "sameas": return equal(v, args.first ?? .none)
        case "ne", "!=": return !equal(v, args.first ?? .none)
        case "in": return try binary("in", v, args.first ?? .array([]), line: line).isTruthy
        case "true", "false":
            if case .bool(let b) = v { return b == (name == "true") }
            return false
        case "odd", "even":
            if case .int(let n) = v { return (n % 2 != 0) == (name == "odd") }
            return false
        case "lower", "upper":
            if case .string(let s) = v { return s == (name == "lower" ? s.lowercased() : s.uppercased()) }
            return false
        default: throw JinjaRenderError("test '\(name)' is not supported", line: line)
        }
    }

    /// The tests of a value's kind (none, string, mapping, sequence, number, …); nil for other tests.
    static func typeTest(_ name: String, _ v: JinjaValue) -> Bool? {
        switch (name, v) {
        case ("none", .none), ("string", .string), ("mapping", .object), ("integer", .int), ("float", .double),
            ("boolean", .bool), ("sequence", .array), ("sequence", .string), ("sequence", .object),
            ("iterable", .array), ("iterable", .string), ("iterable", .object), ("number", .int), ("number", .double),
            ("callable", .macro), ("callable", .function):
            return true
        case ("none", _), ("string", _), ("mapping", _), ("integer", _), ("float", _), ("boolean", _), ("sequence", _),
            ("iterable", _), ("number", _), ("callable", _):
            return false
        default: return nil
        }
    }
}
