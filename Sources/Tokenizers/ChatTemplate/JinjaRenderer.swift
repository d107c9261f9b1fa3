import Foundation

/// An error while rendering: the template raised it (raise_exception) or did something the
/// language does not allow; names the line.
public struct JinjaRenderError: Error, CustomStringConvertible {
    public let description: String
    init(_ message: String, line: Int? = nil) {
        description = line.map { "chat template line \($0): \(message)" } ?? "chat template: \(message)"
    }
}

/// Renders a parsed template as Jinja2 would: for-loops open a scope (so `set` inside one does not
/// leak out, which is why templates use namespace()), macros see the template's globals and
/// top-level variables, undefined names render as nothing and are falsy.
final class JinjaRenderer {
    var scopes: [[String: JinjaValue]]
    var line = 0
    var depth = 0
    enum Flow: Error { case breakLoop, continueLoop }

    init(globals: [String: JinjaValue]) { scopes = [globals] }

    func lookup(_ name: String) -> JinjaValue {
        for scope in scopes.reversed() { if let v = scope[name] { return v } }
        return .undefined(name)
    }
    func assign(_ name: String, _ value: JinjaValue) { scopes[scopes.count - 1][name] = value }

    func render(_ nodes: [JinjaNode]) throws -> String {
        var out = ""
        try render(nodes, into: &out)
        return out
    }

    func render(_ nodes: [JinjaNode], into out: inout String) throws {
        for node in nodes {
            switch node {
            case .text(let t): out += t
            case .output(let e, let l):
                line = l
                out += try evaluate(e).rendered
            case .ifBlock(let branches, let otherwise, let l):
                line = l
                var taken = false
                for (condition, body) in branches where try evaluate(condition).isTruthy {
                    try render(body, into: &out)
                    taken = true
                    break
                }
                if !taken { try render(otherwise, into: &out) }
            case .forLoop(let targets, let iterable, let condition, let body, let otherwise, let l):
                line = l
                try loop(
                    targets: targets, over: try evaluate(iterable), condition: condition, body: body,
                    otherwise: otherwise, into: &out)
            case .set(let targets, let attribute, let value, let l):
                line = l
                let v = try evaluate(value)
                if let attribute {
                    guard case .namespace(let ns) = lookup(targets[0]) else {
                        throw JinjaRenderError(
                            "cannot set '\(attribute)' on '\(targets[0])', which is not a namespace", line: l)
                    }
                    ns.values[attribute] = v
                } else if targets.count == 1 {
                    assign(targets[0], v)
                } else {
                    let items = try JinjaBuiltins.iterate(v, line: l)
                    guard items.count == targets.count else {
                        throw JinjaRenderError(
                            "cannot unpack \(items.count) values into \(targets.count) names", line: l)
                    }
                    for (t, item) in zip(targets, items) { assign(t, item) }
                }
            case .setBlock(let name, let body, _): assign(name, .string(try render(body)))
            case .macro(let m): assign(m.name, .macro(m))
            case .generation(let body): try render(body, into: &out)
            case .breakLoop: throw Flow.breakLoop
            case .continueLoop: throw Flow.continueLoop
            }
        }
    }

    func loop(
        targets: [String], over sequence: JinjaValue, condition: JinjaExpression?, body: [JinjaNode],
        otherwise: [JinjaNode], into out: inout String
    ) throws {
        var items = try JinjaBuiltins.iterate(sequence, line: line)
        func bind(_ item: JinjaValue) throws {
            if targets.count == 1 {
                assign(targets[0], item)
                return
            }
            let parts = try JinjaBuiltins.iterate(item, line: line)
            guard parts.count == targets.count else {
                throw JinjaRenderError("cannot unpack \(parts.count) values into \(targets.count) names", line: line)
            }
            for (t, p) in zip(targets, parts) { assign(t, p) }
        }
        if let condition {
            var kept: [JinjaValue] = []
            for item in items {
                scopes.append([:])
                defer { scopes.removeLast() }
                try bind(item)
                if try evaluate(condition).isTruthy { kept.append(item) }
            }
            items = kept
        }
        if items.isEmpty {
            try render(otherwise, into: &out)
            return
        }
        for (k, item) in items.enumerated() {
            scopes.append([:])
            defer { scopes.removeLast() }
            let n = items.count
            var info = JinjaObject([
                ("index", .int(k + 1)), ("index0", .int(k)), ("revindex", .int(n - k)), ("revindex0", .int(n - k - 1)),
                ("first", .bool(k == 0)), ("last", .bool(k == n - 1)), ("length", .int(n)),
                ("previtem", k > 0 ? items[k - 1] : .undefined("previtem")),
                ("nextitem", k + 1 < n ? items[k + 1] : .undefined("nextitem")),
            ])
            info["cycle"] = .function(
                JinjaFunction(name: "cycle") { args, _ in args.isEmpty ? .none : args[k % args.count] })
            assign("loop", .object(info))
            try bind(item)
            do { try render(body, into: &out) } catch Flow.continueLoop { continue } catch Flow.breakLoop { break }
        }
    }

    func call(_ callee: JinjaValue, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)]) throws -> JinjaValue {
        switch callee {
        case .function(let f): return try f.call(args, kwargs)
        case .macro(let m):
            var frame: [String: JinjaValue] = [:]
            var extra = args.dropFirst(m.parameters.count)
            for (k, p) in m.parameters.enumerated() {
                if k < args.count {
                    frame[p.name] = args[k]
                } else if let v = kwargs.first(where: { $0.0 == p.name }) {
                    frame[p.name] = v.1
                } else if let d = p.defaultValue {
                    frame[p.name] = try evaluate(d)
                } else {
                    frame[p.name] = .undefined(p.name)
                }
            }
            extra = extra.isEmpty ? [] : extra
            frame["varargs"] = .array(Array(extra))
            // A macro sees the template's globals and top-level names, not its caller's locals.
            guard depth < 200 else {
                throw JinjaRenderError("macro '\(m.name)' recurses more than 200 calls deep", line: line)
            }
            depth += 1
            defer { depth -= 1 }
            let saved = scopes
            scopes = [scopes[0], frame]
            defer { scopes = saved }
            return .string(try render(m.body))
        case .undefined(let name): throw JinjaRenderError("'\(name)' is undefined", line: line)
        default: throw JinjaRenderError("a \(callee.typeName) is not callable", line: line)
        }
    }

    func evaluate(_ e: JinjaExpression) throws -> JinjaValue {
        switch e {
        case .literal(let v): return v
        case .name(let n): return lookup(n)
        case .list(let items): return .array(try items.map(evaluate))
        case .dict(let pairs):
            var o = JinjaObject()
            for (k, v) in pairs { o[try evaluate(k).rendered] = try evaluate(v) }
            return .object(o)
        case .attribute(let base, let name): return try JinjaBuiltins.attribute(try evaluate(base), name, line: line)
        case .item(let base, let key): return try JinjaBuiltins.item(try evaluate(base), try evaluate(key), line: line)
        case .slice(let base, let a, let b, let c):
            return try JinjaBuiltins.slice(
                try evaluate(base), try a.map(evaluate), try b.map(evaluate), try c.map(evaluate), line: line)
        case .call(let callee, let args, let kwargs):
            return try call(try evaluate(callee), try args.map(evaluate), try kwargs.map { ($0.0, try evaluate($0.1)) })
        case .filter(let base, let name, let args, let kwargs):
            return try JinjaBuiltins.filter(
                name, try evaluate(base), try args.map(evaluate), try kwargs.map { ($0.0, try evaluate($0.1)) },
                renderer: self)
        case .test(let base, let name, let args, let negated):
            let result = try JinjaBuiltins.test(name, try evaluate(base), try args.map(evaluate), line: line)
            return .bool(result != negated)
        case .unary(let op, let operand):
            let v = try evaluate(operand)
            switch op {
            case "not": return .bool(!v.isTruthy)
            default:
                switch v {
                case .int(let n): return n == Int.min ? .double(-Double(n)) : .int(-n)
                case .double(let d): return .double(-d)
                default: throw JinjaRenderError("cannot negate a \(v.typeName)", line: line)
                }
            }
        case .binary(let op, let l, let r):
            if op == "and" {
                let a = try evaluate(l)
                return a.isTruthy ? try evaluate(r) : a
            }
            if op == "or" {
                let a = try evaluate(l)
                return a.isTruthy ? a : try evaluate(r)
            }
            return try JinjaBuiltins.binary(op, try evaluate(l), try evaluate(r), line: line)
        case .conditional(let condition, let value, let otherwise):
            if try evaluate(condition).isTruthy { return try evaluate(value) }
            return try otherwise.map(evaluate) ?? .undefined("")
        }
    }
}
