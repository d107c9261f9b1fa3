import Foundation

/// A chat template cut into text, `{{ expression }}` and `{% statement %}` pieces, with Jinja2's
/// whitespace control as transformers configures it (trim_blocks and lstrip_blocks on, `-` strips
/// all whitespace on its side, `+` keeps the line's indentation); comments dropped.
enum JinjaPiece: Equatable {
    case text(String)
    case output(String, line: Int)
    case statement(String, line: Int)
}

struct JinjaSyntaxError: Error, CustomStringConvertible {
    let description: String
    init(_ message: String, line: Int) { description = "chat template line \(line): \(message)" }
}

struct JinjaLexer {
    static func pieces(_ source: String) throws -> [JinjaPiece] {
        var lexer = JinjaLexer(s: Array(source.unicodeScalars))
        while lexer.i < lexer.s.count {
            let c = lexer.s[lexer.i]
            guard c == "{", lexer.i + 1 < lexer.s.count, ["{", "%", "#"].contains(lexer.s[lexer.i + 1]) else {
                lexer.text(c)
                continue
            }
            try lexer.tag()
        }
        lexer.flushText()
        return lexer.out
    }

    let s: [Unicode.Scalar]
    var out: [JinjaPiece] = []
    var pending = String.UnicodeScalarView()
    var i = 0, line = 1
    var stripNextLeading = false, trimNextNewline = false

    static func isSpace(_ c: Unicode.Scalar) -> Bool { c == " " || c == "\t" || c == "\n" || c == "\r" }

    mutating func flushText() {
        if !pending.isEmpty {
            out.append(.text(String(pending)))
            pending = String.UnicodeScalarView()
        }
    }

    /// Text scalar `c` at `i`, unless the whitespace control of the tag before drops it.
    mutating func text(_ c: Unicode.Scalar) {
        if stripNextLeading && Self.isSpace(c) {
            if c == "\n" { line += 1 }
            i += 1
            return
        }
        if trimNextNewline {
            trimNextNewline = false
            if c == "\n" {
                line += 1
                i += 1
                return
            }
            if c == "\r", i + 1 < s.count, s[i + 1] == "\n" {
                line += 1
                i += 2
                return
            }
        }
        stripNextLeading = false
        if c == "\n" { line += 1 }
        pending.append(c)
        i += 1
    }

    /// The tag starting at `i` ({{ … }}, {% … %} or {# … #}), with its whitespace control.
    mutating func tag() throws {
        stripNextLeading = false
        trimNextNewline = false
        let kind = s[i + 1], startLine = line
        var j = i + 2
        let modifier = j < s.count && (s[j] == "-" || s[j] == "+") ? s[j] : nil
        if modifier != nil { j += 1 }
        stripBefore(kind: kind, modifier: modifier)
        let (body, end, rightStrip, keepNewline) = try tagBody(kind: kind, from: j, startLine: startLine)
        let content = String(body).trimmingCharacters(in: .whitespacesAndNewlines)
        switch kind {
        case "{":
            flushText()
            out.append(.output(content, line: startLine))
        case "%":
            flushText()
            out.append(.statement(content, line: startLine))
        default: break
        }
        if rightStrip { stripNextLeading = true } else if kind != "{" && !keepNewline { trimNextNewline = true }
        i = end
    }

    /// `-` strips all whitespace before the tag; lstrip_blocks: a block tag alone at the start of
    /// its line (in the source) takes the line's indentation with it, unless `+`.
    mutating func stripBefore(kind: Unicode.Scalar, modifier: Unicode.Scalar?) {
        if modifier == "-" {
            while let last = pending.last, Self.isSpace(last) { pending.removeLast() }
            return
        }
        guard modifier != "+" && kind != "{" else { return }
        var p = i - 1, run = 0
        while p >= 0, s[p] == " " || s[p] == "\t" {
            p -= 1
            run += 1
        }
        guard run > 0, p < 0 || s[p] == "\n" else { return }
        var removed = 0
        while removed < run, let last = pending.last, last == " " || last == "\t" {
            pending.removeLast()
            removed += 1
        }
    }

    /// The tag's body from `j` to its close (quotes respected), where it ends, and its right-side
    /// whitespace control (`-` strips, `+` keeps the newline).
    mutating func tagBody(kind: Unicode.Scalar, from start: Int, startLine: Int) throws
        -> (body: String.UnicodeScalarView, end: Int, rightStrip: Bool, keepNewline: Bool)
    {
        let close: Unicode.Scalar = kind == "{" ? "}" : (kind == "%" ? "%" : "#")
        var body = String.UnicodeScalarView(), quote: Unicode.Scalar?
        var j = start
        while j < s.count {
            let d = s[j]
            if d == "\n" { line += 1 }
            if let q = quote {
                body.append(d)
                if d == "\\", j + 1 < s.count {
                    body.append(s[j + 1])
                    j += 2
                    continue
                }
                if d == q { quote = nil }
                j += 1
                continue
            }
            if kind != "#" && (d == "'" || d == "\"") {
                quote = d
                body.append(d)
                j += 1
                continue
            }
            let closes = j + 2 < s.count && s[j + 1] == close && s[j + 2] == "}"
            if d == "-" && closes { return (body, j + 3, true, false) }
            if d == "+" && kind != "{" && closes { return (body, j + 3, false, true) }
            if d == close, j + 1 < s.count, s[j + 1] == "}" { return (body, j + 2, false, false) }
            body.append(d)
            j += 1
        }
        throw JinjaSyntaxError("unclosed '{\(kind)'", line: startLine)
    }
}
