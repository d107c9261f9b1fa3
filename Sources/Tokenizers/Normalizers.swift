import Foundation

/// tokenizer.json's `normalizer`: what happens to text before it is split (the pieces between
/// added tokens are normalised one by one, as Hugging Face tokenizers does).
indirect enum Normalizer: Sendable {
    case nfc, nfd, nfkc, nfkd, lowercase
    case prepend(String)
    case replace(PatternRegex, String)
    case sequence([Normalizer])

    func apply(_ text: String) -> String {
        switch self {
        case .nfc: return text.precomposedStringWithCanonicalMapping
        case .nfd: return text.decomposedStringWithCanonicalMapping
        case .nfkc: return text.precomposedStringWithCompatibilityMapping
        case .nfkd: return text.decomposedStringWithCompatibilityMapping
        case .lowercase: return text.lowercased()
        case .prepend(let prefix): return text.isEmpty ? text : prefix + text
        case .replace(let pattern, let content):
            // In UTF-16 units, as the matches are: NSMutableString's replacement rounds a range to
            // Characters, so a space before a combining mark would be kept beside its replacement.
            let units = Array(text.utf16), with = Array(content.utf16)
            var out: [UInt16] = [], cursor = 0
            for m in pattern.regex.matches(in: text, range: NSRange(location: 0, length: units.count)) {
                out += units[cursor..<m.range.location] + with
                cursor = m.range.location + m.range.length
            }
            return String(decoding: out + units[cursor...], as: UTF16.self)
        case .sequence(let list): return list.reduce(text) { $1.apply($0) }
        }
    }

    /// Parses a normalizer object; types this implementation does not compute are errors naming them.
    static func parse(_ json: Any?, fail: (String) -> TokenizerError) throws -> Normalizer? {
        guard let json, !(json is NSNull) else { return nil }
        guard let object = json as? [String: Any], let type = object["type"] as? String else {
            throw fail("normalizer without a type")
        }
        switch type {
        case "NFC": return .nfc
        case "NFD": return .nfd
        case "NFKC": return .nfkc
        case "NFKD": return .nfkd
        case "Lowercase": return .lowercase
        case "Prepend":
            guard let prefix = object["prepend"] as? String else { throw fail("normalizer Prepend without 'prepend'") }
            return .prepend(prefix)
        case "Replace":
            guard let content = object["content"] as? String else { throw fail("normalizer Replace without 'content'") }
            return .replace(try TokenizerPattern.parse(object["pattern"], fail: fail), content)
        case "Sequence":
            guard let list = object["normalizers"] as? [Any] else {
                throw fail("normalizer Sequence without 'normalizers'")
            }
            return .sequence(try list.compactMap { try parse($0, fail: fail) })
        default:
            throw fail(
                "normalizer type '\(type)' is not supported (NFC, NFD, NFKC, NFKD, Lowercase, Prepend, Replace, "
                    + "Sequence)"
            )
        }
    }
}

/// A `pattern` of tokenizer.json: {"String": "…"} or {"Regex": "…"}.
enum TokenizerPattern {
    static func parse(_ json: Any?, fail: (String) -> TokenizerError) throws -> PatternRegex {
        guard let object = json as? [String: Any] else {
            throw fail("pattern must be {\"String\": …} or {\"Regex\": …}")
        }
        if let literal = object["String"] as? String { return try PatternRegex(literal: literal) }
        if let regex = object["Regex"] as? String { return try PatternRegex(oniguruma: regex) }
        throw fail("pattern must be {\"String\": …} or {\"Regex\": …}")
    }
}
