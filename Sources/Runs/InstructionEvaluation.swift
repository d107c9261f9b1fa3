import Alignment
import Datasets
import Foundation
import Models
import Tokenizers

/// Held-out instruction following (the ifeval task): greedy replies to prompts the policy never
/// trained on, each checked against its instructions. The score is the share of instructions
/// kept over all prompts (IFEval's instruction-level accuracy), also per constraint kind.
package struct InstructionEvaluation {
    package var kept = 0, total = 0
    package var perKind: [String: (kept: Int, total: Int)] = [:]
    package var endedWithEOS = 0
    package var samples: [[String: Any]] = []

    package var score: Double { Double(kept) / Double(max(total, 1)) }

    package static func run(
        trunk: any CausalLM, adapter: LoRAAdapter?, prompts: [PPOPrompt], tokenizer: any Tokenizer, maxNewTokens: Int,
        batchSize: Int, responseText: (([Int32]) -> String)? = nil
    ) throws -> InstructionEvaluation {
        var e = InstructionEvaluation()
        for start in stride(from: 0, to: prompts.count, by: batchSize) {
            let chunk = Array(prompts[start..<min(start + batchSize, prompts.count)])
            let result = try trunk.generate(
                prompts: chunk.map(\.tokens), adapter: adapter,
                options: .greedy(
                    maxNewTokens: maxNewTokens, eosTokenId: tokenizer.eosTokenId, stopTokenIds: tokenizer.stopTokenIds))
            for (i, prompt) in chunk.enumerated() {
                let reply = (responseText ?? { tokenizer.decode($0, skipSpecialTokens: true) })(result.tokens[i])
                let constraints = try InstructionConstraint.parseList(prompt.answer ?? "")
                var keptHere: [String] = []
                for c in constraints {
                    let ok = c.isSatisfied(by: reply)
                    e.total += 1
                    e.kept += ok ? 1 : 0
                    e.perKind[c.kind, default: (0, 0)].total += 1
                    if ok {
                        e.perKind[c.kind, default: (0, 0)].kept += 1
                        keptHere.append(c.spec)
                    }
                }
                if result.endedWithEOS[i] { e.endedWithEOS += 1 }
                if e.samples.count < 40 {
                    e.samples.append([
                        "prompt": prompt.text, "instructions": prompt.answer ?? "", "reply": reply, "kept": keptHere,
                        "eos": result.endedWithEOS[i],
                    ])
                }
            }
        }
        return e
    }

    /// Metrics for metrics.jsonl: instructions (the score), instructions_<kind>, eos share.
    /// The metrics line: the score, the share of replies that ended, and the score per constraint kind.
    package struct Record: MetricsRecord {
        let step: Int
        let instructions: Double, evalEOS: Double
        let perKind: [String: Double]

        package func encode(to encoder: any Encoder) throws {
            var m = encoder.container(keyedBy: MetricsKey.self)
            try m.encode(step, forKey: MetricsKey("step"))
            try m.encode(figures: ["instructions": instructions, "eval_eos": evalEOS])
            try m.encode(
                figures: Dictionary(uniqueKeysWithValues: perKind.map { ("instructions_\($0.key)", $0.value) }))
        }
    }

    package func metrics(step: Int, prompts: Int) -> Record {
        Record(
            step: step, instructions: score, evalEOS: Double(endedWithEOS) / Double(max(prompts, 1)),
            perKind: perKind.mapValues { Double($0.kept) / Double(max($0.total, 1)) })
    }

    /// The per-constraint results and sample replies, for the run folder.
    package func report(step: Int) -> [String: Any] {
        [
            "step": step, "instructions": score, "kept": kept, "total": total,
            "per_constraint": perKind.mapValues {
                ["kept": $0.kept, "total": $0.total, "rate": Double($0.kept) / Double(max($0.total, 1))]
            },
            "samples": samples,
        ]
    }

    /// The score an earlier evaluation wrote to eval/instructions-step-N.json in `folder`, if any.
    package static func savedScore(folder: String, step: Int) -> Double? {
        struct Report: Decodable { let instructions: Double }
        let path = (folder as NSString).appendingPathComponent(String(format: "eval/instructions-step-%05d.json", step))
        return FileManager.default.contents(atPath: path).flatMap { try? JSONDecoder().decode(Report.self, from: $0) }?
            .instructions
    }
}
