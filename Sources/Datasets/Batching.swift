import Foundation
import Kernels
import Tokenizers

/// One tokenised demonstration: inputs and next-token targets of equal length; a target is −1
/// where no loss is taken (prompt positions).
public struct TokenizedExample: Equatable, Sendable {
    public var tokens: [Int32]
    public var targets: [Int32]
    public var lossTokens: Int { targets.reduce(0) { $0 + ($1 >= 0 ? 1 : 0) } }
}

public enum SFTTokenization {
    /// [BOS] prompt completion [EOS]; the loss covers the completion and EOS. A conversation is its
    /// rendered spans as the template wrote them (no BOS or EOS added), the loss on assistant turns.
    public static func tokenize(_ e: SFTExample, tokenizer: any Tokenizer, maxLength: Int) throws -> TokenizedExample {
        if let spans = e.spans {
            return try tokenize(spans, source: e.source, tokenizer: tokenizer, maxLength: maxLength)
        }
        let prompt = tokenizer.encodeWithPrefix(e.prompt)
        let completion = tokenizer.encode(e.completion) + (tokenizer.eosTokenId.map { [$0] } ?? [])
        let sequence = prompt + completion
        guard sequence.count - 1 <= maxLength else {
            throw TooLongExample(source: e.source, tokens: sequence.count - 1, maxLength: maxLength)
        }
        guard !completion.isEmpty, sequence.count >= 2 else { throw DatasetError("\(e.source): empty completion") }
        let tokens = Array(sequence.dropLast())
        var targets = Array(sequence.dropFirst())
        for i in 0..<max(prompt.count - 1, 0) { targets[i] = -1 }
        return TokenizedExample(tokens: tokens, targets: targets)
    }

    /// The whole rendered text is encoded once (as transformers tokenizes a rendered chat); a span's
    /// tokens are those the text up to its end shares with the whole as a prefix, so a token that
    /// straddles a boundary goes to the later span.
    static func tokenize(_ spans: [TextSpan], source: String, tokenizer: any Tokenizer, maxLength: Int) throws
        -> TokenizedExample
    {
        let sequence = tokenizer.encode(spans.map(\.text).joined())
        var trained = [Bool](repeating: false, count: sequence.count)
        var text = "", start = 0
        for (k, span) in spans.enumerated() {
            text += span.text
            var end = sequence.count
            if k < spans.count - 1 {
                let prefix = tokenizer.encode(text)
                end = 0
                while end < min(prefix.count, sequence.count) && prefix[end] == sequence[end] { end += 1 }
            }
            if span.trained { for t in start..<max(start, end) { trained[t] = true } }
            start = max(start, end)
        }
        guard sequence.count - 1 <= maxLength else {
            throw TooLongExample(source: source, tokens: sequence.count - 1, maxLength: maxLength)
        }
        guard sequence.count >= 2, trained.dropFirst().contains(true) else {
            throw DatasetError("\(source): no assistant tokens to train on")
        }
        // Position t predicts token t+1: its target counts when that token belongs to an assistant turn.
        let targets = (1..<sequence.count).map { trained[$0] ? sequence[$0] : -1 }
        return TokenizedExample(tokens: Array(sequence.dropLast()), targets: targets)
    }

    /// The prompt part alone, for generation.
    public static func promptTokens(_ e: SFTExample, tokenizer: any Tokenizer) -> [Int32] {
        // A conversation's prompt was rendered by the chat template, which writes any BOS itself.
        e.spans != nil ? tokenizer.encode(e.prompt) : tokenizer.encodeWithPrefix(e.prompt)
    }
}

/// A right-padded micro-batch [B, T]: tokens (pad 0) and targets (pad −1).
public struct MicroBatch: Sendable {
    public let batch: Int, length: Int
    public let tokens: [Int32], targets: [Int32]
    public let lossTokens: Int

    public init(_ examples: [TokenizedExample]) {
        batch = examples.count
        length = examples.map(\.tokens.count).max() ?? 0
        var tokens = [Int32](repeating: 0, count: batch * length)
        var targets = [Int32](repeating: -1, count: batch * length)
        for (r, e) in examples.enumerated() {
            for (j, t) in e.tokens.enumerated() { tokens[r * length + j] = t }
            for (j, t) in e.targets.enumerated() { targets[r * length + j] = t }
        }
        self.tokens = tokens
        self.targets = targets
        lossTokens = examples.reduce(0) { $0 + $1.lossTokens }
    }
}

/// The training stream: an endless sequence of examples, epoch after epoch, each epoch in its
/// own seeded order, so no example is dropped and the position is one integer (the cursor:
/// examples consumed), which makes resuming exact.
public struct DataStream: Sendable {
    public let examples: [TokenizedExample]
    public let seed: UInt64

    public init(examples: [TokenizedExample], seed: UInt64) {
        precondition(!examples.isEmpty, "DataStream needs examples")
        self.examples = examples
        self.seed = seed
    }

    func order(epoch: Int) -> [Int] {
        var rng = RNG(seed: seed &+ UInt64(epoch) &* 0x9E37_79B9)
        var order = Array(examples.indices)
        shuffle(&order, &rng)
        return order
    }

    /// The global batch starting at `cursor`, split into micro-batches of `microBatchSize`.
    /// Examples are sorted by length inside the global batch first (length bucketing), so each
    /// micro-batch pads little; the split is the same whatever the number of ranks.
    public func globalBatch(cursor: Int, size: Int, microBatchSize: Int) -> [MicroBatch] {
        var picked: [TokenizedExample] = []
        var epochCache: (Int, [Int])? = nil
        for position in cursor..<(cursor + size) {
            let epoch = position / examples.count
            if epochCache?.0 != epoch { epochCache = (epoch, order(epoch: epoch)) }
            picked.append(examples[epochCache!.1[position % examples.count]])
        }
        picked = picked.enumerated().sorted {
            ($0.element.tokens.count, $0.offset) < ($1.element.tokens.count, $1.offset)
        }.map(\.element)
        return stride(from: 0, to: picked.count, by: microBatchSize).map {
            MicroBatch(Array(picked[$0..<min($0 + microBatchSize, picked.count)]))
        }
    }
}
