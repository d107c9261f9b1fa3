import Foundation

/// What is sent to an external reward (a command or an HTTP endpoint) for one batch, and how its
/// reply is read (docs/architecture.md §5). One JSON object per batch of B responses:
///
///     {"batch": n, "iteration": i,
///      "prompts": [B], "completions": [B],          // TRL's reward_funcs arguments
///      "answer": [B], "task": [B], "<field>": [B],  // the dataset's columns, as TRL passes them (null where absent)
///      "query": [B], "labels": [B]}                 // OpenRLHF's remote reward model: prompt + completion, answer
///
/// The reply is {"rewards": [B numbers]}, or {"error": "…"} when the function failed.
package struct ExternalRewardRequest {
    /// Keys of the request that are not dataset columns; a dataset field with one of these names
    /// would be overwritten, so such a field is refused at load.
    package static let reservedKeys: Set<String> = [
        "batch", "iteration", "prompts", "completions", "query", "labels", "answer", "task",
    ]

    package var batch: Int, iteration: Int
    package var prompts: [String], completions: [String]
    package var answers: [String?], tasks: [String]
    /// The other fields of each response's dataset row, as JSON text (nil: the row has no such field).
    package var extras: [String: [String?]] = [:]

    package init(
        batch: Int, iteration: Int, prompts: [String], completions: [String], answers: [String?], tasks: [String]
    ) {
        self.batch = batch
        self.iteration = iteration
        self.prompts = prompts
        self.completions = completions
        self.answers = answers
        self.tasks = tasks
    }

    /// The request's JSON text on one line (keys sorted; the extras' own JSON spliced in as it was read).
    package func json() -> String {
        var fields: [(String, String)] = [
            ("batch", "\(batch)"), ("iteration", "\(iteration)"),
            ("prompts", Self.strings(prompts)), ("completions", Self.strings(completions)),
            ("answer", Self.strings(answers)), ("task", Self.strings(tasks)),
            ("query", Self.strings(zip(prompts, completions).map { $0 + $1 })), ("labels", Self.strings(answers)),
        ]
        for (key, values) in extras {
            fields.append((key, "[" + values.map { $0 ?? "null" }.joined(separator: ",") + "]"))
        }
        let members = fields.sorted { $0.0 < $1.0 }.map { Self.string($0.0) + ":" + $0.1 }
        return "{" + members.joined(separator: ",") + "}"
    }

    static func strings(_ values: [String?]) -> String {
        "[" + values.map { $0.map(string) ?? "null" }.joined(separator: ",") + "]"
    }

    static func strings(_ values: [String]) -> String { strings(values.map(Optional.some)) }

    /// One JSON string literal (JSONSerialization escapes it; a fragment, so no surrounding array).
    static func string(_ s: String) -> String {
        let data =
            (try? JSONSerialization.data(withJSONObject: s, options: [.fragmentsAllowed, .withoutEscapingSlashes]))
        return data.map { String(decoding: $0, as: UTF8.self) } ?? "\"\""
    }
}

/// A reply that cannot be used: the message names the batch and quotes the reply.
package struct ExternalRewardError: Error, CustomStringConvertible {
    package let description: String
    package init(_ description: String) { self.description = description }
}

package enum ExternalRewardReply {
    /// The B rewards of `reply` (the text of one JSON object), or an error naming `batch`, what is
    /// wrong and the reply itself (cut to 300 characters).
    package static func rewards(_ reply: String, count: Int, batch: Int, from source: String) throws -> [Double] {
        func refuse(_ problem: String) -> ExternalRewardError {
            let shown = reply.count > 300 ? String(reply.prefix(300)) + "…" : reply
            return ExternalRewardError(
                "external reward (\(source)), batch \(batch): \(problem); the reply was: \(shown)")
        }
        guard let object = (try? JSONSerialization.jsonObject(with: Data(reply.utf8))) as? [String: Any] else {
            // Python's json.dumps writes NaN and Infinity, which JSON has no words for.
            let nonFinite = ["NaN", "Infinity"].contains { reply.contains($0) }
            throw refuse(nonFinite ? "not JSON (NaN and Infinity are not JSON numbers)" : "not a JSON object")
        }
        if let message = object["error"], !(message is NSNull) {
            // A traceback ends with the exception: keep its end.
            let text = (message as? String) ?? "\(message)"
            throw ExternalRewardError(
                "external reward (\(source)), batch \(batch): the reward function failed:\n\(text.suffix(2000))")
        }
        guard let list = object["rewards"] as? [Any] else { throw refuse("no list 'rewards'") }
        guard list.count == count else { throw refuse("\(list.count) rewards for \(count) completions") }
        return try list.enumerated().map { i, value in
            // JSONSerialization gives NSNumber for numbers and booleans alike (and `is Bool` holds for
            // 0 and 1); a boolean is the one whose type code is a char.
            guard let number = value as? NSNumber, String(cString: number.objCType) != "c" else {
                throw refuse("reward \(i + 1) is not a number")
            }
            let v = number.doubleValue
            guard v.isFinite else { throw refuse("reward \(i + 1) is \(v)") }
            return v
        }
    }
}
