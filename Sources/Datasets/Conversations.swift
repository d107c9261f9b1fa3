import Foundation
import Tokenizers

/// TRL's conversational rows (lists of {"role", "content"} messages; content a string or a list of
/// {"type": "text", "text"} parts; `chat_template_kwargs` passed to the template) rendered with
/// the tokenizer's chat template. Errors name the file, the line and the field.
enum Conversations {
    /// The messages of `field` in the row `text`, in key order, checked; and the row's template variables.
    static func messages(_ text: String, field: String, at place: String, chat: ChatFormatter?) throws -> (
        [JinjaValue], [String: JinjaValue]
    ) {
        guard chat != nil else {
            throw DatasetError(
                "\(place): '\(field)' is a conversation, which needs a chat template (the tokenizer has none: "
                    + "tokenizer_config.json chat_template)"
            )
        }
        let row: JinjaValue
        do { row = try ChatTemplate.value(json: text) } catch { throw DatasetError("\(place): \(error)") }
        guard case .object(let object) = row else { throw DatasetError("\(place): not a JSON object") }
        return (try list(object[field], field: field, at: place), variables(object))
    }

    static func list(_ value: JinjaValue?, field: String, at place: String) throws -> [JinjaValue] {
        guard case .array(let messages)? = value, !messages.isEmpty else {
            throw DatasetError("\(place): field '\(field)' must be a non-empty list of messages")
        }
        for (k, message) in messages.enumerated() {
            guard case .object(let m) = message, case .string? = m["role"] else {
                throw DatasetError("\(place): \(field)[\(k)] must be an object with a string 'role'")
            }
            switch m["content"] {
            case .string?, .array?: break
            default: throw DatasetError("\(place): \(field)[\(k)].content must be a string or a list of parts")
            }
        }
        return messages
    }

    static func variables(_ object: JinjaObject) -> [String: JinjaValue] {
        guard case .object(let kwargs)? = object["chat_template_kwargs"] else { return [:] }
        return Dictionary(uniqueKeysWithValues: kwargs.entries.map { ($0.key, $0.value) })
    }

    /// A conversation for SFT: its spans (loss on assistant turns), with its last assistant turn as
    /// the completion after everything before it.
    static func sftExample(
        _ messages: [JinjaValue], variables: [String: JinjaValue], chat: ChatFormatter, answer: String?,
        at place: String
    ) throws -> SFTExample {
        let spans: [(text: String, trained: Bool)]
        do { spans = try chat.spans(messages, variables: variables) } catch { throw DatasetError("\(place): \(error)") }
        guard let last = spans.lastIndex(where: \.trained) else {
            throw DatasetError("\(place): field 'messages' has no assistant turn to train on")
        }
        return SFTExample(
            prompt: spans[..<last].map(\.text).joined(), completion: spans[last].text, answer: answer, source: place,
            spans: spans.map { TextSpan($0.text, trained: $0.trained) })
    }

    /// {"prompt": [messages], "chosen": [messages], "rejected": [messages]}: the prompt rendered with
    /// the generation prompt, each response as the text it adds to the prompt's conversation.
    static func preference(_ text: String, object o: [String: Any], chat: ChatFormatter?, at place: String) throws
        -> PreferenceExample
    {
        let (prompt, variables) = try messages(text, field: "prompt", at: place, chat: chat)
        guard case .object(let row) = try ChatTemplate.value(json: text) else {
            throw DatasetError("\(place): not a JSON object")
        }
        let chat = chat!
        do {
            let promptText = try chat.render(prompt, addGenerationPrompt: true, variables: variables)
            func response(_ field: String) throws -> String {
                let turn = try list(row[field], field: field, at: place)
                let full = try chat.render(prompt + turn, addGenerationPrompt: false, variables: variables)
                guard ChatFormatter.hasPrefix(full, promptText) else {
                    throw DatasetError(
                        "\(place): the chat template renders '\(field)' so that the prompt is not its prefix")
                }
                return ChatFormatter.dropPrefix(full, promptText)
            }
            var margin: Double?
            if let m = o["margin"], !(m is NSNull) {
                guard let v = m as? Double else { throw DatasetError("\(place): field 'margin' must be a number") }
                margin = v
            }
            return PreferenceExample(
                prompt: promptText, chosen: try response("chosen"), rejected: try response("rejected"), margin: margin,
                openEnded: o["open_ended"] as? Bool, task: try JSONL.string(o, "task", at: place, required: false),
                source: place,
                chatRendered: true)
        } catch let error as DatasetError { throw error } catch { throw DatasetError("\(place): \(error)") }
    }
}
