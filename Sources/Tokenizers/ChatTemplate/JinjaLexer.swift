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

enum JinjaLexer {
    static func pieces(_ source: String) throws -> [JinjaPiece] {
        let s = Array(source.unicodeScalars)
        var out: [JinjaPiece] = []
        var text = String.UnicodeScalarView()
        var i = 0, line = 1
        var stripNextLeading = false, trimNextNewline = false
        func isSpace(_ c: Unicode.Scalar) -> Bool { c == " " || c == "\t" || c == "\n" || c == "\r" }
        func flushText() { if !text.isEmpty { out.append(.text(String(text))); text = String.UnicodeScalarView() } }
        while i < s.count {
            let c = s[i]
            guard c == "{", i + 1 < s.count, ["{", "%", "#"].contains(s[i + 1]) else {
                if stripNextLeading && isSpace(c) { if c == "\n" { line += 1 }; i += 1; continue }
                if trimNextNewline {
                    trimNextNewline = false
                    if c == "\n" { line += 1; i += 1; continue }
                    if c == "\r", i + 1 < s.count, s[i + 1] == "\n" { line += 1; i += 2; continue }
                }
                stripNextLeading = false
                if c == "\n" { line += 1 }
                text.append(c); i += 1
                continue
            }
            stripNextLeading = false; trimNextNewline = false
            let kind = s[i + 1], startLine = line
            var j = i + 2
            let modifier = j < s.count && (s[j] == "-" || s[j] == "+") ? s[j] : nil
            if modifier != nil { j += 1 }
            if modifier == "-" {
                while let last = text.last, isSpace(last) { text.removeLast() }
            } else if modifier != "+" && kind != "{" {
                // lstrip_blocks: a block tag alone at the start of its line (in the source) takes
                // the line's indentation with it.
                var p = i - 1, run = 0
                while p >= 0, s[p] == " " || s[p] == "\t" { p -= 1; run += 1 }
                if run > 0, p < 0 || s[p] == "\n" {
                    var removed = 0
                    while removed < run, let last = text.last, last == " " || last == "\t" { text.removeLast(); removed += 1 }
                }
            }
            let close: Unicode.Scalar = kind == "{" ? "}" : (kind == "%" ? "%" : "#")
            var body = String.UnicodeScalarView(), quote: Unicode.Scalar?
            var closed = false, rightStrip = false, keepNewline = false
            while j < s.count {
                let d = s[j]
                if d == "\n" { line += 1 }
                if let q = quote {
                    body.append(d)
                    if d == "\\", j + 1 < s.count { body.append(s[j + 1]); j += 2; continue }
                    if d == q { quote = nil }
                    j += 1; continue
                }
                if kind != "#" && (d == "'" || d == "\"") { quote = d; body.append(d); j += 1; continue }
                if d == "-", j + 2 < s.count, s[j + 1] == close, s[j + 2] == "}" { rightStrip = true; j += 3; closed = true; break }
                if d == "+", kind != "{", j + 2 < s.count, s[j + 1] == close, s[j + 2] == "}" { keepNewline = true; j += 3; closed = true; break }
                if d == close, j + 1 < s.count, s[j + 1] == "}" { j += 2; closed = true; break }
                body.append(d); j += 1
            }
            guard closed else { throw JinjaSyntaxError("unclosed '{\(kind)'", line: startLine) }
            let content = String(body).trimmingCharacters(in: .whitespacesAndNewlines)
            switch kind {
            case "{": flushText(); out.append(.output(content, line: startLine))
            case "%": flushText(); out.append(.statement(content, line: startLine))
            default: break
            }
            if rightStrip { stripNextLeading = true } else if kind != "{" && !keepNewline { trimNextNewline = true }
            i = j
        }
        flushText()
        return out
    }
}
