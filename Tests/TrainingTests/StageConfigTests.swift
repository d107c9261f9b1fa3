import Cluster
import Foundation
import Models
import Tokenizers
import XCTest

@testable import Config
@testable import Training

/// Every stage's configuration: what --print-config lists loads back, bad input is an error naming
/// file, line and key, and every declared key is read by the stage's typed config.
final class StageConfigTests: TemporaryDirectoryTestCase {
    struct Stage {
        let name: String
        let schema: ConfigSchema
        /// Overrides the typed config needs to build (a task, a model to start from).
        let required: [String]
        /// Builds the stage's typed config(s) from a resolved config.
        let build: (ResolvedConfig) throws -> Void
        /// A key of this stage set out of its range, and the words the error must hold.
        let outOfRange: (yaml: String, key: String, requirement: String)
    }

    var stages: [Stage] {
        [
            Stage(
                name: "sft", schema: sftSchema, required: ["data.task=arith"], build: { _ = try SFTConfig($0) },
                outOfRange: ("train:\n  beta1: 1.0\n", "train.beta1", "must be in [0.0, 1.0), got 1.0")),
            Stage(
                name: "hydra-sft", schema: hydraSFTSchema, required: ["data.task=arith"],
                build: { _ = try SFTConfig($0) },
                outOfRange: ("train:\n  weight_decay: -0.1\n", "train.weight_decay", "must be ≥ 0, got -0.1")),
            Stage(
                name: "rm", schema: rmSchema, required: ["data.task=arith"], build: { _ = try SFTConfig($0) },
                outOfRange: ("hydra:\n  lm_weight: 0.5\n", "hydra.lm_weight", "must be 0 or 1, got 0.5")),
            Stage(
                name: "dpo", schema: dpoSchema, required: ["data.task=arith"], build: { _ = try DPOConfig($0) },
                outOfRange: ("cpl:\n  lambda: 0\n", "cpl.lambda", "must be in (0.0, 1.0], got 0.0")),
            Stage(
                name: "ppo", schema: ppoSchema, required: ["data.task=arith", "model.init_from=/sft"],
                build: { _ = try PPOConfig($0) },
                outOfRange: ("cluster:\n  timeout: 0\n", "cluster.timeout", "must be > 0, got 0.0")),
            Stage(
                name: "pipeline", schema: Pipeline.schema, required: ["data.task=arith"],
                build: { c in
                    _ = try SFTConfig(c.scoped(to: hydraSFTSchema, prefix: "sft.", shared: Pipeline.shared))
                    _ = try PPOConfig(
                        c.scoped(to: ppoSchema, prefix: "rl.", shared: Pipeline.shared).with(
                            RunSettings.initFrom, "/sft"))
                }, outOfRange: ("rl:\n  ppo:\n    gamma: 2\n", "rl.ppo.gamma", "must be in [0.0, 1.0], got 2.0")),
            Stage(
                name: "prefs", schema: PreferenceComparison.schema, required: ["data.task=arith"], build: { _ = $0 },
                outOfRange: (
                    "prefs:\n  dpo:\n    label_smoothing: 0.5\n", "prefs.dpo.label_smoothing",
                    "must be in [0.0, 0.5), got 0.5"
                )),
            Stage(
                name: "overopt", schema: OverOptimisation.schema, required: ["data.task=arith"], build: { _ = $0 },
                outOfRange: ("study:\n  noise: 1.5\n", "study.noise", "must be in [0.0, 1.0], got 1.5")),
        ]
    }

    func write(_ text: String, _ name: String = "exp.yaml") throws -> String {
        let path = directory + "/" + name
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// A valid value other than the default, where the key's type and range give one.
    func otherValue(_ key: ConfigKey) -> ConfigValue {
        let candidate: ConfigValue
        switch (key.type, key.defaultValue) {
        case (.int, .int(let v)): candidate = .int(v + 1)
        case (.float, .float(let v)): candidate = .float(v == 0 ? 0.25 : v * 0.5)
        case (.bool, .bool(let v)): candidate = .bool(!v)
        case (.choice(let options), .string(let v)): candidate = .string(options.first { $0 != v } ?? v)
        case (.path, _): candidate = .string(directory + "/some/file.jsonl")
        case (.string, .string(let v)): candidate = .string(v.isEmpty ? "x" : v)
        default: candidate = key.defaultValue
        }
        return key.check?(candidate) == nil ? candidate : key.defaultValue
    }

    /// Every key --print-config lists, at its default and at another valid value, reads back from
    /// the printed YAML to the same values.
    func testEveryPrintedKeyRoundTripsThroughLoad() throws {
        for stage in stages {
            let defaults = try stage.schema.resolve(file: nil, overrides: [])
            let reread = try stage.schema.resolve(file: try write(defaults.yaml, stage.name + ".yaml"), overrides: [])
            XCTAssertEqual(reread.values, defaults.values, stage.name)
            var changed = 0
            let overrides = stage.schema.keys.map { key -> String in
                let value = otherValue(key)
                if value != key.defaultValue { changed += 1 }
                if case .string(let s) = value { return "\(key.path)=\(s)" }
                if case .float(let d) = value { return "\(key.path)=\(d)" }
                return "\(key.path)=\(value)"
            }
            let other = try stage.schema.resolve(file: nil, overrides: overrides)
            XCTAssertGreaterThan(changed, stage.schema.keys.count / 2, "\(stage.name): most keys take another value")
            let printed = try write(other.yaml, stage.name + "-other.yaml")
            XCTAssertEqual(try stage.schema.resolve(file: printed, overrides: []).values, other.values, stage.name)
            for key in stage.schema.keys {
                XCTAssertTrue(
                    other.yaml.contains("# \(key.help)"), "\(stage.name): \(key.path) is printed with its help")
            }
        }
    }

    /// A misspelt key, a value of the wrong type and a value out of range: each error names the
    /// file, the line and the key.
    func testBadKeysTypesAndRangesNameFileLineAndKey() throws {
        for stage in stages {
            let path = try write("name: x\ntrain_x: 1\n")
            XCTAssertThrowsError(try stage.schema.resolve(file: path, overrides: [])) { error in
                XCTAssertTrue("\(error)".hasPrefix("\(path):2: unknown key 'train_x'"), "\(stage.name): \(error)")
            }
            _ = try write("seed: many\n")
            XCTAssertThrowsError(try stage.schema.resolve(file: path, overrides: [])) { error in
                XCTAssertEqual("\(error)", "\(path):1: 'seed' expects an integer, got 'many'", stage.name)
            }
            _ = try write("name: x\n" + stage.outOfRange.yaml)
            XCTAssertThrowsError(try stage.schema.resolve(file: path, overrides: [])) { error in
                let line = stage.outOfRange.yaml.split(separator: "\n").count + 1
                XCTAssertEqual(
                    "\(error)", "\(path):\(line): '\(stage.outOfRange.key)' \(stage.outOfRange.requirement)", stage.name
                )
            }
            let override =
                stage.outOfRange.key + "=" + (stage.outOfRange.requirement.components(separatedBy: "got ").last ?? "")
            XCTAssertThrowsError(try stage.schema.resolve(file: nil, overrides: [override])) { error in
                XCTAssertTrue(
                    "\(error)".hasPrefix("override '\(override)': '\(stage.outOfRange.key)'"), "\(stage.name): \(error)"
                )
            }
        }
    }

    /// No key is accepted and then ignored: building the stage's typed config reads every key its
    /// schema declares (the experiments that chain stages read theirs while running).
    func testEveryDeclaredKeyIsRead() throws {
        for stage in stages where !["prefs", "overopt"].contains(stage.name) {
            let resolved = try stage.schema.resolve(file: nil, overrides: stage.required)
            try stage.build(resolved)
            let unread = Set(stage.schema.keys.map(\.path)).subtracting(resolved.reads.read)
            XCTAssertEqual(unread, [], "\(stage.name): declared but never read")
        }
    }

    /// lora.targets names no family has are refused at load, before a run folder exists; keys a
    /// stage has no use for are not in its schema at all.
    func testLoRATargetTyposAndKeysAStageDoesNotUseAreRefusedAtLoad() throws {
        XCTAssertThrowsError(
            try PPOConfig(
                try ppoSchema.resolve(
                    file: nil, overrides: ["data.task=arith", "model.init_from=/sft", "lora.targets=attn.c_attn,q_prj"])
            )
        ) {
            XCTAssertTrue(
                "\($0)".hasPrefix(
                    "'lora.targets': 'q_prj' is not a projection of any model family (gpt2: attn.c_attn, "
                        + "attn.c_proj, mlp.c_fc, mlp.c_proj; llama, qwen2, mistral: q_proj, k_proj, v_proj, o_proj, "
                        + "gate_proj, up_proj, down_proj)"
                ), "\($0)")
        }
        for (schema, key) in [
            (ppoSchema, "tokenizer"), (ppoSchema, "model.preset"), (ppoSchema, "data.prefs"), (dpoSchema, "data.train"),
            (rmSchema, "data.eval"), (rmSchema, "eval.max_new_tokens"),
        ] {
            XCTAssertThrowsError(try schema.resolve(file: nil, overrides: ["\(key)=x"])) {
                XCTAssertTrue("\($0)".contains("unknown key '\(key)'"), "\($0)")
            }
        }
    }

    /// model.preset is looked up in model.family's presets; a name only another family has is refused at load.
    func testPresetsBelongToTheirFamily() throws {
        let llama = try SFTConfig(
            try sftSchema.resolve(
                file: nil, overrides: ["data.task=arith", "model.family=llama", "model.preset=smollm2-135m"]))
        XCTAssertEqual([llama.run.family, llama.run.preset], ["llama", "smollm2-135m"])
        XCTAssertThrowsError(
            try SFTConfig(
                try sftSchema.resolve(file: nil, overrides: ["data.task=arith", "model.preset=smollm2-135m"]))
        ) {
            XCTAssertTrue(
                "\($0)".contains(
                    "'model.preset': gpt2 has no preset 'smollm2-135m'; its presets are gpt2, small, tiny"), "\($0)")
        }
        XCTAssertThrowsError(try sftSchema.resolve(file: nil, overrides: ["model.family=mistral"])) {
            XCTAssertTrue("\($0)".contains("model.family"), "\($0)")
        }
    }

    func testChoicesAreTypedAndEvalEveryZeroMeansNever() throws {
        let ppo = try PPOConfig(
            try ppoSchema.resolve(
                file: nil,
                overrides: [
                    "data.task=arith", "model.init_from=/sft", "ppo.estimator=rloo",
                    "layout=separate", "eval.every=0",
                ]))
        XCTAssertEqual(ppo.ppo.estimator, .rloo)
        XCTAssertEqual(ppo.layout, .separate)
        XCTAssertFalse(
            (1...100).contains { ppo.cadence.evaluates(after: $0, of: 100) }, "eval.every 0: never, not even at the end"
        )
        let sft = try SFTConfig(try sftSchema.resolve(file: nil, overrides: ["data.task=arith", "eval.every=30"]))
        XCTAssertEqual(
            (1...100).filter { sft.cadence.evaluates(after: $0, of: 100) }, [30, 60, 90, 100], "every N and at the end")
        XCTAssertThrowsError(
            try PPOConfig(
                try ppoSchema.resolve(
                    file: nil,
                    overrides: [
                        "data.task=arith", "model.init_from=/sft",
                        "ppo.estimator=grpo", "ppo.samples_per_prompt=1",
                    ])))
    }
}

/// train.max_length beyond the model's context is refused before step 1, naming the key and, for
/// Mistral, the sliding window that caps the context.
final class ContextLengthTests: TemporaryDirectoryTestCase {
    func testMaxLengthBeyondTheContextIsRefusedAtLoad() async throws {
        let model = directory + "/mistral"
        let trunk = try LlamaTrunk(
            config: LlamaConfig(
                variant: .mistral, vocabSize: 258, maxPositions: 64, channels: 32, layers: 1, heads: 2,
                innerSize: 48, slidingWindow: 12, bosTokenId: 256, eosTokenIds: [257]))
        try HFCheckpoint.save(trunk, directory: model)
        try ByteTokenizer.markerContents.write(
            toFile: model + "/" + ByteTokenizer.markerFile, atomically: true, encoding: .utf8)
        let config = try SFTConfig(
            try sftSchema.resolve(
                file: nil,
                overrides: [
                    "out=\(directory)/run", "resume=never", "model.init_from=\(model)", "data.task=arith",
                    "train.max_length=16", "train.steps=1",
                ]))
        do {
            _ = try await SFTStage(config: config, transport: SingleProcessTransport(), say: { _ in }).run()
            XCTFail("a max_length beyond the context must be refused")
        } catch {
            XCTAssertTrue(
                "\(error)".contains(
                    "'train.max_length' 16 exceeds the model's context of 12 tokens (sliding_window 12"), "\(error)")
        }
        XCTAssertFalse(
            FileManager.default.fileExists(atPath: directory + "/run/metrics.jsonl"), "refused before step 1")
    }
}
