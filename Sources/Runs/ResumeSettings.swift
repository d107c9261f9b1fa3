import Config
import Foundation

/// The settings that fix what a run trains (the model's shape and origin, the tokenizer, the
/// adapters, the data and its order, the global batch), saved in every checkpoint's training
/// state. Resuming with other values would quietly continue a different experiment under the old
/// name, so it is refused unless `resume: force` (issue 15); everything else (learning rate,
/// steps, cadence, cluster) may change on resume.
public enum ResumeSettings {
    static let prefixes = ["model.", "lora.", "data."]
    static let keys: Set<String> = [
        "seed", "tokenizer", "layout", "train.batch_size", "train.max_length", "hydra.pair_batch_size",
        "ppo.prompts", "ppo.samples_per_prompt",
    ]
    /// Held-out data only decides what is evaluated, not what is trained.
    static let evaluationOnly: Set<String> = ["data.eval", "data.eval_prefs"]

    /// key → value for every such setting. Files and folders are named by their last path
    /// component and size, so a run whose data or model was copied elsewhere (a job's local
    /// disk, a moved checkout) still resumes.
    /// `extra`: settings a stage adds that are not config keys (PPO's world size, below).
    public static func of(_ config: ResolvedConfig, extra: [String: String] = [:]) -> [String: String] {
        var out = extra
        for key in tracked(config) {
            guard let value = config.values[key.path] else { continue }
            // The tokenizer key names a file or folder too, unless it is the built-in "byte".
            if key.type == .path || key.path == "tokenizer", case .string(let path) = value, !path.isEmpty,
                path != "byte"
            {
                out[key.path] = describeFile(path)
            } else {
                out[key.path] = value.description
            }
        }
        return out
    }

    /// The defaults of the same settings: a key that only one side has counts as unchanged when
    /// the other side holds its default (a key added to the schema since the checkpoint).
    public static func defaults(_ config: ResolvedConfig) -> [String: String] {
        Dictionary(uniqueKeysWithValues: tracked(config).map { ($0.path, $0.defaultValue.description) })
    }

    static func tracked(_ config: ResolvedConfig) -> [ConfigKey] {
        config.schema.keys.filter {
            (keys.contains($0.path) || prefixes.contains(where: $0.path.hasPrefix)) && !evaluationOnly.contains($0.path)
        }
    }

    /// "name (N bytes)" for a file, "name/ (N bytes)" summed over the regular files under a folder
    /// (symbolic links followed, folders' own sizes left out: they differ between filesystems),
    /// or the path itself when nothing is there.
    static func describeFile(_ path: String) -> String {
        let fm = FileManager.default, name = (path as NSString).lastPathComponent
        var isFolder: ObjCBool = false
        guard fm.fileExists(atPath: path, isDirectory: &isFolder) else { return path }
        func size(_ p: String) -> Int {
            // attributesOfItem describes a link itself; the target's attributes are what count.
            let resolved = URL(fileURLWithPath: p).resolvingSymlinksInPath().path
            guard let attributes = try? fm.attributesOfItem(atPath: resolved),
                attributes[.type] as? FileAttributeType == .typeRegular
            else { return 0 }
            return attributes[.size] as? Int ?? 0
        }
        guard isFolder.boolValue else { return "\(name) (\(size(path)) bytes)" }
        let total = (fm.subpaths(atPath: path) ?? []).reduce(0) {
            $0 + size((path as NSString).appendingPathComponent($1))
        }
        return "\(name)/ (\(total) bytes)"
    }

    /// A setting whose value now starts with this accepts any saved value (a PPO run that is the
    /// same at any number of ranks continues a checkpoint that recorded its count).
    public static let anyValue = "any"

    /// "key: was → now" for every setting that differs (a key only one side has counts too).
    public static func changes(saved: [String: String], now: [String: String], defaults: [String: String] = [:])
        -> [String]
    {
        Set(saved.keys).union(now.keys).sorted().compactMap { key in
            let was = saved[key] ?? defaults[key] ?? "(not set)", is_ = now[key] ?? defaults[key] ?? "(not set)"
            return was == is_ || (now[key]?.hasPrefix(anyValue) ?? false) ? nil : "\(key): \(was) → \(is_)"
        }
    }

    /// Refuses (or, forced, only reports) a resume whose settings differ from the checkpoint's.
    /// Returns the warning to print when forced; nil when nothing changed or the checkpoint is
    /// older than this check.
    public static func check(
        checkpoint: String, state: TrainingState, config: ResolvedConfig, extra: [String: String] = [:],
        resume: ResumePolicy
    ) throws -> String? {
        let force = resume == .force
        guard let saved = state.settings else { return nil }
        let changed = changes(saved: saved, now: of(config, extra: extra), defaults: defaults(config))
        guard !changed.isEmpty else { return nil }
        let list = changed.joined(separator: "; ")
        if force { return "warning: resume: force continues \(checkpoint) with changed settings: \(list)" }
        throw TrainingError(
            """
            \(checkpoint) was trained with other settings: \(list). Resuming would continue a different \
            experiment under this run's name: put the settings back, start a new run (resume: never, or another name), \
            or \(resume == .auto ? "set resume: force to continue anyway" : "start from its weights with " +
                "model.init_from")
            """)
    }
}
