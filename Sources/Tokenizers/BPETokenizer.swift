import Foundation

/// A Hugging Face tokenizer.json with a BPE model, run as tokenizers runs it: added tokens cut
/// out of the text first, each piece between them normalised (`normalizer`), split
/// (`pre_tokenizer`) and encoded by the BPE model; ids back to text through the `decoder`.
/// Byte-level BPE (GPT-2, Qwen2, Llama 3, SmolLM2) and SentencePiece-style BPE with byte
/// fallback (Llama 2, Mistral, TinyLlama) both fit; other pipelines are refused by name.
/// Special tokens come from tokenizer_config.json / generation_config.json beside the file.
public final class BPETokenizer: Tokenizer, @unchecked Sendable {
    public let path: String
    /// What `save(into:)` writes: the files it was read from, or the GGUF metadata converted.
    let source: Source
    enum Source { case folder(String), converted(GGUFTokenizer.Converted) }
    let model: BPEModel
    let normalizer: Normalizer?
    let preTokenizer: PreTokenizer?
    let decoder: TokenDecoder?
    let idToToken: [Int32: String]
    let added: [AddedToken]
    let specialIds: Set<Int32>
    public let config: TokenizerConfig
    public let vocabSize: Int
    public let bosTokenId: Int32?
    public let eosTokenId: Int32?
    public let padTokenId: Int32?
    /// Whether every sequence starts with BOS (add_bos_token, or a post-processor that adds it).
    public let addsBOS: Bool
    /// End-of-sequence ids for generation: generation_config.json's, and the tokenizer's EOS.
    public let stopTokenIds: [Int32]
    public let chat: ChatFormatter?

    struct AddedToken { let content: String, id: Int32, special: Bool, lstrip: Bool, rstrip: Bool, singleWord: Bool }

    public var summary: String { "BPE \(path) (\(vocabSize) ids)" }
    public var prefixTokens: [Int32] { addsBOS ? bosTokenId.map { [$0] } ?? [] : [] }

    public convenience init(path: String) throws {
        func fail(_ reason: String) -> TokenizerError { TokenizerError("\(path): \(reason)") }
        guard let data = FileManager.default.contents(atPath: path) else { throw fail("cannot read (missing?)") }
        guard let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw fail("not a JSON object")
        }
        guard let modelJSON = json["model"] as? [String: Any] else { throw fail("no \"model\"") }
        guard (modelJSON["type"] as? String) == "BPE" else {
            throw fail("model.type '\(modelJSON["type"] ?? "none")' is not supported (only BPE)")
        }
        // The vocabulary again, with exact keys and in file order.
        let exactRoot: JinjaValue
        do { exactRoot = try JinjaJSON.parse(String(decoding: data, as: UTF8.self)) } catch { throw fail("\(error)") }
        guard case .object(let root) = exactRoot, case .object(let modelObject)? = root["model"],
            case .object(let vocabObject)? = modelObject["vocab"]
        else {
            throw fail("model.vocab is not a map of token → id")
        }
        let exactVocab = try vocabObject.entries.map { entry -> (key: [UInt8], id: Int) in
            guard case .int(let id) = entry.value else { throw fail("model.vocab: '\(entry.key)' has no integer id") }
            return (Array(entry.key.utf8), id)
        }
        // Special tokens: tokenizer_config.json and generation_config.json beside the file.
        let folder = (path as NSString).deletingLastPathComponent
        let place = folder.isEmpty ? "." : folder
        try self.init(
            origin: path, json: json, exactVocab: exactVocab, config: try TokenizerConfig(folder: place),
            configOrigin: { "\(place)/\($0)" }, source: .folder(place))
    }

    /// tokenizer.json's added_tokens, each with content and an id that fits Int32.
    static func addedTokens(_ json: [String: Any], fail: (String) -> TokenizerError) throws -> [AddedToken] {
        try ((json["added_tokens"] as? [[String: Any]]) ?? []).map { entry in
            guard let content = entry["content"] as? String, let id = entry["id"] as? Int, !content.isEmpty else {
                throw fail("added_tokens entry without content or id")
            }
            guard let id32 = Int32(exactly: id), id32 >= 0, id32 < Int32.max else {
                throw fail("added token '\(content)' has id \(id), not in 0..<2³¹−1")
            }
            return AddedToken(
                content: content, id: id32, special: entry["special"] as? Bool ?? false,
                lstrip: entry["lstrip"] as? Bool ?? false, rstrip: entry["rstrip"] as? Bool ?? false,
                singleWord: entry["single_word"] as? Bool ?? false)
        }
    }

    /// A tokenizer from tokenizer.json's content (`json`, whose model.vocab is given separately as
    /// `exactVocab`) and the special tokens of `config`; `origin` and `configOrigin` name where
    /// they came from in errors (a file, or the GGUF file they were converted from); configOrigin
    /// turns a file name of a model folder (tokenizer_config.json) into where that part came from.
    init(
        origin path: String, json: [String: Any], exactVocab: [(key: [UInt8], id: Int)], config: TokenizerConfig,
        configOrigin: (String) -> String, source: Source
    ) throws {
        self.path = path
        self.source = source
        func fail(_ reason: String) -> TokenizerError { TokenizerError("\(path): \(reason)") }
        guard let modelJSON = json["model"] as? [String: Any] else { throw fail("no \"model\"") }
        model = try BPEModel(modelJSON, exactVocab: exactVocab, fail: fail)
        normalizer = try Normalizer.parse(json["normalizer"], fail: fail)
        preTokenizer = try PreTokenizer.parse(json["pre_tokenizer"], fail: fail)
        decoder = try TokenDecoder.parse(json["decoder"], fail: fail)
        var vocab: [String: Int32] = [:]
        for (key, id) in model.vocab { vocab[String(decoding: key, as: UTF8.self)] = id }
        var inverse: [Int32: String] = [:]
        for (key, id) in model.vocab { inverse[id] = String(decoding: key, as: UTF8.self) }
        let added = try Self.addedTokens(json, fail: fail)
        for token in added {
            vocab[token.content] = token.id
            inverse[token.id] = token.content
        }
        // Longest first, so that of two tokens starting at one place the longer wins (leftmost-longest).
        self.added = added.sorted { $0.content.unicodeScalars.count > $1.content.unicodeScalars.count }
        idToToken = inverse
        specialIds = Set(added.filter(\.special).map(\.id))
        vocabSize = Int(inverse.keys.max() ?? -1) + 1

        self.config = config
        func id(_ token: String?, _ key: String) throws -> Int32? {
            guard let token else { return nil }
            guard let id = vocab[token] else {
                throw TokenizerError(
                    "\(configOrigin("tokenizer_config.json")): \(key) '\(token)' is not a token of \(path)")
            }
            return id
        }
        func generationId(_ id: Int) throws -> Int32 {
            guard let v = Int32(exactly: id), v >= 0, Int(v) < Int(Int32.max), inverse[v] != nil else {
                throw TokenizerError(
                    "\(configOrigin("generation_config.json")): token id \(id) is not a token of \(path)")
            }
            return v
        }
        let generationEOS = try config.generationEOS.map(generationId)
        bosTokenId = try id(config.bosToken, "bos_token") ?? config.generationBOS.map(generationId)
        eosTokenId = try id(config.eosToken, "eos_token") ?? generationEOS.first
        padTokenId = try id(config.padToken, "pad_token")
        stopTokenIds = Array(Set(generationEOS + (eosTokenId.map { [$0] } ?? []))).sorted()
        addsBOS =
            bosTokenId != nil
            && (config.addBOS ?? Self.postProcessorAddsFirstToken(json["post_processor"], bos: config.bosToken))
        let loaded = config
        chat = loaded.chatTemplate.map {
            ChatFormatter(
                source: $0, origin: "\(configOrigin("tokenizer_config.json")) chat_template", bosToken: loaded.bosToken,
                eosToken: loaded.eosToken)
        }
    }

    /// Writes tokenizer.json and its special tokens (tokenizer_config.json, chat_template.jinja,
    /// generation_config.json) into `folder`, as a model folder holds them: the files it was read
    /// from, or for a GGUF file the tokenizer.json it was converted to.
    public func save(into folder: String) throws {
        let fm = FileManager.default
        func target(_ name: String) -> String {
            let path = (folder as NSString).appendingPathComponent(name)
            try? fm.removeItem(atPath: path)  // an export may overwrite an earlier one
            return path
        }
        switch source {
        case .folder(let place):
            try fm.copyItem(atPath: path, toPath: target("tokenizer.json"))
            for name in ["tokenizer_config.json", "chat_template.jinja"] {
                let file = (place as NSString).appendingPathComponent(name)
                if fm.fileExists(atPath: file) { try fm.copyItem(atPath: file, toPath: target(name)) }
            }
        case .converted(let c):
            try GGUFTokenizer.tokenizerJSON(c).write(to: URL(fileURLWithPath: target("tokenizer.json")))
            for (name, json) in GGUFTokenizer.configFiles(c.config) {
                try JSONSerialization.data(
                    withJSONObject: json, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                )
                .write(to: URL(fileURLWithPath: target(name)))
            }
        }
    }

    /// A TemplateProcessing post-processor whose single-sequence template starts with `bos`.
    static func postProcessorAddsFirstToken(_ json: Any?, bos: String?) -> Bool {
        // Llama 3.x: Sequence[ByteLevel, TemplateProcessing(<|begin_of_text|> $A)].
        if let object = json as? [String: Any], (object["type"] as? String) == "Sequence",
            let list = object["processors"] as? [Any]
        {
            return list.contains { postProcessorAddsFirstToken($0, bos: bos) }
        }
        guard let bos, let object = json as? [String: Any], (object["type"] as? String) == "TemplateProcessing",
            let single = object["single"] as? [[String: Any]], let first = single.first,
            let special = first["SpecialToken"] as? [String: Any]
        else { return false }
        return (special["id"] as? String) == bos
    }

    public func encode(_ text: String) -> [Int32] {
        var ids: [Int32] = []
        for segment in splitAddedTokens(text) {
            switch segment {
            case .token(let id): ids.append(id)
            case .text(let s, let atStart):
                let normalized = normalizer?.apply(s) ?? s
                guard !normalized.isEmpty else { continue }
                let pieces =
                    preTokenizer?.apply([Piece(text: normalized, atStart: atStart)]) ?? [
                        Piece(text: normalized, atStart: atStart)
                    ]
                for piece in pieces where !piece.text.isEmpty { ids.append(contentsOf: model.encode(piece.text)) }
            }
        }
        return ids
    }

    enum Segment { case text(String, atStart: Bool), token(Int32) }

    /// Cuts added tokens out of the text (leftmost match, longest first), honouring lstrip /
    /// rstrip (the token absorbs whitespace beside it) and single_word (no letters or digits beside it).
    func splitAddedTokens(_ text: String) -> [Segment] {
        guard !added.isEmpty else { return [.text(text, atStart: true)] }
        let scalars = Array(text.unicodeScalars)
        var segments: [Segment] = []
        var textStart = 0, i = 0
        func isWordScalar(_ s: Unicode.Scalar) -> Bool {
            ByteLevelPreTokenizer.isLetter(s) || ByteLevelPreTokenizer.isNumber(s) || s == "_"
        }
        func emitText(_ from: Int, _ to: Int) {
            if to > from {
                segments.append(.text(String(String.UnicodeScalarView(scalars[from..<to])), atStart: from == 0))
            }
        }
        outer: while i < scalars.count {
            for token in added {
                let t = Array(token.content.unicodeScalars)
                guard i + t.count <= scalars.count, Array(scalars[i..<(i + t.count)]) == t else { continue }
                if token.singleWord {
                    if i > 0 && isWordScalar(scalars[i - 1]) { continue }
                    if i + t.count < scalars.count && isWordScalar(scalars[i + t.count]) { continue }
                }
                var before = i, after = i + t.count
                if token.lstrip {
                    while before > textStart && scalars[before - 1].properties.isWhitespace { before -= 1 }
                }
                if token.rstrip { while after < scalars.count && scalars[after].properties.isWhitespace { after += 1 } }
                emitText(textStart, before)
                segments.append(.token(token.id))
                i = after
                textStart = after
                continue outer
            }
            i += 1
        }
        emitText(textStart, scalars.count)
        return segments
    }

    public func decode(_ ids: [Int32], skipSpecialTokens: Bool = true) -> String {
        let tokens = ids.compactMap { id -> String? in
            if skipSpecialTokens && specialIds.contains(id) { return nil }
            return idToToken[id]
        }
        guard let decoder else { return tokens.joined(separator: " ") }
        return decoder.decodeChain(tokens).joined()
    }

    public func id(of token: String) -> Int32? {
        added.first { $0.content == token }?.id ?? model.vocab[Array(token.utf8)]
    }
}
