import Foundation

/// A parsed chat template: the statement tree of Jinja2's `if`, `for`, `set`, `macro`,
/// `generation`, `break` and `continue`; other statements are errors naming them and their line.
struct JinjaStatementParser {
    let pieces: [JinjaPiece]
    var i = 0

    init(_ source: String) throws { pieces = try JinjaLexer.pieces(source) }

    /// Nodes until one of `terminators` (a statement keyword) or the end; returns the terminator met.
    mutating func parse(until terminators: Set<String>) throws -> (
        [JinjaNode], (keyword: String, rest: String, line: Int)?
    ) {
        var nodes: [JinjaNode] = []
        while i < pieces.count {
            let piece = pieces[i]
            i += 1
            switch piece {
            case .text(let t): nodes.append(.text(t))
            case .output(let source, let line):
                var p = try JinjaExpressionParser(source, line: line)
                let e = try p.expression()
                guard p.atEnd else { throw p.fail("unexpected \(p.describe(p.peek)) in {{ … }}") }
                nodes.append(.output(e, line: line))
            case .statement(let source, let line):
                let keyword = String(source.prefix { $0.isLetter || $0 == "_" })
                let rest = String(source.dropFirst(keyword.count))
                if terminators.contains(keyword) { return (nodes, (keyword, rest, line)) }
                nodes.append(try statement(keyword, rest, line: line))
            }
        }
        if !terminators.isEmpty {
            throw JinjaSyntaxError("missing {% \(terminators.sorted().joined(separator: " / ")) %}", line: lastLine)
        }
        return (nodes, nil)
    }

    var lastLine: Int {
        for piece in pieces.reversed() {
            if case .statement(_, let l) = piece { return l }
            if case .output(_, let l) = piece { return l }
        }
        return 1
    }

    mutating func statement(_ keyword: String, _ rest: String, line: Int) throws -> JinjaNode {
        switch keyword {
        case "if": return try ifBlock(rest, line: line)
        case "for": return try forLoop(rest, line: line)
        case "set": return try setStatement(rest, line: line)
        case "macro": return try macroDefinition(rest, line: line)
        case "generation":
            return .generation(try parse(until: ["endgeneration"]).0)
        case "break": return .breakLoop(line: line)
        case "continue": return .continueLoop(line: line)
        default:
            throw JinjaSyntaxError(
                "statement '\(keyword)' is not supported (if, for, set, macro, generation, break, continue)", line: line
            )
        }
    }

    /// {% if %} … {% elif %} … {% else %} … {% endif %}.
    mutating func ifBlock(_ rest: String, line: Int) throws -> JinjaNode {
        var branches: [(JinjaExpression, [JinjaNode])] = []
        var condition = try Self.expression(rest, line: line)
        while true {
            let (body, end) = try parse(until: ["elif", "else", "endif"])
            branches.append((condition, body))
            switch end!.keyword {
            case "elif": condition = try Self.expression(end!.rest, line: end!.line)
            case "else":
                let (otherwise, _) = try parse(until: ["endif"])
                return .ifBlock(branches, otherwise: otherwise, line: line)
            default: return .ifBlock(branches, otherwise: [], line: line)
            }
        }
    }

    /// {% for targets in iterable [if condition] %} … [{% else %} …] {% endfor %}.
    mutating func forLoop(_ rest: String, line: Int) throws -> JinjaNode {
        var p = try JinjaExpressionParser(rest, line: line)
        var targets = [try p.name()]
        while p.accept(",") { targets.append(try p.name()) }
        guard p.acceptName("in") else { throw p.fail("expected 'in' in {% for %}") }
        let iterable = try p.expression(allowConditional: false)
        let condition = p.acceptName("if") ? try p.expression(allowConditional: false) : nil
        if p.acceptName("recursive") { throw p.fail("recursive loops are not supported") }
        guard p.atEnd else { throw p.fail("unexpected \(p.describe(p.peek)) in {% for %}") }
        let (body, end) = try parse(until: ["else", "endfor"])
        var otherwise: [JinjaNode] = []
        if end!.keyword == "else" { otherwise = try parse(until: ["endfor"]).0 }
        return .forLoop(
            targets: targets, iterable: iterable, condition: condition, body: body, otherwise: otherwise, line: line
        )
    }

    /// {% set a[.attr], b = value %} or the block form {% set a %} … {% endset %}.
    mutating func setStatement(_ rest: String, line: Int) throws -> JinjaNode {
        var p = try JinjaExpressionParser(rest, line: line)
        var targets = [try p.name()]
        var attribute: String?
        if p.accept(".") { attribute = try p.name() }
        while p.accept(",") { targets.append(try p.name()) }
        if p.atEnd {
            guard targets.count == 1, attribute == nil else { throw p.fail("a block {% set %} takes one name") }
            let (body, _) = try parse(until: ["endset"])
            return .setBlock(targets[0], body, line: line)
        }
        try p.expect("=")
        let value = try p.expression()
        guard p.atEnd else { throw p.fail("unexpected \(p.describe(p.peek)) in {% set %}") }
        return .set(targets: targets, attribute: attribute, value: value, line: line)
    }

    /// {% macro name(parameters) %} … {% endmacro %}.
    mutating func macroDefinition(_ rest: String, line: Int) throws -> JinjaNode {
        var p = try JinjaExpressionParser(rest, line: line)
        let name = try p.name()
        try p.expect("(")
        var parameters: [(name: String, defaultValue: JinjaExpression?)] = []
        while !p.accept(")") {
            let n = try p.name()
            parameters.append((n, p.accept("=") ? try p.expression() : nil))
            if !p.accept(",") {
                try p.expect(")")
                break
            }
        }
        let (body, _) = try parse(until: ["endmacro"])
        return .macro(JinjaMacro(name: name, parameters: parameters, body: body))
    }

    static func expression(_ source: String, line: Int) throws -> JinjaExpression {
        var p = try JinjaExpressionParser(source, line: line)
        let e = try p.expression()
        guard p.atEnd else { throw p.fail("unexpected \(p.describe(p.peek))") }
        return e
    }
}
