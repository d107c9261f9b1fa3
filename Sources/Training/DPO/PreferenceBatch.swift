import Alignment
import Datasets
import Foundation
import Kernels
import Models
import Tokenizers

/// A tokenised preference pair: prompt = [BOS] x, responses = y [EOS] (the ids a DPO dataset
/// holds; EOS also separates the two responses of InSPO's conditioned sequences).
public struct TokenizedPair: Sendable, Equatable {
    public var prompt: [Int32], chosen: [Int32], rejected: [Int32]
    public var source: String

    public init(prompt: [Int32], chosen: [Int32], rejected: [Int32], source: String = "") {
        self.prompt = prompt
        self.chosen = chosen
        self.rejected = rejected
        self.source = source
    }

    public init(_ e: PreferenceExample, tokenizer: any Tokenizer, maxLength: Int, conditioned: Bool) throws {
        prompt = e.chatRendered ? tokenizer.encode(e.prompt) : tokenizer.encodeWithPrefix(e.prompt)
        let eos = tokenizer.eosTokenId.map { [$0] } ?? []
        chosen = tokenizer.encode(e.chosen) + eos
        rejected = tokenizer.encode(e.rejected) + eos
        source = e.source
        guard !chosen.isEmpty, !rejected.isEmpty else { throw DatasetError("\(e.source): empty response") }
        // The longest sequence the loss reads: [x; y_l; y_w] for InSPO, else [x; y].
        let longest = prompt.count + (conditioned ? chosen.count + rejected.count : max(chosen.count, rejected.count))
        guard longest - 1 <= maxLength else {
            throw TooLongExample(
                source: e.source, tokens: longest - 1, maxLength: maxLength,
                note: conditioned ? "InSPO joins both responses" : "")
        }
    }
}

/// Which response of which pair a sequence scores.
public enum PairSequenceKind: Int, Sendable, CaseIterable {
    case chosen, rejected, conditionalChosen, conditionalRejected
}

/// The sequences of a micro-batch of pairs, padded into one [B, T] forward: for each pair the
/// unconditional [x; y_w], [x; y_l] and, for InSPO, [x; y_l; y_w] (scores y_w) and [x; y_w; y_l]
/// (scores y_l). The response of row r is tokens[start[r]...]; its log-probs sit at log-prob
/// positions start[r] − 1 ..< count − 1 of that row.
public struct PreferenceBatch: Sendable {
    public let batch: Int, length: Int
    public let tokens: [Int32], targets: [Int32]  // [B, T]; targets −1 off the responses
    /// (pair index in the micro-batch, kind, row, first log-prob position, response length)
    public let spans: [(pair: Int, kind: PairSequenceKind, row: Int, start: Int, count: Int)]

    public init(_ pairs: [TokenizedPair], kinds: [PairSequenceKind]) {
        var sequences: [([Int32], Int)] = []
        var spans: [(Int, PairSequenceKind, Int, Int, Int)] = []
        for (i, p) in pairs.enumerated() {
            for kind in kinds {
                let (context, response): ([Int32], [Int32])
                switch kind {
                case .chosen: (context, response) = (p.prompt, p.chosen)
                case .rejected: (context, response) = (p.prompt, p.rejected)
                case .conditionalChosen: (context, response) = (p.prompt + p.rejected, p.chosen)
                case .conditionalRejected: (context, response) = (p.prompt + p.chosen, p.rejected)
                }
                spans.append((i, kind, sequences.count, context.count - 1, response.count))
                sequences.append((context + response, context.count))
            }
        }
        batch = sequences.count
        length = sequences.map(\.0.count).max() ?? 0
        var tokens = [Int32](repeating: 0, count: batch * length),
            targets = [Int32](repeating: -1, count: batch * length)
        for (r, (s, responseStart)) in sequences.enumerated() {
            for (j, t) in s.enumerated() { tokens[r * length + j] = t }
            for j in (responseStart - 1)..<(s.count - 1) { targets[r * length + j] = s[j + 1] }
        }
        self.tokens = tokens
        self.targets = targets
        self.spans = spans
    }

    /// Per pair, the token log-probs of each kind's response.
    public func responseLogProbs(_ logProbs: [Float], pairs: Int) -> [[PairSequenceKind: [Double]]] {
        var out = [[PairSequenceKind: [Double]]](repeating: [:], count: pairs)
        for s in spans {
            let base = s.row * length + s.start
            out[s.pair][s.kind] = (0..<s.count).map { Double(logProbs[base + $0]) }
        }
        return out
    }
}

extension CausalLM {
    /// The reference pass of the dpo stage on one batch: Σ log p per span, adapters off.
    public func referenceSums(_ batch: PreferenceBatch) throws -> [Double] {
        try responseLogProbSums(batch, adapter: nil)
    }

    /// Σ log p over each sequence's response (inference forward, no cache kept): the reference's
    /// cached log-probs and the policy's held-out ones.
    func responseLogProbSums(_ batch: PreferenceBatch, adapter: LoRAAdapter?) throws -> [Double] {
        let hidden = try inferenceHidden(
            tokens: batch.tokens, batch: batch.batch, length: batch.length, adapter: adapter)
        let logProbs = lmHeadLogProbs(
            hidden: hidden, targets: batch.targets,
            cache: LMHeadCache(rows: batch.batch * batch.length, vocab: config.vocabSize))
        return batch.spans.map { s in
            (0..<s.count).reduce(0.0) { $0 + Double(logProbs[s.row * batch.length + s.start + $1]) }
        }
    }
}
