import Foundation

/// One verifiable instruction in the style of IFEval (Zhou et al. 2023, "Instruction-Following
/// Evaluation for Large Language Models", arXiv 2311.07911): a rule a reply can be checked against
/// without a judge. Written into a prompt as `instruction` and into the data as `spec`
/// ("max_words|30"), which `parse` reads back.
///
/// The wording is ours and the checks are stricter than IFEval's in places, chosen so that a
/// reward cannot be collected by gaming them: words are whitespace-separated (IFEval counts \w+
/// runs), a keyword counts as a whole word (IFEval: as a substring), the end phrase must match
/// exactly (IFEval ignores case and surrounding quotes), a bullet is a line starting "* " or "- "
/// (IFEval: "*" not followed by "*", or "-"), and an empty reply keeps no rule.
public enum InstructionConstraint: Hashable, Sendable {
    case lowercase, noCommas, allCapitals, quoted
    case maxWords(Int), minWords(Int), bullets(Int)
    case keyword(String, times: Int)
    case endPhrase(String), startWord(String), jsonKey(String)

    /// The constraint's kind, as named in specs and per-constraint results.
    public var kind: String {
        switch self {
        case .lowercase: return "lowercase"
        case .noCommas: return "no_commas"
        case .allCapitals: return "all_capitals"
        case .quoted: return "quoted"
        case .maxWords: return "max_words"
        case .minWords: return "min_words"
        case .bullets: return "bullets"
        case .keyword: return "keyword"
        case .endPhrase: return "end_phrase"
        case .startWord: return "start_word"
        case .jsonKey: return "json_key"
        }
    }

    public static let kinds = [
        "lowercase", "no_commas", "all_capitals", "quoted", "max_words", "min_words", "bullets", "keyword",
        "end_phrase", "start_word", "json_key",
    ]

    /// The sentence the prompt carries.
    public var instruction: String {
        switch self {
        case .lowercase: return "Your entire reply must be in lowercase letters; no capital letters are allowed."
        case .noCommas: return "Do not use any commas in your reply."
        case .allCapitals: return "Your entire reply must be in English capital letters only."
        case .quoted: return "Wrap your entire reply in double quotation marks."
        case .maxWords(let n): return "Answer in at most \(n) words."
        case .minWords(let n): return "Answer in at least \(n) words."
        case .bullets(let n):
            return "Your reply must contain exactly \(n) bullet points, each on its own line starting with \"* \"."
        case .keyword(let k, let m): return "Include the word \"\(k)\" at least \(m) times."
        case .endPhrase(let p):
            return "Finish your reply with the exact phrase \"\(p)\". No other words should follow it."
        case .startWord(let w): return "Start your reply with the word \"\(w)\"."
        case .jsonKey(let k): return "Your entire reply must be a JSON object with the key \"\(k)\"."
        }
    }

    public var spec: String {
        switch self {
        case .maxWords(let n), .minWords(let n), .bullets(let n): return "\(kind)|\(n)"
        case .keyword(let k, let m): return "keyword|\(k)|\(m)"
        case .endPhrase(let s), .startWord(let s), .jsonKey(let s): return "\(kind)|\(s)"
        default: return kind
        }
    }

    /// Reads one spec ("keyword|river|2"); nil when it names no constraint or one no reply can
    /// keep (counts below 1, a keyword that is not one word, an empty phrase).
    public static func parse(_ spec: String) -> InstructionConstraint? {
        let parts = spec.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
        let n = parts.count > 1 ? Int(parts[1]).flatMap { $0 >= 1 ? $0 : nil } : nil
        if parts.count > 1 && parts[1].trimmingCharacters(in: .whitespaces).isEmpty { return nil }
        if parts[0] == "keyword"
            && (parts.count != 3 || !parts[1].allSatisfy({ $0.isLetter || $0.isNumber }) || (Int(parts[2]) ?? 0) < 1)
        {
            return nil
        }
        switch (parts[0], parts.count) {
        case ("lowercase", 1): return .lowercase
        case ("no_commas", 1): return .noCommas
        case ("all_capitals", 1): return .allCapitals
        case ("quoted", 1): return .quoted
        case ("max_words", 2): return n.map { .maxWords($0) }
        case ("min_words", 2): return n.map { .minWords($0) }
        case ("bullets", 2): return n.map { .bullets($0) }
        case ("keyword", 3): return Int(parts[2]).map { .keyword(parts[1], times: $0) }
        case ("end_phrase", 2): return .endPhrase(parts[1])
        case ("start_word", 2): return .startWord(parts[1])
        case ("json_key", 2): return .jsonKey(parts[1])
        default: return nil
        }
    }

    /// Kinds that cannot hold together in one reply (a JSON object is neither quoted nor a list…).
    public static func conflict(_ a: String, _ b: String) -> Bool {
        let pairs: Set<[String]> = [
            ["lowercase", "all_capitals"], ["max_words", "min_words"], ["json_key", "quoted"], ["json_key", "bullets"],
            ["json_key", "end_phrase"], ["json_key", "start_word"], ["quoted", "end_phrase"], ["quoted", "start_word"],
            ["quoted", "bullets"], ["bullets", "start_word"], ["all_capitals", "end_phrase"],
            ["lowercase", "end_phrase"],
            ["json_key", "lowercase"], ["json_key", "all_capitals"], ["json_key", "no_commas"],
        ]
        return a == b || pairs.contains([a, b]) || pairs.contains([b, a])
    }

    /// Whether `reply` keeps the rule (see the type's note on how the checks differ from IFEval's;
    /// a JSON reply may sit in a ``` fence).
    public func isSatisfied(by reply: String) -> Bool {
        let text = reply.trimmingCharacters(in: .whitespacesAndNewlines)
        let words = text.split(whereSeparator: { $0.isWhitespace })
        switch self {
        case .lowercase: return text == text.lowercased() && text.contains(where: \.isLetter)
        case .allCapitals: return text == text.uppercased() && text.contains(where: \.isLetter)
        case .noCommas: return !text.isEmpty && !text.contains(",")
        case .quoted: return text.count > 1 && text.hasPrefix("\"") && text.hasSuffix("\"")
        case .maxWords(let n): return !words.isEmpty && words.count <= n
        case .minWords(let n): return words.count >= n
        case .bullets(let n):
            return text.split(whereSeparator: \.isNewline).filter {
                $0.trimmingCharacters(in: .whitespaces).hasPrefix("* ")
                    || $0.trimmingCharacters(in: .whitespaces).hasPrefix("- ")
            }.count == n
        case .keyword(let k, let m):
            let target = k.lowercased()
            return text.lowercased().split(whereSeparator: { !$0.isLetter && !$0.isNumber }).filter { $0 == target }
                .count >= m
        case .endPhrase(let p): return text.hasSuffix(p)
        case .startWord(let w):
            let first =
                words.first.map { String($0).trimmingCharacters(in: .punctuationCharacters.union(.symbols)) } ?? ""
            return first.lowercased() == w.lowercased()
        case .jsonKey(let k):
            var body = text
            if body.hasPrefix("```") {
                body = String(body.drop(while: { $0 != "\n" }).dropFirst())
                if body.hasSuffix("```") { body = String(body.dropLast(3)) }
            }
            guard let object = (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any] else {
                return false
            }
            return object[k] != nil
        }
    }

    /// Reads a ";"-joined list of specs; throws naming the first it cannot read.
    public static func parseList(_ specs: String) throws -> [InstructionConstraint] {
        try specs.split(separator: ";").map { spec in
            guard let c = parse(String(spec)) else {
                throw VerifierError(
                    "'\(spec)' is not an instruction constraint (kinds: \(kinds.joined(separator: ", ")))")
            }
            return c
        }
    }
}

/// The share of a prompt's constraints a reply keeps (its answer field holds their specs, ";"-joined).
public struct InstructionVerifier: Verifier {
    public let name = "instructions"
    public init() {}
    public func score(response: String, answer: String?) -> Double {
        guard let answer, let constraints = try? InstructionConstraint.parseList(answer), !constraints.isEmpty else {
            return 0
        }
        return Double(constraints.filter { $0.isSatisfied(by: response) }.count) / Double(constraints.count)
    }
}
