import Foundation

/// Rule verifiers: a reward computed from the response text and the reference answer.
public protocol Verifier: Sendable {
    var name: String { get }
    /// Score of `response` for a prompt whose reference answer is `answer`.
    func score(response: String, answer: String?) -> Double
}

/// Arithmetic: 1 when the response's final number equals the answer, else 0.
public struct ExactAnswerVerifier: Verifier {
    public let name = "verifier"
    public init() {}

    /// The response's final integer (a run of digits, optionally signed), the answer it gives.
    static func lastNumber(in response: String) -> String? {
        response.split(whereSeparator: { !$0.isNumber && $0 != "-" }).last { Int($0) != nil }.map(String.init)
    }
    public func score(response: String, answer: String?) -> Double {
        guard let answer else { return 0 }
        return ExactAnswerVerifier.lastNumber(in: response) == answer.trimmingCharacters(in: .whitespaces) ? 1 : 0
    }
}

/// A necessary condition of the exact answer, not the answer itself: 1 when the response's last
/// number ends in the answer's last digit, else 0. "56" for 12+34 passes, though it is wrong: a
/// verifier that is weaker than the gold it stands in for (the over-optimisation study's fair hybrid).
public struct LastDigitVerifier: Verifier {
    public let name = "last_digit"
    public init() {}
    public func score(response: String, answer: String?) -> Double {
        guard let answer, let want = answer.trimmingCharacters(in: .whitespaces).last, want.isNumber else { return 0 }
        return ExactAnswerVerifier.lastNumber(in: response)?.last == want ? 1 : 0
    }
}

/// Format: 0 when the response is a bare integer (what the task asks for), −1 otherwise.
public struct IntegerFormatVerifier: Verifier {
    public let name = "format"
    public init() {}
    public func score(response: String, answer: String?) -> Double {
        let t = response.trimmingCharacters(in: .whitespacesAndNewlines)
        return !t.isEmpty && Int(t) != nil && t == response ? 0 : -1
    }
}
