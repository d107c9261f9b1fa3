import Foundation

/// A filter's arguments, positional or by keyword, and the line for errors.
struct FilterCall {
    let args: [JinjaValue], kwargs: [(String, JinjaValue)], line: Int
    func arg(_ k: Int, _ key: String) -> JinjaValue? {
        kwargs.first { $0.0 == key }?.1 ?? (args.count > k ? args[k] : nil)
    }
    func items(_ x: JinjaValue) throws -> [JinjaValue] { try JinjaBuiltins.iterate(x, line: line) }
    /// The value at the dotted `path` of attributes in `item`.
    func attr(_ item: JinjaValue, _ path: String) throws -> JinjaValue {
        var cur = item
        for part in path.split(separator: ".") {
            if case .undefined = cur { return cur }
            cur = try JinjaBuiltins.attribute(cur, String(part), line: line)
        }
        return cur
    }
}

extension JinjaBuiltins {
    /// Jinja2's filters (with transformers' tojson), by what they work on.
    static func filter(
        _ name: String, _ v: JinjaValue, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)], renderer: JinjaRenderer
    ) throws -> JinjaValue {
        if let r = try textFilter(name, v, args, kwargs, renderer: renderer) ?? valueFilter(
            name, v, args, kwargs, renderer: renderer)
            ?? collectionFilter(name, v, args, kwargs, renderer: renderer)
        {
            return r
        }
        throw JinjaRenderError("filter '\(name)' is not supported", line: renderer.line)
    }

    /// Filters of text: trim, case, replace, indent, wordcount.
    static func textFilter(
        _ name: String, _ v: JinjaValue, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)], renderer: JinjaRenderer
    ) throws -> JinjaValue? {
        let c = FilterCall(args: args, kwargs: kwargs, line: renderer.line)
        func arg(_ k: Int, _ key: String) -> JinjaValue? { c.arg(k, key) }
        switch name {
        case "trim": return .string(strip(v.rendered, arg(0, "chars")?.rendered, leading: true, trailing: true))
        case "string": return .string(v.rendered)
        case "safe", "e", "escape": return v
        case "upper": return .string(v.rendered.uppercased())
        case "lower": return .string(v.rendered.lowercased())
        case "capitalize":
            let s = v.rendered
            return .string(s.prefix(1).uppercased() + s.dropFirst().lowercased())
        case "title": return .string(v.rendered.capitalized)
        case "replace":
            return .string(
                v.rendered.replacingOccurrences(of: arg(0, "old")?.rendered ?? "", with: arg(1, "new")?.rendered ?? ""))
        case "wordcount": return .int(split(v.rendered, nil, -1).count)
        case "indent":
            let width: Int
            if case .int(let n)? = arg(0, "width") { width = min(max(n, 0), 10_000) } else { width = 4 }
            let first = arg(1, "first")?.isTruthy ?? false
            let pad = String(repeating: " ", count: width)
            let lines = v.rendered.components(separatedBy: "\n")
            return .string(
                lines.enumerated().map { k, l in (k == 0 && !first) || l.isEmpty ? l : pad + l }.joined(separator: "\n")
            )
        default: return nil
        }
    }

    /// Filters of single values: default, tojson, numbers.
    static func valueFilter(
        _ name: String, _ v: JinjaValue, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)], renderer: JinjaRenderer
    ) throws -> JinjaValue? {
        let c = FilterCall(args: args, kwargs: kwargs, line: renderer.line), line = c.line
        func arg(_ k: Int, _ key: String) -> JinjaValue? { c.arg(k, key) }
        switch name {
        case "default", "d":
            let fallback = arg(0, "default_value") ?? .string("")
            let boolean = arg(1, "boolean")?.isTruthy ?? false
            return v.isUndefined || (boolean && !v.isTruthy) ? fallback : v
        case "tojson":
            var indent: Int?
            // transformers' override: tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False).
            if case .int(let n)? = arg(1, "indent") { indent = min(max(n, 0), 64) }
            var separators: (String, String)?
            if case .array(let s)? = arg(2, "separators"), s.count == 2 { separators = (s[0].rendered, s[1].rendered) }
            if arg(0, "ensure_ascii")?.isTruthy == true {
                throw JinjaRenderError("tojson(ensure_ascii=True) is not supported", line: line)
            }
            return .string(
                try JinjaJSON.dumps(
                    v, indent: indent, separators: separators, sortKeys: arg(3, "sort_keys")?.isTruthy ?? false))
        case "int":
            switch v {
            case .int: return v
            case .double(let d): return .int(Int(exactly: d.rounded(.towardZero)) ?? 0)
            case .string(let s):
                return .int(
                    Int(s.trimmingCharacters(in: .whitespaces)) ?? Int(exactly: (Double(s) ?? 0).rounded(.towardZero))
                        ?? 0)
            case .bool(let b): return .int(b ? 1 : 0)
            default: return .int(0)
            }
        case "float": return .double(number(v) ?? Double(v.rendered) ?? 0)
        case "abs":
            if case .int(let n) = v, n != Int.min { return .int(abs(n)) }
            return .double(abs(number(v) ?? 0))
        case "round": return .double(((number(v) ?? 0) * 1).rounded())
        default: return nil
        }
    }

    /// Filters of lists and dicts: length, items, dictsort, join, map, select…, sort.
    static func collectionFilter(
        _ name: String, _ v: JinjaValue, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)], renderer: JinjaRenderer
    ) throws -> JinjaValue? {
        let c = FilterCall(args: args, kwargs: kwargs, line: renderer.line), line = c.line
        func arg(_ k: Int, _ key: String) -> JinjaValue? { c.arg(k, key) }
        switch name {
        case "length", "count": return .int(try length(v, line: line))
        case "items":
            guard case .object(let o) = v else { return .array([]) }
            return .array(o.entries.map { .array([.string($0.key), $0.value]) })
        case "dictsort":
            guard case .object(let o) = v else {
                throw JinjaRenderError("dictsort needs a dict, not a \(v.typeName)", line: line)
            }
            let caseSensitive = arg(0, "case_sensitive")?.isTruthy ?? false
            let sorted = o.entries.sorted {
                caseSensitive ? $0.key < $1.key : $0.key.lowercased() < $1.key.lowercased()
            }
            return .array(sorted.map { .array([.string($0.key), $0.value]) })
        case "join":
            let separator = arg(0, "d")?.rendered ?? ""
            let list = try c.items(v)
            if let a = arg(1, "attribute") {
                return .string(try list.map { try c.attr($0, a.rendered).rendered }.joined(separator: separator))
            }
            return .string(list.map(\.rendered).joined(separator: separator))
        case "list": return .array(try c.items(v))
        case "first": return try c.items(v).first ?? .undefined("first")
        case "last": return try c.items(v).last ?? .undefined("last")
        case "reverse":
            if case .string(let s) = v { return .string(String(s.reversed())) }
            return .array(try c.items(v).reversed())
        case "unique":
            var seen: [JinjaValue] = []
            for item in try c.items(v) where !seen.contains(where: { equal($0, item) }) { seen.append(item) }
            return .array(seen)
        case "map": return try mapFilter(v, args, kwargs, c, renderer: renderer)
        case "selectattr", "rejectattr", "select", "reject": return try selectFilter(name, v, args, c)
        case "sort": return try sortFilter(v, kwargs, c)
        default: return nil
        }
    }

    /// map(attribute=…, default=…) or map(filter, args…).
    static func mapFilter(
        _ v: JinjaValue, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)], _ c: FilterCall,
        renderer: JinjaRenderer
    ) throws -> JinjaValue {
        let list = try c.items(v)
        if let a = kwargs.first(where: { $0.0 == "attribute" })?.1 {
            let fallback = kwargs.first { $0.0 == "default" }?.1
            return .array(
                try list.map { item in
                    let x = try c.attr(item, a.rendered)
                    return x.isUndefined ? (fallback ?? x) : x
                })
        }
        guard let filterName = args.first?.rendered else {
            throw JinjaRenderError("map needs a filter name or attribute=", line: c.line)
        }
        return .array(try list.map { try filter(filterName, $0, Array(args.dropFirst()), [], renderer: renderer) })
    }

    /// select / reject (by a test, or truthiness) and selectattr / rejectattr (of an attribute).
    static func selectFilter(_ name: String, _ v: JinjaValue, _ args: [JinjaValue], _ c: FilterCall) throws
        -> JinjaValue
    {
        let line = c.line
        if name == "select" || name == "reject" {
            let keep = name == "select"
            return .array(
                try c.items(v).filter { item in
                    let passed =
                        args.isEmpty
                        ? item.isTruthy : try test(args[0].rendered, item, Array(args.dropFirst()), line: line)
                    return passed == keep
                })
        }
        guard let a = args.first?.rendered else { throw JinjaRenderError("\(name) needs an attribute", line: line) }
        let keep = name == "selectattr"
        return .array(
            try c.items(v).filter { item in
                let x = try c.attr(item, a)
                let passed =
                    args.count > 1
                    ? try test(args[1].rendered, x, Array(args.dropFirst(2)), line: line) : x.isTruthy
                return passed == keep
            })
    }

    /// sort(reverse, attribute=…): a stable order by `<` (or `>` reversed).
    static func sortFilter(_ v: JinjaValue, _ kwargs: [(String, JinjaValue)], _ c: FilterCall) throws -> JinjaValue {
        let line = c.line
        let reverse = c.arg(0, "reverse")?.isTruthy ?? false
        let attribute = kwargs.first { $0.0 == "attribute" }?.1.rendered
        let list = try c.items(v)
        let keys = try list.map { item in try attribute.map { a in try c.attr(item, a) } ?? item }
        let order = list.indices.sorted { i, j in
            let a = keys[i], b = keys[j]
            let less = (try? binary("<", a, b, line: line).isTruthy) ?? false
            return reverse ? (try? binary(">", a, b, line: line).isTruthy) ?? false : less
        }
        return .array(order.map { list[$0] })
    }
}
