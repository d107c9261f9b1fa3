import Foundation

/// One pre-token on its way to the model; `atStart` marks the piece that begins the input text
/// (Metaspace's prepend_scheme "first" adds its marker there only).
struct Piece: Equatable {
    var text: String
    var atStart: Bool
}

/// How a Split pre-tokenizer treats the matches of its pattern (tokenizers' SplitDelimiterBehavior).
enum SplitBehavior: String, Sendable {
    case removed = "Removed", isolated = "Isolated", mergedWithPrevious = "MergedWithPrevious"
    case mergedWithNext = "MergedWithNext", contiguous = "Contiguous"
}

/// Metaspace's rule for the marker before the first word.
enum PrependScheme: String, Sendable { case always, first, never }

/// tokenizer.json's `pre_tokenizer`: how normalised text is cut into the pieces BPE runs on.
indirect enum PreTokenizer: Sendable {
    /// GPT-2's: optional prefix space, GPT-2's regex when `useRegex`, then bytes → printable symbols.
    case byteLevel(addPrefixSpace: Bool, useRegex: Bool)
    case split(PatternRegex, SplitBehavior, invert: Bool)
    /// Digits apart from the rest: each alone, or in runs.
    case digits(individual: Bool)
    /// SentencePiece's: spaces become the marker (▁), the marker is prepended, optionally split before each marker.
    case metaspace(replacement: String, prependScheme: PrependScheme, split: Bool)
    case sequence([PreTokenizer])

    func apply(_ pieces: [Piece]) -> [Piece] {
        switch self {
        case .sequence(let list): return list.reduce(pieces) { $1.apply($0) }
        case .byteLevel(let addPrefixSpace, let useRegex):
            return pieces.flatMap { piece -> [Piece] in
                var text = piece.text
                if addPrefixSpace && text.unicodeScalars.first != " " { text = " " + text }
                let parts =
                    useRegex ? ByteLevelPreTokenizer.split(text).map { String(String.UnicodeScalarView($0)) } : [text]
                return parts.enumerated().map {
                    Piece(text: ByteLevelPreTokenizer.mapBytes($1), atStart: piece.atStart && $0 == 0)
                }
            }
        case .split(let pattern, let behavior, let invert):
            return pieces.flatMap { piece in
                let ranges = pattern.matches(in: piece.text)
                return Self.split(piece, matches: ranges, behavior: behavior, invert: invert)
            }
        case .digits(let individual):
            return pieces.flatMap { piece in
                let t = piece.text
                var matches: [Range<String.Index>] = []
                var i = t.unicodeScalars.startIndex
                while i < t.unicodeScalars.endIndex {
                    let next = t.unicodeScalars.index(after: i)
                    if ByteLevelPreTokenizer.isNumber(t.unicodeScalars[i]) { matches.append(i..<next) }
                    i = next
                }
                return Self.split(
                    piece, matches: matches, behavior: individual ? .isolated : .contiguous, invert: false)
            }
        case .metaspace(let replacement, let scheme, let split):
            return pieces.flatMap { Self.metaspace($0, replacement: replacement, scheme: scheme, split: split) }
        }
    }

    /// SentencePiece's Metaspace on one piece, by scalars as tokenizers works (a space before a
    /// combining mark is one Character in Swift): spaces become `replacement`, which is prepended as
    /// `scheme` says, then (`split`) the piece is cut before each marker.
    static func metaspace(_ piece: Piece, replacement: String, scheme: PrependScheme, split: Bool) -> [Piece] {
        var scalars = String.UnicodeScalarView()
        for scalar in piece.text.unicodeScalars {
            if scalar == " " { scalars.append(contentsOf: replacement.unicodeScalars) } else { scalars.append(scalar) }
        }
        var text = String(scalars)
        let prepend = scheme == .always || (scheme == .first && piece.atStart)
        if prepend && !text.unicodeScalars.starts(with: replacement.unicodeScalars) { text = replacement + text }
        let p = Piece(text: text, atStart: piece.atStart)
        guard split else { return [p] }
        var matches: [Range<String.Index>] = []
        let marker = Array(replacement.unicodeScalars), all = text.unicodeScalars
        var i = all.startIndex
        while i < all.endIndex {
            if all[i...].starts(with: marker) {
                let end = all.index(i, offsetBy: marker.count)
                matches.append(i..<end)
                i = end
            } else {
                i = all.index(after: i)
            }
        }
        return Self.split(p, matches: matches, behavior: .mergedWithNext, invert: false)
    }

    /// Cuts `piece` at `matches` (sorted, non-overlapping) as tokenizers' NormalizedString.split does.
    static func split(_ piece: Piece, matches: [Range<String.Index>], behavior: SplitBehavior, invert: Bool) -> [Piece]
    {
        let text = piece.text
        var segments: [(range: Range<String.Index>, isMatch: Bool)] = []
        var cursor = text.startIndex
        for m in matches {
            if cursor < m.lowerBound { segments.append((cursor..<m.lowerBound, false)) }
            segments.append((m, true))
            cursor = m.upperBound
        }
        if cursor < text.endIndex { segments.append((cursor..<text.endIndex, false)) }
        if invert { segments = segments.map { ($0.range, !$0.isMatch) } }
        // tokenizers' SplitDelimiterBehavior, rule for rule.
        var out: [Range<String.Index>] = []
        var previousMatch = false
        switch behavior {
        case .isolated: out = segments.map(\.range)
        case .removed: out = segments.filter { !$0.isMatch }.map(\.range)
        case .contiguous:
            for (range, isMatch) in segments {
                if isMatch == previousMatch, let last = out.last {
                    out[out.count - 1] = last.lowerBound..<range.upperBound
                } else {
                    out.append(range)
                }
                previousMatch = isMatch
            }
        case .mergedWithPrevious:
            for (range, isMatch) in segments {
                if isMatch && !previousMatch, let last = out.last {
                    out[out.count - 1] = last.lowerBound..<range.upperBound
                } else {
                    out.append(range)
                }
                previousMatch = isMatch
            }
        case .mergedWithNext:
            for (range, isMatch) in segments.reversed() {
                if isMatch && !previousMatch, let last = out.last {
                    out[out.count - 1] = range.lowerBound..<last.upperBound
                } else {
                    out.append(range)
                }
                previousMatch = isMatch
            }
            out.reverse()
        }
        // Cut by scalars: String's own subscript would round the bounds to Characters.
        return out.enumerated().map {
            Piece(
                text: String(String.UnicodeScalarView(text.unicodeScalars[$1])),
                atStart: piece.atStart && $1.lowerBound == text.startIndex)
        }
    }

    static func parse(_ json: Any?, fail: (String) -> TokenizerError) throws -> PreTokenizer? {
        guard let json, !(json is NSNull) else { return nil }
        guard let object = json as? [String: Any], let type = object["type"] as? String else {
            throw fail("pre_tokenizer without a type")
        }
        switch type {
        case "ByteLevel":
            return .byteLevel(
                addPrefixSpace: object["add_prefix_space"] as? Bool ?? true,
                useRegex: object["use_regex"] as? Bool ?? true)
        case "Split":
            guard let name = object["behavior"] as? String, let behavior = SplitBehavior(rawValue: name) else {
                throw fail(
                    "pre_tokenizer Split: behavior '\(object["behavior"] ?? "none")' is not one of Removed, "
                        + "Isolated, MergedWithPrevious, MergedWithNext, Contiguous"
                )
            }
            return .split(
                try TokenizerPattern.parse(object["pattern"], fail: fail), behavior,
                invert: object["invert"] as? Bool ?? false)
        case "Digits":
            return .digits(individual: object["individual_digits"] as? Bool ?? false)
        case "Metaspace":
            let replacement = object["replacement"] as? String ?? "\u{2581}"
            var scheme = PrependScheme.always
            if let name = object["prepend_scheme"] as? String {
                guard let s = PrependScheme(rawValue: name) else {
                    throw fail("pre_tokenizer Metaspace: prepend_scheme '\(name)' is not always, first or never")
                }
                scheme = s
            } else if let add = object["add_prefix_space"] as? Bool {
                scheme = add ? .always : .never
            }
            return .metaspace(replacement: replacement, prependScheme: scheme, split: object["split"] as? Bool ?? true)
        case "Sequence":
            guard let list = object["pretokenizers"] as? [Any] else {
                throw fail("pre_tokenizer Sequence without 'pretokenizers'")
            }
            return .sequence(try list.compactMap { try parse($0, fail: fail) })
        default:
            throw fail("pre_tokenizer type '\(type)' is not supported (ByteLevel, Split, Digits, Metaspace, Sequence)")
        }
    }

    /// Whether pieces reach the model as byte symbols (a ByteLevel step is part of it).
    var isByteLevel: Bool {
        switch self {
        case .byteLevel: return true
        case .sequence(let list): return list.contains(where: \.isByteLevel)
        default: return false
        }
    }
}
