import Foundation

/// An arithmetic expression: 1 when the response is an expression of integers with + − × / and
/// parentheses whose value equals the answer (division must be exact), else 0 — for tasks like
/// "make 46 from 12 and 34" where many responses are right.
public struct ArithmeticExpressionVerifier: Verifier {
    public let name = "expression"
    public init() {}
    public func score(response: String, answer: String?) -> Double {
        guard let answer, let target = Int(answer.trimmingCharacters(in: .whitespaces)),
            let value = Self.evaluate(response)
        else { return 0 }
        return value == target ? 1 : 0
    }

    /// The value of an integer expression, nil when it does not parse or divides inexactly.
    public static func evaluate(_ text: String) -> Int? {
        var parser = Parser(characters: Array(text.filter { !$0.isWhitespace }))
        guard let v = parser.expression(), parser.position == parser.characters.count else { return nil }
        return v
    }

    struct Parser {
        let characters: [Character]
        var position = 0
        var depth = 0
        init(characters: [Character]) { self.characters = characters }
        mutating func peek() -> Character? { position < characters.count ? characters[position] : nil }
        /// expression := term (('+' | '-') term)*
        mutating func expression() -> Int? {
            guard var value = term() else { return nil }
            while let c = peek(), c == "+" || c == "-" {
                position += 1
                guard let rhs = term() else { return nil }
                let (r, overflow) =
                    c == "+" ? value.addingReportingOverflow(rhs) : value.subtractingReportingOverflow(rhs)
                if overflow { return nil }
                value = r
            }
            return value
        }
        /// term := factor (('*' | '/') factor)*
        mutating func term() -> Int? {
            guard var value = factor() else { return nil }
            while let c = peek(), c == "*" || c == "/" || c == "×" {
                position += 1
                guard let rhs = factor() else { return nil }
                if c == "/" {
                    guard rhs != 0, value % rhs == 0 else { return nil }
                    value /= rhs
                } else {
                    let (r, overflow) = value.multipliedReportingOverflow(by: rhs)
                    if overflow { return nil }
                    value = r
                }
            }
            return value
        }
        /// factor := '-' factor | '(' expression ')' | digits
        mutating func factor() -> Int? {
            guard let c = peek() else { return nil }
            if c == "-" {
                position += 1
                return factor().map { -$0 }
            }
            if c == "(" {
                guard depth < 64 else { return nil }
                position += 1
                depth += 1
                guard let v = expression(), peek() == ")" else { return nil }
                position += 1
                depth -= 1
                return v
            }
            var digits = ""
            while let d = peek(), d.isASCII, d.isNumber {
                digits.append(d)
                position += 1
            }
            return Int(digits)
        }
    }
}

/// A length rule: 0 within `maxCharacters` (trimmed), −1 beyond — a format check that needs no answer.
public struct LengthVerifier: Verifier {
    public let name = "length"
    public let maxCharacters: Int
    public init(maxCharacters: Int) { self.maxCharacters = maxCharacters }
    public func score(response: String, answer: String?) -> Double {
        response.trimmingCharacters(in: .whitespacesAndNewlines).count <= maxCharacters ? 0 : -1
    }
}

/// Verifiers by name, for configs: exact (final number = answer), last_digit (its last digit =
/// the answer's), format (a bare integer),
/// expression (an expression equal to the answer), instructions (share of the answer's
/// instruction constraints kept), length<N> (at most N characters).
public enum Verifiers {
    public static func named(_ name: String) -> (any Verifier)? {
        switch name {
        case "exact": return ExactAnswerVerifier()
        case "format": return IntegerFormatVerifier()
        case "expression": return ArithmeticExpressionVerifier()
        case "last_digit": return LastDigitVerifier()
        case "instructions": return InstructionVerifier()
        default:
            if name.hasPrefix("length"), let n = Int(name.dropFirst("length".count)), n > 0 {
                return LengthVerifier(maxCharacters: n)
            }
            return nil
        }
    }

    /// "task=v1+v2,task2" → task → verifiers (a bare task: exact + format).
    public static func routes(_ spec: String) throws -> [String: [any Verifier]] {
        var out: [String: [any Verifier]] = [:]
        for entry in spec.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !entry.isEmpty {
            let parts = entry.split(separator: "=", maxSplits: 1).map(String.init)
            let names = parts.count == 2 ? parts[1].split(separator: "+").map(String.init) : ["exact", "format"]
            out[parts[0]] = try names.map { n in
                guard let v = named(n) else {
                    throw VerifierError(
                        "unknown verifier '\(n)' for task '\(parts[0])'; known: exact, last_digit, format, expression, "
                            + "instructions, length<N>"
                    )
                }
                return v
            }
        }
        return out
    }
}

public struct VerifierError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
