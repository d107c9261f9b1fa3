import Alignment
import Datasets
import Foundation
import Tokenizers
import XCTest

/// The built-in instruction-following task: seeded, held out by topic and by constraint pair.
final class IFEvalTaskTests: XCTestCase {
    func testHeldOutTopicsAndPairsNeverAppearInTraining() {
        let task = IFEvalTask(seed: 3, trainSize: 500, evalSize: 120)
        XCTAssertEqual(task.train.count, 500)
        XCTAssertEqual(task.eval.count, 120)
        XCTAssertTrue(Set(IFEvalTask.trainTopics).isDisjoint(with: IFEvalTask.evalTopics))
        XCTAssertTrue(task.train.allSatisfy { IFEvalTask.trainTopics.contains($0.topic) })
        XCTAssertTrue(task.eval.allSatisfy { IFEvalTask.evalTopics.contains($0.topic) })
        let trainPairs = Set(
            task.train.filter { $0.constraints.count == 2 }.map { $0.constraints.map(\.kind).sorted() })
        let evalPairs = Set(task.eval.filter { $0.constraints.count == 2 }.map { $0.constraints.map(\.kind).sorted() })
        XCTAssertFalse(evalPairs.isEmpty)
        XCTAssertTrue(trainPairs.isDisjoint(with: evalPairs), "held-out pairs: \(trainPairs.intersection(evalPairs))")
        for p in task.train + task.eval {
            if p.constraints.count == 2 {
                XCTAssertFalse(InstructionConstraint.conflict(p.constraints[0].kind, p.constraints[1].kind), p.spec)
            }
            XCTAssertEqual(try InstructionConstraint.parseList(p.spec), p.constraints)
            XCTAssertTrue(p.text.hasPrefix("Write a short note about \(p.topic)."))
            for c in p.constraints { XCTAssertTrue(p.text.contains(c.instruction)) }
        }
        XCTAssertEqual(
            Set(task.eval.flatMap { $0.constraints.map(\.kind) }), Set(InstructionConstraint.kinds),
            "evaluation covers every kind")
    }

    func testSameSeedSamePromptsAndRowsAreConversational() throws {
        XCTAssertEqual(IFEvalTask(seed: 9).train, IFEvalTask(seed: 9).train)
        XCTAssertNotEqual(IFEvalTask(seed: 9).train, IFEvalTask(seed: 10).train)
        let dir = NSTemporaryDirectory() + "ifeval-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let files = try IFEvalTask(seed: 1, trainSize: 10, evalSize: 5).write(to: dir)
        let chatML =
            "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}{% if "
            + "add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
        let rows = try JSONL.prompts(
            path: files[1], chat: ChatFormatter(source: chatML, origin: "test", bosToken: nil, eosToken: nil))
        XCTAssertEqual(rows.count, 5)
        XCTAssertEqual(rows.first?.task, "ifeval")
        XCTAssertTrue(
            rows.allSatisfy {
                $0.prompt.hasPrefix("<|im_start|>user\nWrite a short note about ")
                    && $0.prompt.hasSuffix("<|im_start|>assistant\n")
            })
        XCTAssertEqual(
            try InstructionConstraint.parseList(rows[0].answer ?? ""),
            IFEvalTask(seed: 1, trainSize: 10, evalSize: 5).eval[0].constraints)
    }
}
