import Alignment
import Datasets
import Foundation
import XCTest

@testable import Rewards

/// A Python reward through scripts/reward_server.py (issue 29's check): the built-in instruction
/// reward re-implemented in Python (examples/rewards/instructions.py) gives the same rewards as
/// `rewards.instructions` on the same samples. Tests never need Python: without python3 it is skipped.
final class PythonRewardTests: XCTestCase {
    var repository: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().path
    }

    /// Replies that keep some of a prompt's rules and break others: generic ones of every shape,
    /// and ones built from the prompt's own keyword, phrase, start word and JSON key.
    func replies(for prompt: IFEvalTask.Prompt) -> [String] {
        var own = ""
        for c in prompt.constraints {
            switch c {
            case .keyword(let k, let m): own += String(repeating: "\(k.capitalized), ", count: m)
            case .startWord(let w): own = "\(w)! " + own
            case .endPhrase(let p): own += "more text. \(p)"
            case .jsonKey(let k): own = "```json\n{\"\(k)\": \"\(prompt.topic)\"}\n```"
            default: break
            }
        }
        return [
            own, own.lowercased(), own.uppercased(), "\"\(own)\"",
            "a short note about \(prompt.topic) with no capitals",
            "A NOTE ABOUT \(prompt.topic.uppercased()), LOUD", "* one\n* two\n- three", "* one\n*two",
            "{\"note\": 1, \"summary\": [2]}", "", "   ",
            String(repeating: "word ", count: 40), "\"" + String(repeating: "many words here ", count: 20) + "\"",
        ]
    }

    func testAPythonRewardGivesTheBuiltInInstructionRewards() throws {
        let probe = Process()
        probe.executableURL = URL(fileURLWithPath: "/bin/sh")
        probe.arguments = ["-c", "command -v python3 > /dev/null"]
        try probe.run()
        probe.waitUntilExit()
        try XCTSkipIf(probe.terminationStatus != 0, "python3 is not installed")
        let task = IFEvalTask(seed: 3, trainSize: 10, evalSize: 100)
        var completions: [String] = [], specs: [String] = []
        for prompt in task.eval {
            for reply in replies(for: prompt) {
                completions.append(reply)
                specs.append(prompt.spec)
            }
        }
        let swift = zip(completions, specs).map { InstructionVerifier().score(response: $0, answer: $1) }
        XCTAssertEqual(Set(swift), [0, 0.5, 1], "the samples keep none, half and all of their rules")
        let server = try ExternalRewardCommand(
            command:
                "python3 \(repository)/scripts/reward_server.py \(repository)/examples/rewards/instructions.py:reward")
        let request = ExternalRewardRequest(
            batch: 1, iteration: 1, prompts: task.eval.flatMap { p in replies(for: p).map { _ in p.text } },
            completions: completions, answers: specs, tasks: completions.map { _ in IFEvalTask.taskName })
        let reply = try server.exchange(request.json(), batch: 1, timeout: 120)
        server.close()
        let python = try ExternalRewardReply.rewards(reply, count: completions.count, batch: 1, from: "python")
        XCTAssertEqual(python.count, swift.count)
        for i in swift.indices where python[i] != swift[i] {
            XCTFail("sample \(i): Swift \(swift[i]), Python \(python[i]) for \(specs[i]) on \(completions[i])")
        }
    }
}
