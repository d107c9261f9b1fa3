/// An RL prompt: its tokens ([BOS] x), reference answer, task and text.
public struct PPOPrompt: Sendable {
    public let tokens: [Int32]
    public let answer: String?
    public var task: String
    public var text: String

    public init(tokens: [Int32], answer: String?, task: String = "", text: String = "") {
        self.tokens = tokens
        self.answer = answer
        self.task = task
        self.text = text
    }
}
