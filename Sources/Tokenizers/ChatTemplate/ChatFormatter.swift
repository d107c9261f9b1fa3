import Foundation

/// A tokenizer's chat template with its special tokens, turning TRL-style conversational rows
/// into text: a prompt (with the generation prompt), a conversation cut into the spans the loss
/// skips and the assistant turns it trains on.
public struct ChatFormatter: Sendable {
    public let template: ChatTemplate
    public let bosToken: String?, eosToken: String?

    public init(template: ChatTemplate, bosToken: String?, eosToken: String?) {
        self.template = template; self.bosToken = bosToken; self.eosToken = eosToken
    }

    public func render(_ messages: [JinjaValue], addGenerationPrompt: Bool, variables: [String: JinjaValue] = [:]) throws -> String {
        try template.render(messages: .array(messages), addGenerationPrompt: addGenerationPrompt, bosToken: bosToken, eosToken: eosToken, variables: variables)
    }

    /// The conversation as (text, trained) spans: each assistant message is the text its turn adds
    /// after the generation prompt of the turns before it (TRL's assistant-only loss); the rest is
    /// context. Throws when the template is not prefix-preserving (a later turn re-renders an
    /// earlier one), since the spans would then not add up to the rendered conversation.
    public func spans(_ messages: [JinjaValue], variables: [String: JinjaValue] = [:]) throws -> [(text: String, trained: Bool)] {
        var spans: [(String, Bool)] = []
        var done = ""
        for (i, message) in messages.enumerated() {
            guard case .object(let m) = message, m["role"]?.rendered == "assistant" else { continue }
            let prompt = try render(Array(messages[..<i]), addGenerationPrompt: true, variables: variables)
            let full = try render(Array(messages[...i]), addGenerationPrompt: false, variables: variables)
            guard prompt.hasPrefix(done), full.hasPrefix(prompt) else {
                throw TokenizerError("the chat template re-renders earlier turns when turn \(i + 1) is added; assistant-only loss needs a prefix-preserving template")
            }
            spans.append((String(prompt.dropFirst(done.count)), false))
            spans.append((String(full.dropFirst(prompt.count)), true))
            done = full
        }
        let all = try render(messages, addGenerationPrompt: false, variables: variables)
        guard all.hasPrefix(done) else { throw TokenizerError("the chat template renders the whole conversation differently from its turns") }
        if all.count > done.count { spans.append((String(all.dropFirst(done.count)), false)) }
        return spans
    }
}
