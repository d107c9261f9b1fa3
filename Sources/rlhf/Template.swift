import ArgumentParser
import Datasets
import Foundation
import Tokenizers

struct Template: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Render a model's chat template for conversations, as transformers' apply_chat_template(tokenize=False) "
            + "does.",
        discussion: """
            Reads JSON lines {"messages": [{"role", "content"}…]} (content a string or TRL's list of \
            {"type": "text", "text"} parts; an optional "chat_template_kwargs" object passes variables to the \
            template) and prints {"text": …} per line. The template is tokenizer_config.json's chat_template \
            (or chat_template.jinja) in the model folder, with its bos_token and eos_token.
            """)

    @Option(help: "Model folder (or tokenizer folder) holding tokenizer_config.json with a chat_template.")
    var model: String

    @Option(help: "JSONL file of conversations, or - for standard input.")
    var input: String

    @Flag(help: "End with the assistant's turn header (add_generation_prompt).")
    var generationPrompt = false

    func run() throws {
        let config = try TokenizerConfig(folder: model)
        guard let source = config.chatTemplate else {
            throw CLIError("\(model): no chat_template in tokenizer_config.json and no chat_template.jinja")
        }
        let template = try ChatTemplate(source)
        let text =
            input == "-"
            ? String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
            : try String(contentsOfFile: input, encoding: .utf8)
        for (k, line) in JSONL.lines(text).enumerated() where !line.trimmingCharacters(in: .whitespaces).isEmpty {
            let row: JinjaValue
            do { row = try ChatTemplate.value(json: String(line)) } catch {
                throw CLIError("\(input):\(k + 1): \(error)")
            }
            guard case .object(let object) = row, let messages = object["messages"], case .array = messages else {
                throw CLIError("\(input):\(k + 1): expected an object with a \"messages\" list")
            }
            var variables: [String: JinjaValue] = [:]
            if case .object(let extra)? = object["chat_template_kwargs"] {
                for e in extra.entries { variables[e.key] = e.value }
            }
            do {
                let rendered = try template.render(
                    messages: messages, addGenerationPrompt: generationPrompt, bosToken: config.bosToken,
                    eosToken: config.eosToken, variables: variables)
                printJSONLine(["text": rendered])
            } catch { throw CLIError("\(input):\(k + 1): \(error)") }
        }
    }
}
