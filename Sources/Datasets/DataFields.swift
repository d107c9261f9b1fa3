import Foundation
import Tokenizers

/// How a dataset names its fields (`data.prompt_key`, … — TRL's dataset_text_field, OpenRLHF's
/// input_key): each of our field names → the dataset's. Rows are read through it, so that the
/// readers see our names and their errors name the dataset's. ShareGPT conversations
/// (`conversations` of {"from", "value"}) become TRL's messages ({"role", "content"}).
public struct DataFields: Sendable, Equatable {
    /// Our field names that a dataset may name otherwise.
    public static let mappable = ["prompt", "completion", "text", "messages", "chosen", "rejected", "answer"]
    /// Our name → the dataset's, for the names it changes.
    public let renamed: [String: String]

    public init(_ names: [String: String] = [:]) { renamed = names.filter { $0.key != $0.value } }

    public static let standard = DataFields()

    /// The dataset's name of our field `name`, for errors: "question (data.prompt_key)".
    public func shown(_ name: String) -> String {
        guard let theirs = renamed[name] else { return "'\(name)'" }
        return "'\(theirs)' (data.\(name)_key)"
    }

    /// ShareGPT's speakers as TRL's roles.
    static let shareGPTRoles = [
        "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "model": "assistant",
        "chatgpt": "assistant", "system": "system",
    ]

    /// Whether a row needs rewriting before the readers see it.
    func rewrites(_ object: [String: Any]) -> Bool {
        !renamed.isEmpty || Self.conversationOnly(object.keys.contains)
            || ["messages", "prompt", "chosen", "rejected"].contains { Self.isShareGPT(object[$0]) }
    }

    /// A ShareGPT row: `conversations` and none of our text fields (which would say otherwise).
    static func conversationOnly(_ has: (String) -> Bool) -> Bool {
        has("conversations") && !["messages", "prompt", "completion", "text"].contains(where: has)
    }

    static func isShareGPT(_ value: Any?) -> Bool {
        guard let list = value as? [[String: Any]], let first = list.first else { return false }
        return first["from"] != nil && first["role"] == nil
    }

    /// The row `text` (its keys in order) with our names and TRL's messages.
    func rewrite(_ text: String, at place: String) throws -> String {
        guard case .object(var row) = try parse(text, at: place) else {
            throw DatasetError("\(place): not a JSON object")
        }
        // Every value taken out first, then put under our names (so that names may swap).
        let moved = renamed.sorted { $0.key < $1.key }.compactMap { ours, theirs in
            row[theirs].map { (ours, theirs, $0) }
        }
        for (_, theirs, _) in moved { row[theirs] = nil }
        for (ours, theirs, value) in moved {
            if row[ours] != nil {
                throw DatasetError(
                    "\(place): the row has both '\(theirs)' (data.\(ours)_key) and '\(ours)'; drop one or map it")
            }
            row[ours] = value
        }
        if renamed["messages"] == nil, Self.conversationOnly({ row[$0] != nil }),
            let conversation = row["conversations"]
        {
            row["conversations"] = nil
            row["messages"] = conversation
        }
        for field in ["messages", "prompt", "chosen", "rejected"] {
            if case .array(let turns)? = row[field] {
                row[field] = .array(try shareGPT(turns, field: field, at: place))
            }
        }
        return try ChatTemplate.json(.object(row))
    }

    func parse(_ text: String, at place: String) throws -> JinjaValue {
        do { return try ChatTemplate.value(json: text) } catch { throw DatasetError("\(place): \(error)") }
    }

    /// {"from", "value"} turns as {"role", "content"}; other turns as they are.
    func shareGPT(_ turns: [JinjaValue], field: String, at place: String) throws -> [JinjaValue] {
        try turns.enumerated().map { k, turn in
            guard case .object(let t) = turn, case .string(let from)? = t["from"], t["role"] == nil else { return turn }
            guard let role = Self.shareGPTRoles[from.lowercased()] else {
                throw DatasetError(
                    "\(place): \(field)[\(k)].from '\(from)' is not a ShareGPT speaker we know (human, gpt, system)")
            }
            guard let value = t["value"] else {
                throw DatasetError("\(place): \(field)[\(k)] has 'from' but no 'value'")
            }
            return .object(JinjaObject([("role", .string(role)), ("content", value)]))
        }
    }
}
