import Foundation

/// The regexes of tokenizer.json (written for Oniguruma, which Hugging Face tokenizers uses) run
/// through ICU's NSRegularExpression. The two differ in one class real files use: Oniguruma's \s
/// also matches U+000B and U+0085, ICU's does not, so \s and \S are rewritten to the explicit set.
struct PatternRegex: @unchecked Sendable {
    let regex: NSRegularExpression
    let source: String

    static let spaceItems = #"\t\n\x{0B}\f\r\x{85}\p{Z}"#

    init(oniguruma pattern: String) throws {
        source = pattern
        var out = "", inClass = false, escaped = false
        for ch in pattern {
            if escaped {
                escaped = false
                switch (ch, inClass) {
                case ("s", false): out += "[\(Self.spaceItems)]"
                case ("s", true): out += Self.spaceItems
                case ("S", false): out += "[^\(Self.spaceItems)]"
                case ("S", true):
                    throw TokenizerError("regex '\(pattern)': \\S inside a character class is not supported")
                default: out += "\\" + String(ch)
                }
                continue
            }
            switch ch {
            case "\\": escaped = true
            case "[" where !inClass:
                inClass = true
                out.append(ch)
            case "]" where inClass:
                inClass = false
                out.append(ch)
            default: out.append(ch)
            }
        }
        do { regex = try NSRegularExpression(pattern: out) } catch {
            throw TokenizerError("regex '\(pattern)' does not compile: \(error)")
        }
    }

    /// A literal string to split on.
    init(literal: String) throws {
        source = literal
        regex = try NSRegularExpression(pattern: NSRegularExpression.escapedPattern(for: literal))
    }

    /// The non-empty matches in `text`, in order.
    func matches(in text: String) -> [Range<String.Index>] {
        regex.matches(in: text, range: NSRange(text.startIndex..., in: text)).compactMap { Range($0.range, in: text) }
            .filter { !$0.isEmpty }
    }
}
