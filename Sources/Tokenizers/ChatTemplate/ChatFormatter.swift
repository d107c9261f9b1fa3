import Foundation

/// A tokenizer's chat template with its special tokens, turning TRL-style conversational rows
/// into text: a prompt (with the generation prompt), a conversation cut into the spans the loss
/// skips and the assistant turns it trains on.
public struct ChatFormatter: Sendable {
    /// The parsed template, or why it could not be parsed (raised when a conversation needs it, so
    /// that plain-text runs are not stopped by a template they never use).
    public let template: ChatTemplate?
    public let problem: String?
    public let bosToken: String?, eosToken: String?

    public init(source: String, origin: String, bosToken: String?, eosToken: String?) {
        do {
            template = try ChatTemplate(source)
            problem = nil
        } catch {
            template = nil
            problem = "\(origin): \(error)"
        }
        self.bosToken = bosToken
        self.eosToken = eosToken
    }

    public func render(_ messages: [JinjaValue], addGenerationPrompt: Bool, variables: [String: JinjaValue] = [:])
        throws -> String
    {
        guard let template else { throw TokenizerError(problem ?? "no chat template") }
        return try template.render(
            messages: .array(messages), addGenerationPrompt: addGenerationPrompt, bosToken: bosToken,
            eosToken: eosToken, variables: variables)
    }

    /// The conversation as (text, trained) spans: each assistant message is the text its turn adds
    /// after the generation prompt of the turns before it (TRL's assistant-only loss); the rest is
    /// context. Throws when the template is not prefix-preserving (a later turn re-renders an
    /// earlier one), since the spans would then not add up to the rendered conversation.
    public func spans(_ messages: [JinjaValue], variables: [String: JinjaValue] = [:]) throws -> [(
        text: String, trained: Bool
    )] {
        var spans: [(String, Bool)] = []
        var done = ""
        for (i, message) in messages.enumerated() {
            guard case .object(let m) = message, m["role"]?.rendered == "assistant" else { continue }
            let prompt = try render(Array(messages[..<i]), addGenerationPrompt: true, variables: variables)
            let full = try render(Array(messages[...i]), addGenerationPrompt: false, variables: variables)
            guard Self.hasPrefix(prompt, done), Self.hasPrefix(full, prompt) else {
                throw TokenizerError(
                    "the chat template re-renders earlier turns when turn \(i + 1) is added; assistant-only loss "
                        + "needs a prefix-preserving template"
                )
            }
            spans.append((Self.dropPrefix(prompt, done), false))
            spans.append((Self.dropPrefix(full, prompt), true))
            done = full
        }
        let all = try render(messages, addGenerationPrompt: false, variables: variables)
        guard Self.hasPrefix(all, done) else {
            throw TokenizerError("the chat template renders the whole conversation differently from its turns")
        }
        let rest = Self.dropPrefix(all, done)
        if !rest.isEmpty { spans.append((rest, false)) }
        return spans
    }

    /// Prefix tests by code points (Swift's hasPrefix and Character counts follow grapheme clusters,
    /// which a turn starting with a combining mark or "\n" after "\r" would split differently).
    public static func hasPrefix(_ text: String, _ prefix: String) -> Bool {
        text.unicodeScalars.starts(with: prefix.unicodeScalars)
    }
    public static func dropPrefix(_ text: String, _ prefix: String) -> String {
        String(String.UnicodeScalarView(text.unicodeScalars.dropFirst(prefix.unicodeScalars.count)))
    }
}
