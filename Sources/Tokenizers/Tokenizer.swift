import Foundation
import GGUF

/// Text ↔ token ids. Every stage tokenises through this protocol, so the byte tokenizer of the
/// built-in tasks and Hugging Face tokenizers are interchangeable.
public protocol Tokenizer: Sendable {
    /// Number of ids, special tokens included (the model's vocab must be at least this).
    var vocabSize: Int { get }
    var bosTokenId: Int32? { get }
    var eosTokenId: Int32? { get }
    func encode(_ text: String) -> [Int32]
    func decode(_ ids: [Int32], skipSpecialTokens: Bool) -> String
    /// A short description for logs ("byte (258 ids)", "BPE tokenizer.json (50257 ids)").
    var summary: String { get }
    /// The tokens every sequence starts with: BOS when the tokenizer adds one.
    var prefixTokens: [Int32] { get }
    /// Ids that end generation: the EOS and any others the model folder lists.
    var stopTokenIds: [Int32] { get }
    /// The model's chat template with its special tokens, when it has one.
    var chat: ChatFormatter? { get }
}

extension Tokenizer {
    public var prefixTokens: [Int32] { bosTokenId.map { [$0] } ?? [] }
    public var stopTokenIds: [Int32] { eosTokenId.map { [$0] } ?? [] }
    public var chat: ChatFormatter? { nil }

    /// `text` after the prefix tokens, unless the text already starts with them (a chat template
    /// that writes bos_token itself).
    public func encodeWithPrefix(_ text: String) -> [Int32] {
        let ids = encode(text)
        if !prefixTokens.isEmpty && ids.starts(with: prefixTokens) { return ids }
        return prefixTokens + ids
    }
}

public struct TokenizerError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

public enum Tokenizers {
    /// `byte` for the byte tokenizer; otherwise a tokenizer.json file, a folder holding one, or a
    /// GGUF file (its tokenizer.ggml metadata).
    public static func load(_ spec: String) throws -> any Tokenizer {
        if spec == "byte" { return ByteTokenizer() }
        if GGUFFile.isGGUF(path: spec) { return try GGUFTokenizer.load(path: spec) }
        var path = spec
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
            let json = (path as NSString).appendingPathComponent("tokenizer.json")
            let marker = (path as NSString).appendingPathComponent(ByteTokenizer.markerFile)
            if FileManager.default.fileExists(atPath: json) {
                path = json
            } else if FileManager.default.fileExists(atPath: marker) {
                return ByteTokenizer()
            } else {
                throw TokenizerError(
                    "\(spec): no tokenizer.json or \(ByteTokenizer.markerFile) in this folder; name the tokenizer "
                        + "explicitly (byte, or a tokenizer.json)"
                )
            }
        }
        return try BPETokenizer(path: path)
    }
}

/// Bytes as tokens: ids 0…255 are the UTF-8 bytes, 256 is BOS and 257 EOS (vocab 258, the tiny
/// and small presets). Special tokens are never parsed out of text: text is only bytes.
public struct ByteTokenizer: Tokenizer {
    public static let bos: Int32 = 256
    public static let eos: Int32 = 257
    /// Written into model folders trained with this tokenizer, so they name it themselves.
    public static let markerFile = "byte_tokenizer.json"
    public static let markerContents =
        #"{"type": "byte", "vocab_size": 258, "bos_token_id": 256, "eos_token_id": 257}"# + "\n"
    public init() {}
    public var vocabSize: Int { 258 }
    public var bosTokenId: Int32? { Self.bos }
    public var eosTokenId: Int32? { Self.eos }
    public var summary: String { "byte (258 ids: 256 bytes, BOS 256, EOS 257)" }

    public func encode(_ text: String) -> [Int32] { text.utf8.map { Int32($0) } }

    public func decode(_ ids: [Int32], skipSpecialTokens: Bool = true) -> String {
        var bytes: [UInt8] = []
        var out = ""
        func flush() {
            out += String(decoding: bytes, as: UTF8.self)
            bytes.removeAll()
        }
        for id in ids {
            if id >= 0 && id < 256 {
                bytes.append(UInt8(id))
                continue
            }
            flush()
            if !skipSpecialTokens { out += id == Self.bos ? "<|bos|>" : id == Self.eos ? "<|eos|>" : "<|\(id)|>" }
        }
        flush()
        return out
    }
}
