/// GPT-2's pre-tokenisation (Radford et al. 2019, the encoder.py regex)
///   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
/// written as a scanner over Unicode scalars that tries the alternatives in the regex's order
/// at each position (first alternative that matches wins, each quantifier greedy), which is
/// what Hugging Face tokenizers' Oniguruma regex does. No regex engine, no backtracking.
enum ByteLevelPreTokenizer {
    static func isLetter(_ s: Unicode.Scalar) -> Bool {
        switch s.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true
        default: return false
        }
    }
    static func isNumber(_ s: Unicode.Scalar) -> Bool {
        switch s.properties.generalCategory {
        case .decimalNumber, .letterNumber, .otherNumber: return true
        default: return false
        }
    }
    static func isSpace(_ s: Unicode.Scalar) -> Bool { s.properties.isWhitespace }
    static func isOther(_ s: Unicode.Scalar) -> Bool { !isSpace(s) && !isLetter(s) && !isNumber(s) }

    /// Splits `text` into pre-tokens (substrings as arrays of scalars).
    static func split(_ text: String) -> [String.UnicodeScalarView.SubSequence] {
        let scalars = text.unicodeScalars
        var pieces: [String.UnicodeScalarView.SubSequence] = []
        var i = scalars.startIndex
        let end = scalars.endIndex
        func run(from j: String.UnicodeScalarView.Index, while predicate: (Unicode.Scalar) -> Bool)
            -> String.UnicodeScalarView.Index
        {
            var k = j
            while k < end && predicate(scalars[k]) { k = scalars.index(after: k) }
            return k
        }
        while i < end {
            let c = scalars[i]
            let next = scalars.index(after: i)
            // 1. contractions (case-sensitive, as in GPT-2's regex)
            if c == "'" && next < end {
                let rest = scalars[next...]
                var matched: String.UnicodeScalarView.Index?
                for suffix in ["re", "ve", "ll", "s", "t", "m", "d"] where rest.starts(with: suffix.unicodeScalars) {
                    matched = scalars.index(next, offsetBy: suffix.unicodeScalars.count)
                    break
                }
                if let m = matched {
                    pieces.append(scalars[i..<m])
                    i = m
                    continue
                }
            }
            // 2–4. an optional single space, then a run of one class
            let start = (c == " " && next < end) ? next : i
            if start < end {
                let first = scalars[start]
                let classes: [(Unicode.Scalar) -> Bool] = [isLetter, isNumber, isOther]
                if let predicate = classes.first(where: { $0(first) }) {
                    let stop = run(from: start, while: predicate)
                    pieces.append(scalars[i..<stop])
                    i = stop
                    continue
                }
            }
            // 5. \s+(?!\S): a whitespace run, leaving its last scalar for the next token when a
            //    non-space follows; 6. \s+ otherwise (a lone space before a word never gets here).
            let stop = run(from: i, while: isSpace)
            if stop < end && scalars.distance(from: i, to: stop) > 1 {
                let shortened = scalars.index(before: stop)
                pieces.append(scalars[i..<shortened])
                i = shortened
            } else {
                pieces.append(scalars[i..<stop])
                i = stop
            }
        }
        return pieces
    }

    /// GPT-2's bytes_to_unicode: printable bytes map to themselves, the others to U+0100 onward,
    /// so every byte sequence is a string of visible characters for the merges to work on.
    static let byteToUnicode: [Character] = {
        var printable = Array(33...126) + Array(161...172) + Array(174...255)
        var codes = printable
        var extra = 0
        for b in 0..<256 where !printable.contains(b) {
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
        }
        var table = [Character](repeating: " ", count: 256)
        for (b, c) in zip(printable, codes) { table[b] = Character(Unicode.Scalar(UInt32(c))!) }
        return table
    }()

    /// Each UTF-8 byte of `text` as its printable symbol.
    static func mapBytes(_ text: String) -> String {
        var out = ""
        out.unicodeScalars.reserveCapacity(text.utf8.count)
        for b in text.utf8 { out.unicodeScalars.append(byteToUnicodeScalar[Int(b)]) }
        return out
    }

    static let byteToUnicodeScalar: [Unicode.Scalar] = byteToUnicode.map { $0.unicodeScalars.first! }

    static let unicodeToByte: [Character: UInt8] = {
        var inverse: [Character: UInt8] = [:]
        for (b, c) in byteToUnicode.enumerated() { inverse[c] = UInt8(b) }
        return inverse
    }()
}
