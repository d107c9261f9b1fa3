import Foundation
import GGUF

/// The other direction: a tokenizer as `tokenizer.ggml.*` metadata, for writing GGUF files that
/// llama.cpp runs. A tokenizer read from GGUF is written back as it came; a tokenizer.json is
/// converted when its pipeline is one llama.cpp names (byte-level BPE with a known pre-tokenizer,
/// or SentencePiece-style BPE with byte fallback); the byte tokenizer becomes a byte-level BPE of
/// 256 single-byte tokens and no merges, plus BOS and EOS.
extension GGUFTokenizer {
    /// `vocabSize`: the model's; llama.cpp wants one token per embedding row, so ids the tokenizer
    /// does not use are listed as unused placeholders.
    public static func metadata(for tokenizer: any Tokenizer, vocabSize: Int) throws -> [(
        key: String, value: GGUFValue
    )] {
        var entries: [(key: String, value: GGUFValue)]
        if tokenizer is ByteTokenizer {
            entries = byteMetadata()
        } else {
            guard let bpe = tokenizer as? BPETokenizer else {
                throw TokenizerError("\(tokenizer.summary): cannot be written as GGUF metadata")
            }
            switch bpe.source {
            case .converted(let c): entries = c.ggufMetadata
            case .folder: entries = try folderMetadata(bpe)
            }
        }
        // The per-token arrays and the placeholder each gets for id (llama.cpp reads them as
        // strings, int32 and float32).
        let padding: [String: (GGUFValueType, (Int) -> GGUFValue)] = [
            "tokenizer.ggml.tokens": (.string, { .string("[PAD\($0)]") }),
            "tokenizer.ggml.token_type": (.int32, { _ in .int32(Int32(unused)) }),
            "tokenizer.ggml.scores": (.float32, { _ in .float32(-1e9) }),
        ]
        for i in entries.indices {
            guard case .array(let type, let items) = entries[i].value, let (expected, pad) = padding[entries[i].key],
                items.count < vocabSize
            else { continue }
            guard type == expected else {
                throw TokenizerError("\(entries[i].key) holds \(type) values, llama.cpp reads \(expected)")
            }
            entries[i].value = .array(type, items + (items.count..<vocabSize).map(pad))
        }
        return entries
    }

    static func strings(_ list: [String]) -> GGUFValue { .array(.string, list.map { .string($0) }) }
    static func ints(_ list: [Int]) -> GGUFValue { .array(.int32, list.map { .int32(Int32($0)) }) }

    static func byteMetadata() -> [(key: String, value: GGUFValue)] {
        let tokens = ByteLevelPreTokenizer.byteToUnicode.map(String.init) + ["<|bos|>", "<|eos|>"]
        return [
            ("tokenizer.ggml.model", .string("gpt2")), ("tokenizer.ggml.pre", .string("gpt-2")),
            ("tokenizer.ggml.tokens", strings(tokens)),
            ("tokenizer.ggml.token_type", ints(Array(repeating: normal, count: 256) + [control, control])),
            ("tokenizer.ggml.merges", .array(.string, [])),
            ("tokenizer.ggml.bos_token_id", .uint32(UInt32(ByteTokenizer.bos))),
            ("tokenizer.ggml.eos_token_id", .uint32(UInt32(ByteTokenizer.eos))),
            ("tokenizer.ggml.add_bos_token", .bool(true)),
        ]
    }

    /// tokenizer.json (read again from the file the tokenizer came from) as GGUF metadata.
    static func folderMetadata(_ bpe: BPETokenizer) throws -> [(key: String, value: GGUFValue)] {
        func fail(_ reason: String) -> TokenizerError { TokenizerError("\(bpe.path): \(reason)") }
        guard let data = FileManager.default.contents(atPath: bpe.path),
            let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any],
            let model = json["model"] as? [String: Any]
        else {
            throw fail("cannot be read again")
        }
        var tokens = [String](repeating: "", count: bpe.vocabSize),
            types = [Int](repeating: unused, count: bpe.vocabSize)
        for (key, id) in bpe.model.vocab {
            tokens[Int(id)] = String(decoding: key, as: UTF8.self)
            types[Int(id)] = normal
        }
        for t in bpe.added {
            tokens[Int(t.id)] = t.content
            types[Int(t.id)] = t.special ? control : userDefined
        }
        for i in types.indices where types[i] == unused { tokens[i] = "[PAD\(i)]" }
        let merges = try ((model["merges"] as? [Any]) ?? []).map { m -> String in
            if let s = m as? String { return s }
            guard let pair = m as? [String], pair.count == 2 else {
                throw fail("a merge is neither \"a b\" nor [a, b]")
            }
            return pair.joined(separator: " ")
        }
        var out: [(key: String, value: GGUFValue)] = []
        if (model["byte_fallback"] as? Bool) == true {
            out = sentencePieceMetadata(bpe, tokens: tokens, types: &types, merges: merges)
        } else {
            out = [
                ("tokenizer.ggml.model", .string("gpt2")),
                ("tokenizer.ggml.pre", .string(try preName(json, fail: fail))),
            ]
        }
        out += [("tokenizer.ggml.tokens", strings(tokens)), ("tokenizer.ggml.token_type", ints(types))]
        if out[0].value == .string("gpt2") { out.append(("tokenizer.ggml.merges", strings(merges))) }
        for (key, id) in [
            ("bos_token_id", bpe.bosTokenId), ("eos_token_id", bpe.eosTokenId), ("padding_token_id", bpe.padTokenId),
        ] {
            if let id { out.append(("tokenizer.ggml.\(key)", .uint32(UInt32(id)))) }
        }
        if let unk = bpe.model.unkId { out.append(("tokenizer.ggml.unknown_token_id", .uint32(UInt32(unk)))) }
        out.append(("tokenizer.ggml.add_bos_token", .bool(bpe.addsBOS)))
        if let template = bpe.config.chatTemplate { out.append(("tokenizer.chat_template", .string(template))) }
        return out
    }

    /// A SentencePiece-style vocabulary (byte fallback) as llama.cpp's `llama` model: byte tokens
    /// typed, each merge's result scored −rank, and whether a ▁ goes before the text.
    static func sentencePieceMetadata(_ bpe: BPETokenizer, tokens: [String], types: inout [Int], merges: [String])
        -> [(key: String, value: GGUFValue)]
    {
        for (i, t) in tokens.enumerated()
        where types[i] == normal && t.count == 6 && t.hasPrefix("<0x") && t.hasSuffix(">") { types[i] = byte }
        // llama.cpp merges by the merged token's score: the k-th merge's result scores −k.
        var scores = [Float](repeating: -1e9, count: tokens.count)
        for (i, t) in types.enumerated() where t != normal || tokens[i].unicodeScalars.count == 1 { scores[i] = 0 }
        for (rank, merge) in merges.enumerated() {
            if let id = bpe.model.vocab[Array(merge.replacingOccurrences(of: " ", with: "").utf8)],
                scores[Int(id)] == -1e9
            {
                scores[Int(id)] = -Float(rank)
            }
        }
        // A ▁ before the text: Metaspace's prepend_scheme, or the legacy Prepend normaliser.
        func prepends(_ n: Normalizer?) -> Bool {
            switch n {
            case .prepend?: return true
            case .sequence(let list)?: return list.contains { prepends($0) }
            default: return false
            }
        }
        var prefixSpace = prepends(bpe.normalizer)
        if case .metaspace(_, let scheme, _)? = bpe.preTokenizer { prefixSpace = scheme != .never }
        return [
            ("tokenizer.ggml.model", .string("llama")),
            ("tokenizer.ggml.scores", .array(.float32, scores.map { .float32($0) })),
            ("tokenizer.ggml.add_space_prefix", .bool(prefixSpace)),
        ]
    }

    /// llama.cpp's name for a tokenizer.json's byte-level pipeline (the inverse of byteLevelPipeline).
    static func preName(_ json: [String: Any], fail: (String) -> TokenizerError) throws -> String {
        let normalizer = (json["normalizer"] as? [String: Any])?["type"] as? String
        let pre = json["pre_tokenizer"] as? [String: Any]
        func describe(_ p: [String: Any]) -> String {
            switch p["type"] as? String {
            case "ByteLevel": return (p["use_regex"] as? Bool ?? true) ? "bytelevel+regex" : "bytelevel"
            case "Digits": return (p["individual_digits"] as? Bool) == true ? "digits1" : "digits"
            case "Split": return "split:" + (((p["pattern"] as? [String: Any])?["Regex"] as? String) ?? "?")
            default: return p["type"] as? String ?? "?"
            }
        }
        let steps =
            pre.map { p in
                (p["type"] as? String) == "Sequence"
                    ? ((p["pretokenizers"] as? [[String: Any]]) ?? []).map(describe) : [describe(p)]
            } ?? []
        switch (normalizer, steps) {
        case (nil, ["bytelevel+regex"]): return "gpt-2"
        case (nil, ["digits1", "bytelevel+regex"]): return "smollm"
        case (nil, ["split:" + llama3Pattern, "bytelevel"]): return "llama-bpe"
        case ("NFC", ["split:" + qwen2Pattern, "bytelevel"]): return "qwen2"
        default:
            throw fail(
                "its pre-tokenizer (\(normalizer ?? "no normalizer"); \(steps.joined(separator: ", "))) has no "
                    + "llama.cpp name (gpt-2, smollm, llama-bpe, qwen2); export with --format hf"
            )
        }
    }
}
