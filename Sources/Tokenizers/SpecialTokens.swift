import Foundation

/// What a model folder says about its tokenizer beyond tokenizer.json: the special tokens of
/// tokenizer_config.json (a string, or an AddedToken object with "content"), whether a BOS is
/// added, the chat template (tokenizer_config.json's `chat_template`, or chat_template.jinja),
/// and the end-of-sequence ids of generation_config.json (an id or a list). Nothing is guessed
/// from token names.
public struct TokenizerConfig: Sendable {
    public var bosToken: String?, eosToken: String?, padToken: String?, unkToken: String?
    public var addBOS: Bool?, addEOS: Bool?
    public var chatTemplate: String?
    /// generation_config.json's eos_token_id(s), in file order.
    public var generationEOS: [Int] = []
    public var generationBOS: Int?

    public init() {}

    /// Reads tokenizer_config.json, chat_template.jinja and generation_config.json from `folder`
    /// (each optional); a file that is there but malformed is an error naming it.
    public init(folder: String) throws {
        let fm = FileManager.default
        func path(_ name: String) -> String { (folder as NSString).appendingPathComponent(name) }
        func object(_ name: String) throws -> [String: Any]? {
            guard let data = fm.contents(atPath: path(name)) else { return nil }
            guard let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
                throw TokenizerError("\(path(name)): not a JSON object")
            }
            return json
        }
        if let config = try object("tokenizer_config.json") {
            func token(_ key: String) throws -> String? {
                switch config[key] {
                case nil, is NSNull: return nil
                case let s as String: return s
                case let o as [String: Any]:
                    guard let content = o["content"] as? String else {
                        throw TokenizerError("\(path("tokenizer_config.json")): '\(key)' has no 'content'")
                    }
                    return content
                default:
                    throw TokenizerError(
                        "\(path("tokenizer_config.json")): '\(key)' must be a string or an object with 'content'")
                }
            }
            bosToken = try token("bos_token")
            eosToken = try token("eos_token")
            padToken = try token("pad_token")
            unkToken = try token("unk_token")
            addBOS = config["add_bos_token"] as? Bool
            addEOS = config["add_eos_token"] as? Bool
            switch config["chat_template"] {
            case let s as String: chatTemplate = s
            case let list as [[String: Any]]:
                // Several named templates: the one called "default".
                chatTemplate = list.first { ($0["name"] as? String) == "default" }?["template"] as? String
            default: break
            }
        }
        if chatTemplate == nil, let data = fm.contents(atPath: path("chat_template.jinja")) {
            chatTemplate = String(decoding: data, as: UTF8.self)
        }
        if let generation = try object("generation_config.json") {
            if let one = generation["eos_token_id"] as? Int {
                generationEOS = [one]
            } else if let list = generation["eos_token_id"] as? [Int] {
                generationEOS = list
            }
            generationBOS = generation["bos_token_id"] as? Int
        }
    }
}
