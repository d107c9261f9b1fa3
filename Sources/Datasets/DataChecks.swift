import Foundation

/// An example longer than `train.max_length`: an error naming its file and line, or with
/// `data.skip_too_long` one dropped at load and counted (issue 15: found before step 1, never
/// partway through a run, where every resume would meet it again).
public struct TooLongExample: Error, CustomStringConvertible, Equatable {
    public let source: String
    public let tokens: Int
    public let maxLength: Int
    /// What the count includes, when it is more than the example (e.g. "with ppo.max_new_tokens 64").
    public let note: String
    public init(source: String, tokens: Int, maxLength: Int, note: String = "") {
        self.source = source
        self.tokens = tokens
        self.maxLength = maxLength
        self.note = note
    }
    public var description: String {
        "\(source): \(tokens) tokens\(note.isEmpty ? "" : " (\(note))") exceed train.max_length (\(maxLength)); "
            + "shorten or drop it, raise train.max_length, or set data.skip_too_long: true"
    }
}

/// What loading the data noticed that is not an error by itself, reported at load with counts
/// and places: lines read with U+FFFD in place of invalid UTF-8 (`data.allow_replacement`),
/// preference pairs whose responses are the same (they train nothing), examples skipped as too
/// long (`data.skip_too_long`), demonstrations with an empty completion.
public final class DataNotes: @unchecked Sendable {
    /// Read invalid UTF-8 with replacement characters instead of stopping at it.
    public let allowReplacement: Bool
    /// Drop examples longer than train.max_length instead of stopping at the first.
    public let skipTooLong: Bool
    public private(set) var replaced: [String] = []
    public private(set) var identicalResponses: [String] = []
    public private(set) var skippedTooLong: [String] = []
    public private(set) var emptyCompletions: [String] = []
    private let lock = NSLock()

    /// How the dataset names its fields (data.*_key).
    public let fields: DataFields

    public init(allowReplacement: Bool = false, skipTooLong: Bool = false, fields: DataFields = .standard) {
        self.fields = fields
        self.allowReplacement = allowReplacement
        self.skipTooLong = skipTooLong
    }

    func noteReplaced(_ place: String) { lock.withLock { replaced.append(place) } }
    func noteIdentical(_ place: String) { lock.withLock { identicalResponses.append(place) } }
    func noteEmpty(_ place: String) { lock.withLock { emptyCompletions.append(place) } }

    /// `transform` of every example, the too-long ones skipped and counted when `skipTooLong`.
    public func keepingFitting<Example, Output>(_ examples: [Example], _ transform: (Example) throws -> Output) throws
        -> [Output]
    {
        var kept: [Output] = []
        for example in examples {
            do { kept.append(try transform(example)) } catch let tooLong as TooLongExample where skipTooLong {
                lock.withLock { skippedTooLong.append(tooLong.source) }
            }
        }
        if kept.isEmpty && !examples.isEmpty {
            throw DatasetError(
                "data.skip_too_long skipped every example (\(examples.count)): all are longer than train.max_length")
        }
        return kept
    }

    /// One line per kind of finding, with the count and the first places; empty when nothing was found.
    public var report: [String] {
        func places(_ list: [String]) -> String {
            list.prefix(5).joined(separator: ", ") + (list.count > 5 ? ", …" : "")
        }
        var lines: [String] = []
        if !replaced.isEmpty {
            lines.append(
                "data.allow_replacement: \(replaced.count) line(s) had invalid UTF-8, read with U+FFFD in its place "
                    + "(\(places(replaced)))"
            )
        }
        if !identicalResponses.isEmpty {
            lines.append(
                "warning: \(identicalResponses.count) preference pair(s) have identical responses and train nothing "
                    + "(\(places(identicalResponses)))"
            )
        }
        if !emptyCompletions.isEmpty {
            lines.append(
                "warning: \(emptyCompletions.count) demonstration(s) have an empty completion and train only the "
                    + "end-of-sequence token (\(places(emptyCompletions)))"
            )
        }
        if !skippedTooLong.isEmpty {
            lines.append(
                "data.skip_too_long: skipped \(skippedTooLong.count) example(s) longer than train.max_length "
                    + "(\(places(skippedTooLong)))"
            )
        }
        return lines
    }
}
