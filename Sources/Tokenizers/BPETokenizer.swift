import Foundation

/// A Hugging Face tokenizer.json with a byte-level BPE model (GPT-2 and its descendants):
/// added/special tokens are cut out of the text first, the rest is pre-tokenised with GPT-2's
/// regex, mapped byte-by-byte to GPT-2's printable alphabet and merged by rank (Sennrich et al.
/// 2016; GPT-2's encoder.py). Other tokenizer.json pipelines are rejected by name, never guessed.
public final class BPETokenizer: Tokenizer, @unchecked Sendable {
    public let path: String
    let vocab: [String: Int32]
    let idToToken: [Int32: String]
    let mergeRanks: [Pair: Int]
    let added: [AddedToken]
    let specialIds: Set<Int32>
    let ignoreMerges: Bool
    public let vocabSize: Int
    public let bosTokenId: Int32?
    public let eosTokenId: Int32?
    private let cache = WordCache()

    struct Pair: Hashable { let left: String, right: String }
    struct AddedToken { let content: String, id: Int32, special: Bool, lstrip: Bool, rstrip: Bool, singleWord: Bool }

    public var summary: String { "BPE \(path) (\(vocabSize) ids)" }

    public init(path: String) throws {
        self.path = path
        func fail(_ reason: String) -> TokenizerError { TokenizerError("\(path): \(reason)") }
        guard let data = FileManager.default.contents(atPath: path) else { throw fail("cannot read (missing?)") }
        guard let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else { throw fail("not a JSON object") }
        guard let model = json["model"] as? [String: Any] else { throw fail("no \"model\"") }
        guard (model["type"] as? String) == "BPE" else { throw fail("model.type '\(model["type"] ?? "none")' is not supported (only BPE)") }
        for key in ["continuing_subword_prefix", "end_of_word_suffix", "unk_token"] where !(model[key] == nil || model[key] is NSNull) {
            throw fail("model.\(key) is set; only GPT-2-style byte-level BPE is supported")
        }
        if let normalizer = json["normalizer"], !(normalizer is NSNull) { throw fail("a normalizer is set; byte-level BPE has none") }
        guard let pre = json["pre_tokenizer"] as? [String: Any], (pre["type"] as? String) == "ByteLevel" else {
            throw fail("pre_tokenizer must be ByteLevel (GPT-2 style)")
        }
        if (pre["add_prefix_space"] as? Bool) == true { throw fail("pre_tokenizer.add_prefix_space = true is not supported") }
        if (pre["use_regex"] as? Bool) == false { throw fail("pre_tokenizer.use_regex = false is not supported") }
        guard let vocabJSON = model["vocab"] as? [String: Int] else { throw fail("model.vocab is not a map of token → id") }
        var vocab: [String: Int32] = [:]
        for (token, id) in vocabJSON { vocab[token] = Int32(id) }
        var ranks: [Pair: Int] = [:]
        for (rank, merge) in ((model["merges"] as? [Any]) ?? []).enumerated() {
            // Two formats: "a b" (tokenizers < 0.20) and ["a", "b"].
            if let s = merge as? String {
                let parts = s.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false)
                guard parts.count == 2 else { throw fail("merge \(rank) '\(s)' is not two symbols") }
                ranks[Pair(left: String(parts[0]), right: String(parts[1]))] = rank
            } else if let a = merge as? [String], a.count == 2 {
                ranks[Pair(left: a[0], right: a[1])] = rank
            } else {
                throw fail("merge \(rank) is neither \"a b\" nor [a, b]")
            }
        }
        var added: [AddedToken] = []
        for entry in (json["added_tokens"] as? [[String: Any]]) ?? [] {
            guard let content = entry["content"] as? String, let id = entry["id"] as? Int, !content.isEmpty else {
                throw fail("added_tokens entry without content or id")
            }
            added.append(AddedToken(content: content, id: Int32(id), special: entry["special"] as? Bool ?? false,
                                    lstrip: entry["lstrip"] as? Bool ?? false, rstrip: entry["rstrip"] as? Bool ?? false,
                                    singleWord: entry["single_word"] as? Bool ?? false))
            vocab[content] = Int32(id)
        }
        // Longest first, so that of two tokens starting at one place the longer wins (leftmost-longest).
        self.added = added.sorted { $0.content.unicodeScalars.count > $1.content.unicodeScalars.count }
        self.vocab = vocab
        var inverse: [Int32: String] = [:]
        for (token, id) in vocab { inverse[id] = token }
        idToToken = inverse
        mergeRanks = ranks
        specialIds = Set(added.filter(\.special).map(\.id))
        ignoreMerges = model["ignore_merges"] as? Bool ?? false
        vocabSize = Int((vocab.values.max() ?? -1) + 1)
        for b in ByteLevelPreTokenizer.byteToUnicode where vocab[String(b)] == nil {
            throw fail("the vocabulary lacks byte symbol '\(b)': not a byte-level BPE vocabulary")
        }
        // GPT-2 uses <|endoftext|> for both; otherwise look for common names.
        func special(_ names: [String]) -> Int32? { names.lazy.compactMap { vocab[$0] }.first }
        eosTokenId = special(["<|endoftext|>", "</s>", "<|eos|>", "<eos>"])
        bosTokenId = special(["<|endoftext|>", "<s>", "<|bos|>", "<bos>"])
    }

    public func encode(_ text: String) -> [Int32] {
        var ids: [Int32] = []
        for segment in splitAddedTokens(text) {
            switch segment {
            case .token(let id): ids.append(id)
            case .text(let s):
                for piece in ByteLevelPreTokenizer.split(s) { ids.append(contentsOf: encodeWord(String(piece))) }
            }
        }
        return ids
    }

    enum Segment { case text(String), token(Int32) }

    /// Cuts added tokens out of the text (leftmost match, longest first), honouring lstrip /
    /// rstrip (the token absorbs whitespace beside it) and single_word (no letters or digits beside it).
    func splitAddedTokens(_ text: String) -> [Segment] {
        guard !added.isEmpty else { return [.text(text)] }
        let scalars = Array(text.unicodeScalars)
        var segments: [Segment] = []
        var textStart = 0, i = 0
        func isWordScalar(_ s: Unicode.Scalar) -> Bool { ByteLevelPreTokenizer.isLetter(s) || ByteLevelPreTokenizer.isNumber(s) || s == "_" }
        outer: while i < scalars.count {
            for token in added {
                let t = Array(token.content.unicodeScalars)
                guard i + t.count <= scalars.count, Array(scalars[i..<(i + t.count)]) == t else { continue }
                if token.singleWord {
                    if i > 0 && isWordScalar(scalars[i - 1]) { continue }
                    if i + t.count < scalars.count && isWordScalar(scalars[i + t.count]) { continue }
                }
                var before = i, after = i + t.count
                if token.lstrip { while before > textStart && scalars[before - 1].properties.isWhitespace { before -= 1 } }
                if token.rstrip { while after < scalars.count && scalars[after].properties.isWhitespace { after += 1 } }
                if before > textStart { segments.append(.text(String(String.UnicodeScalarView(scalars[textStart..<before])))) }
                segments.append(.token(token.id))
                i = after; textStart = after
                continue outer
            }
            i += 1
        }
        if textStart < scalars.count { segments.append(.text(String(String.UnicodeScalarView(scalars[textStart...])))) }
        return segments
    }

    /// BPE on one pre-token: repeatedly merge the adjacent pair of lowest rank until none is left.
    func encodeWord(_ word: String) -> [Int32] {
        if let hit = cache.get(word) { return hit }
        var symbols = word.utf8.map { String(ByteLevelPreTokenizer.byteToUnicode[Int($0)]) }
        if ignoreMerges, let id = vocab[symbols.joined()] { cache.set(word, [id]); return [id] }
        while symbols.count > 1 {
            var best: (rank: Int, index: Int)?
            for k in 0..<(symbols.count - 1) {
                if let rank = mergeRanks[Pair(left: symbols[k], right: symbols[k + 1])], rank < (best?.rank ?? Int.max) {
                    best = (rank, k)
                }
            }
            guard let best else { break }
            // Merge every occurrence of that pair, left to right (GPT-2's bpe()).
            let left = symbols[best.index], right = symbols[best.index + 1]
            var merged: [String] = []
            merged.reserveCapacity(symbols.count)
            var k = 0
            while k < symbols.count {
                if k + 1 < symbols.count && symbols[k] == left && symbols[k + 1] == right {
                    merged.append(left + right); k += 2
                } else {
                    merged.append(symbols[k]); k += 1
                }
            }
            symbols = merged
        }
        // Every byte symbol is in the vocabulary (checked at load), so lookups cannot fail for
        // single symbols; a merged symbol missing from the vocabulary would be a broken file.
        let ids = symbols.flatMap { s -> [Int32] in
            if let id = vocab[s] { return [id] }
            return s.map { vocab[String($0)]! }
        }
        cache.set(word, ids)
        return ids
    }

    public func decode(_ ids: [Int32], skipSpecialTokens: Bool = true) -> String {
        var bytes: [UInt8] = []
        for id in ids {
            if specialIds.contains(id) && skipSpecialTokens { continue }
            guard let token = idToToken[id] else { continue }
            if added.contains(where: { $0.id == id }) { bytes.append(contentsOf: Array(token.utf8)); continue }
            for ch in token {
                if let b = ByteLevelPreTokenizer.unicodeToByte[ch] { bytes.append(b) } else { bytes.append(contentsOf: Array(String(ch).utf8)) }
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    public func id(of token: String) -> Int32? { vocab[token] }
}

/// Pre-token → ids memo; encoding repeats the same words constantly.
final class WordCache: @unchecked Sendable {
    private var table: [String: [Int32]] = [:]
    private let lock = NSLock()
    func get(_ word: String) -> [Int32]? { lock.lock(); defer { lock.unlock() }; return table[word] }
    func set(_ word: String, _ ids: [Int32]) {
        lock.lock(); defer { lock.unlock() }
        if table.count > 100_000 { table.removeAll(keepingCapacity: true) }
        table[word] = ids
    }
}
