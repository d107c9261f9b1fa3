import Foundation
import Tokenizers

/// JSONL datasets (docs/architecture.md §6). Every line must parse; a bad line is an error naming the file,
/// the line and the field — never skipped. Fields not listed here are ignored.
public struct DatasetError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A demonstration: the loss counts `completion` only. A {"text"} line is a completion with an
/// empty prompt (every token counts). A conversation ({"messages"}) keeps its rendered spans, the
/// loss on the assistant turns; prompt and completion are then its last assistant turn and what
/// comes before it (for evaluation).
public struct SFTExample: Equatable, Sendable {
    public var prompt: String
    public var completion: String
    /// The reference answer for exact-match evaluation, when the data has one.
    public var answer: String?
    public var source: String  // file:line, for errors raised later (e.g. too long)
    public var spans: [TextSpan]?
    public init(
        prompt: String, completion: String, answer: String? = nil, source: String = "", spans: [TextSpan]? = nil
    ) {
        self.prompt = prompt
        self.completion = completion
        self.answer = answer
        self.source = source
        self.spans = spans
    }
}

/// A piece of a rendered conversation and whether the loss counts it.
public struct TextSpan: Equatable, Sendable {
    public var text: String
    public var trained: Bool
    public init(_ text: String, trained: Bool) {
        self.text = text
        self.trained = trained
    }
}

/// A preference pair, or a ranking of K ≥ 2 responses (`ranked`, best first; chosen and
/// rejected are then its first and last).
public struct PreferenceExample: Equatable, Sendable {
    public var prompt: String, chosen: String, rejected: String
    public var margin: Double?
    public var openEnded: Bool?
    public var task: String?
    public var source: String
    public var ranked: [String]? = nil
    /// Rendered by a chat template, which writes any BOS itself (no prefix tokens are added).
    public var chatRendered = false
    /// Every response, best first.
    public var responses: [String] { ranked ?? [chosen, rejected] }
    /// The C(K, 2) (better, worse) pairs of a ranking; the pair itself otherwise.
    public var pairs: [PreferenceExample] {
        guard let ranked, ranked.count > 2 else { return [self] }
        return (0..<ranked.count).flatMap { i in
            ((i + 1)..<ranked.count).map { j in
                PreferenceExample(
                    prompt: prompt, chosen: ranked[i], rejected: ranked[j], margin: nil, openEnded: openEnded,
                    task: task, source: source,
                    chatRendered: chatRendered)
            }
        }
    }
}

public struct PromptExample: Equatable, Sendable {
    public var prompt: String
    public var answer: String?
    public var task: String?
    public var source: String
    /// Rendered by a chat template, which writes any BOS itself.
    public var chatRendered = false
    /// The row's other fields (field → its JSON text), passed to an external reward.
    public var extras: [String: String] = [:]
}

public enum JSONL {
    /// (line number, object) for every non-blank line (a JSON array's: element number, element).
    public static func objects(path: String) throws -> [(line: Int, object: [String: Any])] {
        try rows(path: path).map { ($0.line, $0.object) }
    }

    /// The same for bytes already read; `name` stands for the file in errors.
    public static func objects(data: Data, name path: String) throws -> [(line: Int, object: [String: Any])] {
        try rows(data: data, name: path).map { ($0.line, $0.object) }
    }

    /// One row of a data file: where it is ("file:line", or "file: element k" of a JSON array), its
    /// object and its text (read again, in key order, where order matters: messages).
    struct Row {
        let line: Int, place: String, object: [String: Any], text: String
    }

    /// Every row of a JSONL file (non-blank lines) or of a file holding one JSON array of objects
    /// (as Hugging Face datasets export), under our field names (`notes.fields`).
    static func rows(path: String, notes: DataNotes? = nil) throws -> [Row] {
        if path == "-" {
            return try rows(data: FileHandle.standardInput.readDataToEndOfFile(), name: "<stdin>", notes: notes)
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DatasetError("\(path): cannot read (missing?)")
        }
        return try rows(data: data, name: path, notes: notes)
    }

    static func rows(data: Data, name path: String, notes: DataNotes? = nil) throws -> [Row] {
        let all = try text(data, name: path, notes: notes), fields = notes?.fields ?? .standard
        if all.first(where: { !$0.isWhitespace }) == "[" { return try arrayRows(all, name: path, fields: fields) }
        var result: [Row] = []
        for (index, line) in lines(all).enumerated() {
            if line.allSatisfy(\.isWhitespace) { continue }
            let place = "\(path):\(index + 1)"
            guard let object = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] else {
                throw DatasetError("\(place): not a JSON object")
            }
            result.append(try row(index + 1, place: place, object: object, text: String(line), fields: fields))
        }
        return result
    }

    /// The elements of a file holding one JSON array of objects.
    static func arrayRows(_ text: String, name path: String, fields: DataFields) throws -> [Row] {
        guard case .array(let elements) = try fields.parse(text, at: path) else {
            throw DatasetError("\(path): not a JSON array of objects")
        }
        return try elements.enumerated().map { k, element in
            let place = "\(path): element \(k + 1)"
            let line = try ChatTemplate.json(element)
            guard case .object = element,
                let object = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
            else { throw DatasetError("\(place): not a JSON object") }
            return try row(k + 1, place: place, object: object, text: line, fields: fields)
        }
    }

    /// The row under our field names.
    static func row(_ line: Int, place: String, object: [String: Any], text: String, fields: DataFields) throws -> Row {
        guard fields.rewrites(object) else { return Row(line: line, place: place, object: object, text: text) }
        let rewritten = try fields.rewrite(text, at: place)
        guard let mapped = (try? JSONSerialization.jsonObject(with: Data(rewritten.utf8))) as? [String: Any] else {
            throw DatasetError("\(place): not a JSON object")
        }
        return Row(line: line, place: place, object: mapped, text: rewritten)
    }

    /// The string `field` of `o`; errors name the field as the dataset does (`fields`).
    public static func string(
        _ o: [String: Any], _ field: String, at place: String, required: Bool = true, fields: DataFields = .standard
    ) throws -> String? {
        guard let value = o[field], !(value is NSNull) else {
            if required { throw DatasetError("\(place): missing field \(fields.shown(field))") }
            return nil
        }
        guard let s = value as? String else {
            throw DatasetError("\(place): field \(fields.shown(field)) must be a string")
        }
        return s
    }

    /// SFT rows: {"prompt", "completion"}, {"text"}, or TRL's conversational {"messages"} (the
    /// loss on assistant turns), which needs the tokenizer's chat template `chat`.
    public static func sft(path: String, chat: ChatFormatter? = nil, notes: DataNotes? = nil) throws -> [SFTExample] {
        let f = notes?.fields ?? .standard
        let examples = try rows(path: path, notes: notes).map { row -> SFTExample in
            let (place, o, text) = (row.place, row.object, row.text)
            if o["messages"] != nil {
                let (messages, variables) = try Conversations.messages(text, field: "messages", at: place, chat: chat)
                return try Conversations.sftExample(
                    messages, variables: variables, chat: chat!,
                    answer: try string(o, "answer", at: place, required: false, fields: f), at: place)
            }
            if o["text"] != nil {
                guard o["prompt"] == nil && o["completion"] == nil else {
                    throw DatasetError(
                        "\(place): give either \(f.shown("text")) or \(f.shown("prompt")) + \(f.shown("completion")), "
                            + "not both")
                }
                return SFTExample(prompt: "", completion: try string(o, "text", at: place, fields: f)!, source: place)
            }
            guard o["prompt"] != nil || o["completion"] != nil else {
                throw DatasetError(
                    "\(place): missing field \(f.shown("prompt")) + \(f.shown("completion")) (or \(f.shown("text")))")
            }
            return SFTExample(
                prompt: try string(o, "prompt", at: place, fields: f)!,
                completion: try string(o, "completion", at: place, fields: f)!,
                answer: try string(o, "answer", at: place, required: false, fields: f), source: place)
        }
        guard !examples.isEmpty else { throw DatasetError("\(path): no examples") }
        for e in examples where e.spans == nil && e.completion.isEmpty { notes?.noteEmpty(e.source) }
        return examples
    }

    /// Preference rows; TRL's conversational form ({"prompt": [messages], "chosen": [messages],
    /// "rejected": [messages]}) is rendered with the tokenizer's chat template `chat`.
    public static func preferences(path: String, chat: ChatFormatter? = nil, notes: DataNotes? = nil) throws
        -> [PreferenceExample]
    {
        let f = notes?.fields ?? .standard
        let examples = try rows(path: path, notes: notes).map { row in
            let (place, o, text) = (row.place, row.object, row.text)
            if o["prompt"] is [Any] { return try Conversations.preference(text, object: o, chat: chat, at: place) }
            var margin: Double?
            if let m = o["margin"], !(m is NSNull) {
                guard let v = m as? Double else { throw DatasetError("\(place): field 'margin' must be a number") }
                margin = v
            }
            var openEnded: Bool?
            if let v = o["open_ended"], !(v is NSNull) {
                guard let b = v as? Bool else {
                    throw DatasetError("\(place): field 'open_ended' must be true or false")
                }
                openEnded = b
            }
            let task = try string(o, "task", at: place, required: false, fields: f),
                prompt = try string(o, "prompt", at: place, fields: f)!
            // A ranking: {"prompt", "ranked": [best, …, worst]} (InstructGPT's K-wise data).
            if let value = o["ranked"], !(value is NSNull) {
                guard o["chosen"] == nil && o["rejected"] == nil else {
                    throw DatasetError(
                        "\(place): give either 'ranked' or \(f.shown("chosen")) + \(f.shown("rejected")), not both")
                }
                guard let ranked = value as? [String], ranked.count >= 2 else {
                    throw DatasetError("\(place): field 'ranked' must be a list of at least 2 strings, best first")
                }
                guard margin == nil || ranked.count == 2 else {
                    throw DatasetError("\(place): 'margin' applies to pairs, not to a ranking of \(ranked.count)")
                }
                return PreferenceExample(
                    prompt: prompt, chosen: ranked[0], rejected: ranked[ranked.count - 1], margin: margin,
                    openEnded: openEnded,
                    task: task, source: place, ranked: ranked)
            }
            return PreferenceExample(
                prompt: prompt, chosen: try string(o, "chosen", at: place, fields: f)!,
                rejected: try string(o, "rejected", at: place, fields: f)!, margin: margin, openEnded: openEnded,
                task: task, source: place)
        }
        // A pair whose responses are the same has no preference in it: its loss gradient is zero.
        for e in examples where Set(e.responses).count < e.responses.count { notes?.noteIdentical(e.source) }
        return examples
    }

    /// RL prompts: {"prompt": text} or TRL's {"prompt": [messages]} (rendered with the generation prompt).
    public static func prompts(path: String, chat: ChatFormatter? = nil, notes: DataNotes? = nil) throws
        -> [PromptExample]
    {
        let f = notes?.fields ?? .standard
        return try rows(path: path, notes: notes).map { row in
            let (place, o, text) = (row.place, row.object, row.text)
            var prompt: String, rendered = false
            if o["prompt"] is [Any] {
                rendered = true
                let (messages, variables) = try Conversations.messages(text, field: "prompt", at: place, chat: chat)
                do { prompt = try chat!.render(messages, addGenerationPrompt: true, variables: variables) } catch {
                    throw DatasetError("\(place): \(error)")
                }
            } else {
                prompt = try string(o, "prompt", at: place, fields: f)!
            }
            return PromptExample(
                prompt: prompt, answer: try string(o, "answer", at: place, required: false, fields: f),
                task: try string(o, "task", at: place, required: false, fields: f), source: place,
                chatRendered: rendered,
                extras: try extras(o, except: ["prompt", "answer", "task"], at: place))
        }
    }

    /// Each field of `o` but `known`, as its JSON text.
    static func extras(_ o: [String: Any], except known: Set<String>, at place: String) throws -> [String: String] {
        var fields: [String: String] = [:]
        for (key, value) in o where !known.contains(key) {
            guard
                let data = try? JSONSerialization.data(
                    withJSONObject: value, options: [.fragmentsAllowed, .sortedKeys, .withoutEscapingSlashes])
            else { throw DatasetError("\(place): field '\(key)' cannot be written back as JSON") }
            fields[key] = String(decoding: data, as: UTF8.self)
        }
        return fields
    }

    /// The file's text. Invalid UTF-8 is an error naming the line (it would otherwise become
    /// U+FFFD without a word), unless `notes` allow replacement, which then records the lines.
    static func text(_ data: Data, name path: String, notes: DataNotes?) throws -> String {
        if let valid = String(data: data, encoding: .utf8) { return valid }
        // Line numbers as `lines` counts them: "\r\n" and "\n" both end at a "\n" byte.
        for (i, line) in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).enumerated()
        where String(data: Data(line), encoding: .utf8) == nil {
            guard let notes, notes.allowReplacement else {
                throw DatasetError(
                    "\(path):\(i + 1): invalid UTF-8; convert the file to UTF-8, or set data.allow_replacement: true "
                        + "to read it with U+FFFD in place of the bad bytes"
                )
            }
            notes.noteReplaced("\(path):\(i + 1)")
        }
        return String(decoding: data, as: UTF8.self)
    }

    /// The text's lines, ending in "\n" or "\r\n" (Swift keeps "\r\n" as one Character, so
    /// splitting on "\n" alone would leave a Windows file as a single line).
    public static func lines(_ text: String) -> [Substring] {
        text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" })
    }

    /// Appends objects one per line (keys sorted) to `path`, creating it; a failed write names the file.
    public static func append(_ objects: [[String: Any]], to path: String) throws {
        var text = ""
        for o in objects {
            let data = try JSONSerialization.data(withJSONObject: o, options: [.sortedKeys, .withoutEscapingSlashes])
            text += String(decoding: data, as: UTF8.self) + "\n"
        }
        if !FileManager.default.fileExists(atPath: path) {
            _ = FileManager.default.createFile(atPath: path, contents: nil)
        }
        guard let handle = FileHandle(forWritingAtPath: path) else {
            throw DatasetError("\(path): cannot open for writing")
        }
        defer { try? handle.close() }
        do {
            try handle.seekToEnd()
            try handle.write(contentsOf: Data(text.utf8))
        } catch { throw DatasetError("\(path): cannot write (\(error.localizedDescription))") }
    }

    /// Writes objects one per line (keys sorted), via a temporary file and a rename.
    public static func write(_ objects: [[String: Any]], to path: String) throws {
        var text = ""
        for o in objects {
            let data = try JSONSerialization.data(withJSONObject: o, options: [.sortedKeys, .withoutEscapingSlashes])
            text += String(decoding: data, as: UTF8.self) + "\n"
        }
        try text.write(toFile: path, atomically: true, encoding: .utf8)
    }
}
