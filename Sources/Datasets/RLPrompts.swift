/// An RL prompt: its tokens ([BOS] x), reference answer, task and text.
public struct PPOPrompt: Sendable {
    public let tokens: [Int32]
    public let answer: String?
    public var task: String
    public var text: String
    /// The dataset row's other fields (field → its JSON text), which an external reward receives.
    public var extras: [String: String]
    /// Where it was read ("file:line"; a built-in task's prompts: "").
    public var source = ""

    public init(tokens: [Int32], answer: String?, task: String = "", text: String = "", extras: [String: String] = [:])
    {
        self.tokens = tokens
        self.answer = answer
        self.task = task
        self.text = text
        self.extras = extras
    }
}
