import Config
import Foundation
import Tokenizers

/// Stop strings (`ppo.stop`; vLLM's and TRL's `stop`): a response ends after the token that
/// completes the first of them, and its text, as rewards read it, ends before it. Found after
/// sampling, which gives the same tokens as stopping there: a sequence's draws do not depend on the
/// tokens after them.
public struct StopStrings: Sendable, Equatable {
    public let strings: [String]

    /// `text`: one stop string, or a JSON list of them (`'["</answer>", "\n\n"]'`); "" for none.
    public init(parsing text: String) throws {
        guard text.hasPrefix("[") else {
            strings = text.isEmpty ? [] : [text]
            return
        }
        guard let list = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [Any],
            list.allSatisfy({ $0 is String })
        else { throw ConfigError("ppo.stop '\(text)' is neither one string nor a JSON list of strings") }
        strings = list.compactMap { $0 as? String }
        guard !strings.contains("") else { throw ConfigError("ppo.stop: an empty stop string would stop at once") }
    }

    public var isEmpty: Bool { strings.isEmpty }

    /// The response cut after the token that completes a stop string: how many tokens stay, and the
    /// text up to the stop string; nil when no stop string occurs.
    public func cut(_ tokens: [Int32], tokenizer: any Tokenizer) -> (count: Int, text: String)? {
        func firstStop(_ text: String) -> Range<String.Index>? {
            strings.compactMap { text.range(of: $0) }.min { $0.lowerBound < $1.lowerBound }
        }
        guard !strings.isEmpty, firstStop(tokenizer.decode(tokens, skipSpecialTokens: true)) != nil else { return nil }
        // The shortest prefix whose text holds a stop string (longer prefixes hold it too).
        var low = 1, high = tokens.count
        while low < high {
            let middle = (low + high) / 2
            if firstStop(tokenizer.decode(Array(tokens[..<middle]), skipSpecialTokens: true)) != nil {
                high = middle
            } else {
                low = middle + 1
            }
        }
        let text = tokenizer.decode(Array(tokens[..<low]), skipSpecialTokens: true)
        return (low, String(text[..<(firstStop(text)?.lowerBound ?? text.endIndex)]))
    }
}
