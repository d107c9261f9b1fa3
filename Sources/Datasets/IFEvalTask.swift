import Alignment
import Foundation
import Kernels

/// The built-in instruction-following task (IFEval-style, Zhou et al. 2023): "Write a short note
/// about {topic}." followed by one or two verifiable instructions. Held out for evaluation: topics
/// never trained on, and pairs of constraint kinds never trained on together, so the score
/// measures following instructions rather than remembering prompts. The reward is the share of a
/// prompt's constraints a reply keeps (`InstructionVerifier`); prompts are user turns, rendered
/// by the model's chat template.
public struct IFEvalTask: Sendable {
    public struct Prompt: Sendable, Equatable {
        public let topic: String
        public let constraints: [InstructionConstraint]
        /// The user message.
        public var text: String {
            (["Write a short note about \(topic)."] + constraints.map(\.instruction)).joined(separator: " ")
        }
        /// The constraints' specs, ";"-joined: the prompt's answer field, which the verifier reads.
        public var spec: String { constraints.map(\.spec).joined(separator: ";") }
    }

    public static let trainTopics = [
        "the ocean", "coffee", "trains", "gardens", "music", "winter", "libraries", "bicycles", "mountains", "bread",
        "rain", "chess",
        "bees", "lighthouses", "tea", "clocks", "rivers", "kites", "museums", "volcanoes", "owls", "markets", "bridges",
        "snow",
        "deserts", "painting", "maps", "candles", "forests", "the moon", "soup", "sailing", "stamps", "pianos",
        "islands", "autumn",
        "cheese", "robots", "wolves", "festivals",
    ]
    public static let evalTopics = [
        "whales", "the harbour", "pottery", "thunderstorms", "bakeries", "astronomy", "tulips", "castles", "the subway",
        "honey",
        "origami", "glaciers", "violins", "meadows", "lanterns", "penguins",
    ]
    static let keywords = ["light", "water", "time", "home", "green", "quiet"]
    static let phrases = [
        "Is there anything else I can help with?", "That is all for today.", "Thank you for reading.",
    ]
    static let startWords = ["Today", "Imagine", "Yes", "Here"]
    static let jsonKeys = ["note", "summary", "title"]

    /// The `task` field of the task's prompts, which routes them to the instruction verifier.
    public static let taskName = "ifeval"

    public let seed: UInt64
    public let train: [Prompt], eval: [Prompt]
    /// The kind pairs trained on together, and those kept for evaluation.
    public let trainPairs: [[String]], evalPairs: [[String]]

    /// `trainSize` prompts drawn from the training topics (one constraint or a training pair),
    /// `evalSize` from the held-out topics (half single constraints, half held-out pairs).
    public init(seed: UInt64, trainSize: Int = 2000, evalSize: Int = 200) {
        self.seed = seed
        var rng = RNG(seed: seed &+ 0x1F_E7A1)
        let kinds = InstructionConstraint.kinds
        var pairs = kinds.indices.flatMap { i in kinds.indices.filter { $0 > i }.map { [kinds[i], kinds[$0]] } }
            .filter { !InstructionConstraint.conflict($0[0], $0[1]) }
        shuffle(&pairs, &rng)
        let heldOut = pairs.count / 4
        evalPairs = Array(pairs.prefix(heldOut)).sorted { $0.joined() < $1.joined() }
        trainPairs = Array(pairs.dropFirst(heldOut)).sorted { $0.joined() < $1.joined() }
        func draw(_ topics: [String], _ pairs: [[String]], count: Int, rng: inout RNG) -> [Prompt] {
            (0..<max(count, 0)).map { _ in
                let topic = topics[Int(rng.next() % UInt64(topics.count))]
                let chosen =
                    rng.next() % 2 == 0
                    ? [kinds[Int(rng.next() % UInt64(kinds.count))]] : pairs[Int(rng.next() % UInt64(pairs.count))]
                return Prompt(topic: topic, constraints: chosen.map { Self.constraint(kind: $0, rng: &rng) })
            }
        }
        train = draw(Self.trainTopics, trainPairs, count: trainSize, rng: &rng)
        eval = draw(Self.evalTopics, evalPairs, count: evalSize, rng: &rng)
    }

    /// A constraint of `kind` with drawn parameters.
    static func constraint(kind: String, rng: inout RNG) -> InstructionConstraint {
        func pick<T>(_ list: [T]) -> T { list[Int(rng.next() % UInt64(list.count))] }
        switch kind {
        case "lowercase": return .lowercase
        case "no_commas": return .noCommas
        case "all_capitals": return .allCapitals
        case "quoted": return .quoted
        case "max_words": return .maxWords(pick([20, 30, 40]))
        case "min_words": return .minWords(pick([25, 40]))
        case "bullets": return .bullets(pick([2, 3, 4]))
        case "keyword": return .keyword(pick(keywords), times: pick([2, 3]))
        case "end_phrase": return .endPhrase(pick(phrases))
        case "start_word": return .startWord(pick(startWords))
        default: return .jsonKey(pick(jsonKeys))
        }
    }

    /// A prompt as a conversational JSONL row: the user turn, the constraint specs as its answer.
    public static func row(_ p: Prompt) -> [String: Any] {
        ["prompt": [["role": "user", "content": p.text]], "answer": p.spec, "task": taskName]
    }

    /// Writes prompts.jsonl (training) and eval.jsonl (held out) into `directory`.
    public func write(to directory: String) throws -> [String] {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let files = [("prompts.jsonl", train), ("eval.jsonl", eval)].map {
            ((directory as NSString).appendingPathComponent($0.0), $0.1)
        }
        for (path, prompts) in files { try JSONL.write(prompts.map(Self.row), to: path) }
        return files.map(\.0)
    }
}
