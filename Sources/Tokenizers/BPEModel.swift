import Foundation

/// tokenizer.json's BPE model (Sennrich et al. 2016) as Hugging Face tokenizers runs it on one
/// pre-token: its Unicode scalars looked up one by one (with the continuing-subword prefix and
/// end-of-word suffix when set; `""` is the same as unset), scalars missing from the vocabulary
/// replaced by their `<0xXX>` byte tokens (byte_fallback), by the unknown token (fused when
/// fuse_unk), or dropped when the model has neither; then adjacent pairs merged by rank.
final class BPEModel: @unchecked Sendable {
    /// Tokens are compared by their exact scalars: Swift's String equality is canonical
    /// equivalence ("e\u{301}" == "é"), which tokenizers' Rust strings do not have.
    typealias Key = [UInt8]
    struct Pair: Hashable { let left: Key, right: Key }

    let vocab: [Key: Int32]
    let mergeRanks: [Pair: Int]
    let unkId: Int32?
    let fuseUnk: Bool, byteFallback: Bool, ignoreMerges: Bool
    let prefix: String, suffix: String
    private let cache = WordCache()

    /// `exactVocab`: model.vocab read with exact keys (a dictionary through Foundation would merge
    /// canonically equivalent tokens such as "à" and "a\u{300}", which vocabularies may hold both of).
    init(_ model: [String: Any], exactVocab: [(key: [UInt8], id: Int)], fail: (String) -> TokenizerError) throws {
        guard (model["type"] as? String) == "BPE" else { throw fail("model.type '\(model["type"] ?? "none")' is not supported (only BPE)") }
        if let dropout = model["dropout"] as? Double, dropout > 0 { throw fail("model.dropout \(dropout) is not supported (deterministic encoding only)") }
        var exact: [Key: Int32] = [:]
        for (token, id) in exactVocab {
            guard let id32 = Int32(exactly: id), id32 >= 0, id32 < Int32.max else { throw fail("model.vocab: id \(id) of '\(String(decoding: token, as: UTF8.self))' is not in 0..<2³¹−1") }
            exact[token] = id32
        }
        vocab = exact
        prefix = model["continuing_subword_prefix"] as? String ?? ""
        suffix = model["end_of_word_suffix"] as? String ?? ""
        let prefixKey = Array(prefix.utf8)
        var ranks: [Pair: Int] = [:]
        for (rank, merge) in ((model["merges"] as? [Any]) ?? []).enumerated() {
            // Two formats: "a b" (tokenizers < 0.20) and ["a", "b"].
            let pair: Pair
            if let s = merge as? String {
                // By scalars: " " before a combining mark is one Character in Swift.
                let parts = s.unicodeScalars.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false)
                guard parts.count == 2 else { throw fail("merge \(rank) '\(s)' is not two symbols") }
                pair = Pair(left: Array(String(String.UnicodeScalarView(parts[0])).utf8), right: Array(String(String.UnicodeScalarView(parts[1])).utf8))
            } else if let a = merge as? [String], a.count == 2 {
                pair = Pair(left: Array(a[0].utf8), right: Array(a[1].utf8))
            } else {
                throw fail("merge \(rank) is neither \"a b\" nor [a, b]")
            }
            for token in [pair.left, pair.right, Self.merged(pair, prefix: prefixKey)] where exact[token] == nil {
                throw fail("merge \(rank) (\(String(decoding: pair.left, as: UTF8.self)) \(String(decoding: pair.right, as: UTF8.self))) uses '\(String(decoding: token, as: UTF8.self))', which is not in the vocabulary")
            }
            if ranks[pair] == nil { ranks[pair] = rank }
        }
        mergeRanks = ranks
        if let unk = model["unk_token"] as? String {
            guard let id = exact[Array(unk.utf8)] else { throw fail("model.unk_token '\(unk)' is not in the vocabulary") }
            unkId = id
        } else { unkId = nil }
        fuseUnk = model["fuse_unk"] as? Bool ?? false
        byteFallback = model["byte_fallback"] as? Bool ?? false
        ignoreMerges = model["ignore_merges"] as? Bool ?? false
    }

    /// The token two symbols merge into (the right one loses the continuing-subword prefix).
    static func merged(_ pair: Pair, prefix: Key) -> Key {
        pair.left + (prefix.isEmpty || !pair.right.starts(with: prefix) ? pair.right : Array(pair.right.dropFirst(prefix.count)))
    }

    func encode(_ word: String) -> [Int32] {
        if let hit = cache.get(word) { return hit }
        if ignoreMerges, let id = vocab[Array(word.utf8)] { cache.set(word, [id]); return [id] }
        // Symbols: (token bytes, or nil for a fixed id, id).
        var symbols: [(token: Key?, id: Int32)] = []
        var unk: Int32?   // an unknown run waiting to be added
        let scalars = Array(word.unicodeScalars)
        for (i, scalar) in scalars.enumerated() {
            var text = String(scalar)
            if i > 0 { text = prefix + text }
            if i == scalars.count - 1 { text += suffix }
            let s = Array(text.utf8)
            if let id = vocab[s] {
                if let u = unk { symbols.append((nil, u)); unk = nil }
                symbols.append((s, id))
                continue
            }
            if byteFallback {
                let bytes = s.map { vocab[Array(String(format: "<0x%02X>", $0).utf8)] }
                if bytes.allSatisfy({ $0 != nil }) {
                    if let u = unk { symbols.append((nil, u)); unk = nil }
                    symbols.append(contentsOf: bytes.map { (nil, $0!) })
                    continue
                }
            }
            if let unkId {
                if let u = unk, !fuseUnk { symbols.append((nil, u)) }
                unk = unkId
            }
        }
        if let u = unk { symbols.append((nil, u)) }
        // Merge the adjacent pair of lowest rank, every occurrence left to right, until none is left.
        while symbols.count > 1 {
            var best: (rank: Int, pair: Pair)?
            for k in 0..<(symbols.count - 1) {
                guard let l = symbols[k].token, let r = symbols[k + 1].token else { continue }
                let pair = Pair(left: l, right: r)
                if let rank = mergeRanks[pair], rank < (best?.rank ?? Int.max) { best = (rank, pair) }
            }
            guard let best else { break }
            let token = Self.merged(best.pair, prefix: Array(prefix.utf8)), id = vocab[token]!
            var next: [(token: Key?, id: Int32)] = []
            next.reserveCapacity(symbols.count)
            var k = 0
            while k < symbols.count {
                if k + 1 < symbols.count && symbols[k].token == best.pair.left && symbols[k + 1].token == best.pair.right {
                    next.append((token, id)); k += 2
                } else {
                    next.append(symbols[k]); k += 1
                }
            }
            symbols = next
        }
        let ids = symbols.map(\.id)
        cache.set(word, ids)
        return ids
    }
}

/// Pre-token → ids memo; encoding repeats the same words constantly.
final class WordCache: @unchecked Sendable {
    private var table: [[UInt8]: [Int32]] = [:]   // by exact bytes (see BPEModel.Key)
    private let lock = NSLock()
    func get(_ word: String) -> [Int32]? { lock.lock(); defer { lock.unlock() }; return table[Array(word.utf8)] }
    func set(_ word: String, _ ids: [Int32]) {
        lock.lock(); defer { lock.unlock() }
        if table.count > 100_000 { table.removeAll(keepingCapacity: true) }
        table[Array(word.utf8)] = ids
    }
}
