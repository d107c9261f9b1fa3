import Config
import Foundation

/// A model card (README.md, Hugging Face's form: YAML front matter, then Markdown) in the model
/// folders a run writes: what the model was trained from, how, on what, and how it scored.
public struct ModelCard {
    public var title: String
    /// The model it was trained from (a folder or a .gguf file).
    public var baseModel: String
    /// "peft" for an adapter, "transformers" for a whole model.
    public var library: String
    /// The stage and its defining settings (e.g. "PPO, estimator grpo, layout hydra, LoRA rank 16").
    public var method: String
    /// Where the training data came from (a task or files).
    public var data: String
    /// The newest value of every figure of the run's metrics.jsonl.
    public var metrics: [String: Double] = [:]
    /// The resolved config the run used.
    public var config: String = ""
    /// Text appended at the end (an adapter's own card when it is merged into an export).
    public var appendix: String = ""

    public init(title: String, baseModel: String, library: String, method: String, data: String) {
        self.title = title
        self.baseModel = baseModel
        self.library = library
        self.method = method
        self.data = data
    }

    /// The card's text.
    public var markdown: String {
        var lines = [
            "---", "base_model: \(Self.quoted(baseModel))", "library_name: \(library)", "tags:", "- swift-rlhf",
            "- \(Self.quoted(method.split(separator: ",").first.map(String.init) ?? method))", "---", "",
            "# \(title)", "",
            "Trained from `\(baseModel)` with swift-rlhf, RLHF on CPUs.", "",
            "## Training", "", "- method: \(method)", "- data: \(data)",
        ]
        if !metrics.isEmpty {
            lines += ["", "## Metrics (the newest value of each)", "", "| metric | value |", "|---|---|"]
            lines += metrics.keys.sorted().map { "| \($0) | \(String(format: "%.6g", metrics[$0]!)) |" }
        }
        if !config.isEmpty {
            lines += ["", "## Configuration", "", "```yaml", config.trimmingCharacters(in: .newlines), "```"]
        }
        if !appendix.isEmpty { lines += ["", appendix] }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Writes README.md into `folder`.
    public func write(into folder: String) throws {
        let path = (folder as NSString).appendingPathComponent("README.md")
        do { try markdown.write(toFile: path, atomically: true, encoding: .utf8) } catch {
            throw TrainingError("\(path): cannot write the model card (\(error.localizedDescription))")
        }
    }

    /// The newest value of each numeric figure in a metrics.jsonl (step excluded).
    public static func latestMetrics(_ path: String) -> [String: Double] {
        guard let data = FileManager.default.contents(atPath: path) else { return [:] }
        var latest: [String: Double] = [:]
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
            guard let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { continue }
            for (key, value) in o where key != "step" {
                if let v = value as? Double, v.isFinite { latest[key] = v }
            }
        }
        return latest
    }

    /// A YAML scalar in double quotes (paths may hold ':' or '#').
    static func quoted(_ s: String) -> String {
        "\"" + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }
}
