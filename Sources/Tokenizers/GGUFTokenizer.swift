import Foundation
import GGUF

/// The tokenizer of a GGUF file (`tokenizer.ggml.*`, llama.cpp's gguf-py constants), rebuilt as
/// the tokenizer.json pipeline Hugging Face has for the same model, so that it encodes as the
/// model's own tokenizer.json does:
/// - `gpt2` (byte-level BPE with merges): the pre-tokenizer named by `tokenizer.ggml.pre`, as in
///   llama.cpp's llama-vocab.cpp (gpt-2 regex; smollm: single digits first; llama-bpe: Llama 3's
///   split; qwen2: Qwen2's split behind NFC);
/// - `llama` (SentencePiece-style with scores): BPE with byte fallback whose merges come from the
///   scores as transformers' SentencePieceExtractor derives them, behind a Metaspace pre-tokenizer.
/// Special tokens, BOS/EOS handling and the chat template come from the same metadata.
public enum GGUFTokenizer {
    /// A tokenizer.json (its model.vocab kept apart, with exact keys) and the tokenizer_config.json
    /// / generation_config.json facts beside it.
    public struct Converted {
        public var json: [String: Any]
        public var exactVocab: [(key: [UInt8], id: Int)]
        public var config: TokenizerConfig
        /// The file's tokenizer.* metadata, as written back into exported GGUF files.
        public var ggufMetadata: [(key: String, value: GGUFValue)]
    }

    // llama.cpp token types (llama_token_type).
    static let normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6

    static let gpt2Pattern = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
    static let llama3Pattern =
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| "#
        + #"?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let qwen2Pattern =
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| "#
        + #"?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    public static func load(path: String) throws -> BPETokenizer {
        let file = try GGUFFile(path: path)
        let c = try convert(file)
        return try BPETokenizer(
            origin: path, json: c.json, exactVocab: c.exactVocab, config: c.config,
            configOrigin: { _ in "\(path) (tokenizer.ggml metadata)" }, source: .converted(c))
    }

    public static func convert(_ file: GGUFFile) throws -> Converted {
        func fail(_ reason: String) -> TokenizerError { TokenizerError("\(file.path): \(reason)") }
        guard let modelName = file["tokenizer.ggml.model"]?.string else {
            throw fail("no tokenizer.ggml.model: the file carries no tokenizer")
        }
        let (tokens, types) = try vocabulary(file, fail: fail)
        let config = try configuration(file, tokens: tokens, modelName: modelName, fail: fail)
        var json: [String: Any] = [
            "version": "1.0", "truncation": NSNull(), "padding": NSNull(), "post_processor": NSNull(),
        ]
        json["added_tokens"] = tokens.indices.filter { [unknown, control, userDefined].contains(types[$0]) }.map {
            i -> [String: Any] in
            [
                "id": i, "content": tokens[i], "single_word": false, "lstrip": false, "rstrip": false,
                "normalized": types[i] == userDefined, "special": types[i] != userDefined,
            ]
        }
        switch modelName {
        case "gpt2":
            json.merge(try byteLevelModel(file, fail: fail)) { $1 }
        case "llama":
            json.merge(
                try sentencePieceModel(file, tokens: tokens, types: types, unkToken: config.unkToken, fail: fail)
            ) { $1 }
        default:
            throw fail("tokenizer.ggml.model '\(modelName)' is not supported (gpt2, llama)")
        }
        let exactVocab = tokens.enumerated().map { (key: Array($0.element.utf8), id: $0.offset) }
        return Converted(
            json: json, exactVocab: exactVocab, config: config,
            ggufMetadata: file.metadata.filter { $0.key.hasPrefix("tokenizer.") })
    }

    /// The tokens and their llama.cpp types (normal when the file has none).
    static func vocabulary(_ file: GGUFFile, fail: (String) -> TokenizerError) throws -> (
        tokens: [String], types: [Int]
    ) {
        guard let tokenValues = file["tokenizer.ggml.tokens"]?.array, !tokenValues.isEmpty else {
            throw fail("no tokenizer.ggml.tokens")
        }
        let tokens = try tokenValues.enumerated().map { i, v -> String in
            guard let s = v.string else { throw fail("tokenizer.ggml.tokens[\(i)] is not a string") }
            return s
        }
        let types = try (file["tokenizer.ggml.token_type"]?.array ?? tokens.map { _ in .int32(1) }).enumerated().map {
            i, v -> Int in
            guard let t = v.int else { throw fail("tokenizer.ggml.token_type[\(i)] is not an integer") }
            return t
        }
        guard types.count == tokens.count else {
            throw fail("tokenizer.ggml.token_type has \(types.count) entries for \(tokens.count) tokens")
        }
        return (tokens, types)
    }

    /// Special tokens, BOS/EOS handling and the chat template, as tokenizer_config.json says them.
    static func configuration(_ file: GGUFFile, tokens: [String], modelName: String, fail: (String) -> TokenizerError)
        throws
        -> TokenizerConfig
    {
        func tokenId(_ key: String) throws -> Int? {
            guard let value = file["tokenizer.ggml.\(key)"] else { return nil }
            guard let id = value.int, id >= 0 else {
                throw fail("tokenizer.ggml.\(key) must be a token id, got \(value.summary)")
            }
            // Some converters write an id past the vocabulary for "none" (e.g. padding); treated as absent.
            return id < tokens.count ? id : nil
        }
        var config = TokenizerConfig()
        let bos = try tokenId("bos_token_id"), eos = try tokenId("eos_token_id"), unk = try tokenId("unknown_token_id")
        let pad = try tokenId("padding_token_id"), eot = try tokenId("eot_token_id")
        config.bosToken = bos.map { tokens[$0] }
        config.eosToken = eos.map { tokens[$0] }
        config.padToken = pad.map { tokens[$0] }
        config.unkToken = unk.map { tokens[$0] }
        config.chatTemplate = file["tokenizer.chat_template"]?.string
        // End of turn (e.g. <|im_end|> where EOS is <|endoftext|>) also ends generation.
        config.generationEOS = [eos, eot].compactMap { $0 }
        // llama.cpp's defaults when the key is absent: BOS for SentencePiece and Llama 3 vocabularies.
        let pre = file["tokenizer.ggml.pre"]?.string ?? ""
        config.addBOS =
            file["tokenizer.ggml.add_bos_token"]?.bool
            ?? (modelName == "llama" || ["llama3", "llama-v3", "llama-bpe"].contains(pre))
        config.addEOS = file["tokenizer.ggml.add_eos_token"]?.bool ?? false
        return config
    }

    /// tokenizer.json's normalizer, pre_tokenizer, decoder and model of a `gpt2` (byte-level BPE) vocabulary.
    static func byteLevelModel(_ file: GGUFFile, fail: (String) -> TokenizerError) throws -> [String: Any] {
        let (normalizer, preTokenizer, ignoreMerges) = try byteLevelPipeline(
            file["tokenizer.ggml.pre"]?.string, fail: fail)
        guard let mergeValues = file["tokenizer.ggml.merges"]?.array else {
            throw fail("a gpt2 tokenizer needs tokenizer.ggml.merges")
        }
        let merges = try mergeValues.enumerated().map { i, v -> String in
            guard let s = v.string else { throw fail("tokenizer.ggml.merges[\(i)] is not a string") }
            return s
        }
        let model: [String: Any] = [
            "type": "BPE", "dropout": NSNull(), "unk_token": NSNull(), "continuing_subword_prefix": "",
            "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false, "ignore_merges": ignoreMerges,
            "merges": merges,
        ]
        return [
            "normalizer": normalizer ?? NSNull(), "pre_tokenizer": preTokenizer, "model": model,
            "decoder": ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true],
        ]
    }

    /// tokenizer.json's normalizer, pre_tokenizer, decoder and model of a `llama` (SentencePiece
    /// with scores) vocabulary.
    static func sentencePieceModel(
        _ file: GGUFFile, tokens: [String], types: [Int], unkToken: String?,
        fail: (String) -> TokenizerError
    ) throws -> [String: Any] {
        guard let scoreValues = file["tokenizer.ggml.scores"]?.array, scoreValues.count == tokens.count else {
            throw fail("a llama (SentencePiece) tokenizer needs tokenizer.ggml.scores, one per token")
        }
        let scores = try scoreValues.enumerated().map { i, v -> Double in
            guard let s = v.double else { throw fail("tokenizer.ggml.scores[\(i)] is not a number") }
            return s
        }
        // A ▁ prepended unless the text starts with one (Metaspace, prepend_scheme "always"), as
        // transformers 5.24's GGUF tokenizer encodes our fixtures; llama.cpp prepends a space
        // even before a leading one, so texts that start with a space differ from it.
        let prefixSpace = file["tokenizer.ggml.add_space_prefix"]?.bool ?? true
        let decoders: [[String: Any]] = [
            ["type": "Replace", "pattern": ["String": "\u{2581}"], "content": " "], ["type": "ByteFallback"],
            ["type": "Fuse"], ["type": "Strip", "content": " ", "start": prefixSpace ? 1 : 0, "stop": 0],
        ]
        let model: [String: Any] = [
            "type": "BPE", "dropout": NSNull(), "unk_token": unkToken.map { $0 as Any } ?? NSNull(),
            "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
            "merges": sentencePieceMerges(tokens: tokens, types: types, scores: scores),
        ]
        return [
            "normalizer": NSNull(), "model": model,
            "decoder": ["type": "Sequence", "decoders": decoders] as [String: Any],
            "pre_tokenizer": [
                "type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": prefixSpace ? "always" : "never",
                "split": false,
            ],
        ]
    }

    /// The normaliser, pre-tokenizer and ignore_merges of a byte-level BPE, by llama.cpp's
    /// pre-tokenizer name. A missing name is refused: llama.cpp would fall back to its "default"
    /// splits with a warning, which tokenise most newer models wrongly (and "default" itself, a
    /// set of splits no Hugging Face pipeline has, is not implemented).
    static func byteLevelPipeline(_ pre: String?, fail: (String) -> TokenizerError) throws -> (
        [String: Any]?, [String: Any], Bool
    ) {
        func byteLevel(regex: Bool) -> [String: Any] {
            ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": regex]
        }
        func split(_ pattern: String) -> [String: Any] {
            ["type": "Split", "pattern": ["Regex": pattern], "behavior": "Isolated", "invert": false]
        }
        switch pre {
        case "gpt-2":
            return (nil, byteLevel(regex: true), false)
        case "smollm":
            return (
                nil,
                [
                    "type": "Sequence",
                    "pretokenizers": [["type": "Digits", "individual_digits": true], byteLevel(regex: true)],
                ], false
            )
        case "llama3", "llama-v3", "llama-bpe":
            return (nil, ["type": "Sequence", "pretokenizers": [split(llama3Pattern), byteLevel(regex: false)]], true)
        case "qwen2", "deepseek-r1-qwen":
            return (
                ["type": "NFC"],
                ["type": "Sequence", "pretokenizers": [split(qwen2Pattern), byteLevel(regex: false)]], false
            )
        case nil:
            throw fail(
                "a gpt2 tokenizer without tokenizer.ggml.pre: the pre-tokenizer is unknown (re-convert the model "
                    + "with a current llama.cpp)"
            )
        case let other?:
            throw fail("tokenizer.ggml.pre '\(other)' is not supported (gpt-2, smollm, llama-bpe, qwen2)")
        }
    }

    /// BPE merges of a SentencePiece vocabulary: every split of a normal token into two tokens of
    /// the vocabulary, ranked by the merged token's score (highest first; ties in vocabulary order,
    /// then by the ids of the two halves), as transformers' SentencePieceExtractor orders them.
    static func sentencePieceMerges(tokens: [String], types: [Int], scores: [Double]) -> [String] {
        var ids: [[UInt8]: Int] = [:]
        for (i, t) in tokens.enumerated() where types[i] == normal || types[i] == userDefined {
            ids[Array(t.utf8)] = ids[Array(t.utf8)] ?? i
        }
        var merges: [(left: Int, right: Int, score: Double, order: Int)] = []
        for (i, token) in tokens.enumerated() where types[i] == normal {
            let scalars = Array(token.unicodeScalars)
            guard scalars.count > 1 else { continue }
            var local: [(Int, Int)] = []
            for cut in 1..<scalars.count {
                let left = Array(String(String.UnicodeScalarView(scalars[..<cut])).utf8)
                let right = Array(String(String.UnicodeScalarView(scalars[cut...])).utf8)
                if let l = ids[left], let r = ids[right] { local.append((l, r)) }
            }
            for (l, r) in local.sorted(by: { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1 < $1.1 }) {
                merges.append((l, r, scores[i], merges.count))
            }
        }
        merges.sort { $0.score != $1.score ? $0.score > $1.score : $0.order < $1.order }
        return merges.map { "\(tokens[$0.left]) \(tokens[$0.right])" }
    }

    /// tokenizer.json text: `json` with model.vocab written from `exactVocab` in id order (written
    /// by hand: a Foundation dictionary would merge canonically equivalent tokens).
    static func tokenizerJSON(_ c: Converted) throws -> Data {
        let marker = "@@vocab-\(UInt64.random(in: 0...UInt64.max))@@"
        var json = c.json
        var model = json["model"] as? [String: Any] ?? [:]
        model["vocab"] = marker
        json["model"] = model
        let text = String(
            decoding: try JSONSerialization.data(
                withJSONObject: json, options: [.sortedKeys, .withoutEscapingSlashes]), as: UTF8.self)
        let vocab =
            "{"
            + c.exactVocab.sorted { $0.id < $1.id }.map {
                "\(JinjaJSON.quote(String(decoding: $0.key, as: UTF8.self))):\($0.id)"
            }
            .joined(separator: ",") + "}"
        return Data(text.replacingOccurrences(of: "\"\(marker)\"", with: vocab).utf8)
    }

    /// tokenizer_config.json (special tokens, BOS/EOS adding, chat template) and, when the model
    /// stops on more than its EOS, generation_config.json.
    static func configFiles(_ config: TokenizerConfig) -> [(String, [String: Any])] {
        var tokenizer: [String: Any] = [
            "tokenizer_class": "PreTrainedTokenizerFast", "add_bos_token": config.addBOS ?? false,
            "add_eos_token": config.addEOS ?? false,
        ]
        tokenizer["bos_token"] = config.bosToken
        tokenizer["eos_token"] = config.eosToken
        tokenizer["pad_token"] = config.padToken
        tokenizer["unk_token"] = config.unkToken
        tokenizer["chat_template"] = config.chatTemplate
        var files = [("tokenizer_config.json", tokenizer)]
        if config.generationEOS.count > 1 {
            files.append(("generation_config.json", ["eos_token_id": config.generationEOS]))
        }
        return files
    }
}
